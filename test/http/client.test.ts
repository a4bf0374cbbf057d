import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { startAuthorizationServer, type AuthorizationServer, type ProtectedApi } from '../../engine/embedded/authorization-server.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { createTokenProvider, TokenCache } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { holdingProxy, leakCollector } from '../oauth/_helpers.ts'

const leak = leakCollector()
let as: AuthorizationServer
let api: ProtectedApi
let other: { url: string; seen: IncomingHttpHeaders[]; connections: number; server: Server }
const http = createHttpClient({ log: leak.log })

async function plainServer(handler: (status: { hang: boolean }) => { status: number; body: string; headers?: Record<string, string> } | null) {
  const seen: IncomingHttpHeaders[] = []
  const o = { url: '', seen, connections: 0, server: createServer() }
  o.server.on('connection', () => o.connections++)
  o.server.on('request', (req, res) => {
    seen.push(req.headers)
    const r = handler({ hang: false })
    if (!r) return // never answer
    res.writeHead(r.status, { 'content-type': 'text/plain', ...r.headers })
    res.end(r.body)
  })
  await new Promise<void>((r) => o.server.listen(0, '127.0.0.1', () => r()))
  o.url = `http://127.0.0.1:${(o.server.address() as AddressInfo).port}`
  return o
}

let next: { status: number; body: string; headers?: Record<string, string> } | null = { status: 200, body: 'ok' }
beforeAll(async () => {
  as = await startAuthorizationServer()
  api = await as.createProtectedApi()
  other = await plainServer(() => next)
  as.registerClient({ clientId: 'api-client', authMethod: 'client_secret_basic', secret: 'api-client-secret' })
})
afterAll(async () => {
  // Every log line and error message of this file (issue 3).
  expect(leak.lines.length).toBeGreaterThan(0)
  expect(leak.texts.length).toBeGreaterThan(0)
  expect(leak.leaks(as.secretsSeen())).toEqual([])
  await http.close()
  other.server.closeAllConnections()
  await new Promise((r) => other.server.close(r))
  await api.close()
  await as.close()
})

const provider = () => createTokenProvider('api', { tokenUrl: as.tokenUrl, clientId: 'api-client', clientAuth: { secret: new Secret('api-client-secret') } }, { cache: new TokenCache(), log: leak.log })
const tokenRequests = () => as.requests.filter((r) => r.clientId === 'api-client').length
const invalidToken = { status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token", error_description="revoked"' }, body: '{"error":"invalid_token"}' }

describe('http client with a credential', () => {
  it('401 invalid_token: exactly one new token and one resend', async () => {
    const p = provider()
    await p.getToken()
    const before = { tokens: tokenRequests(), api: api.requests.length }
    api.respondNext({ ...invalidToken, beforeAuth: true })
    const res = await http.request({ url: `${api.url}/Patient`, method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' }, credential: p })
    expect(res.status).toBe(200)
    expect([tokenRequests() - before.tokens, api.requests.length - before.api]).toEqual([1, 2])
    expect(api.requests.slice(-2).map((r) => [r.status, r.body])).toEqual([[401, '{"a":1}'], [200, '{"a":1}']])
  })

  it('a second 401 is an error, not a loop', async () => {
    const p = provider()
    const before = { tokens: tokenRequests(), api: api.requests.length }
    api.respondNext({ ...invalidToken, count: 2, beforeAuth: true })
    const err = leak.error(await http.request({ url: `${api.url}/Patient?id=1`, credential: p }).catch((e) => e)) as Record<string, unknown>
    expect(err).toMatchObject({ code: 'ERR_OAUTH_CHALLENGE', status: 401, error: 'invalid_token', retryable: false, message: `GET ${api.url}/Patient answered 401 invalid_token again after renewing the access token: "{"error":"invalid_token"}"` })
    expect([tokenRequests() - before.tokens, api.requests.length - before.api]).toEqual([2, 2])
  })

  it('a 302 is returned, never followed: Authorization never reaches another host', async () => {
    const p = provider()
    api.respondNext({ status: 302, headers: { location: `${other.url}/steal` }, body: '' })
    const seenBefore = other.seen.length
    const res = await http.request({ url: `${api.url}/moved`, credential: p })
    expect([res.status, res.headers.location]).toEqual([302, `${other.url}/steal`])
    expect(other.seen.length).toBe(seenBefore)
    expect(api.requests.at(-1)!.headers.authorization).toBe('Bearer [REDACTED]')
  })
})

describe('http client failure classes', () => {
  it.each<[number, Record<string, string>, Record<string, unknown>]>([
    [503, { 'retry-after': '4' }, { code: 'ERR_HTTP_STATUS', retryable: true, retryAfterMs: 4000, status: 503 }],
    [429, {}, { code: 'ERR_HTTP_STATUS', retryable: true, status: 429 }],
    [408, {}, { code: 'ERR_HTTP_STATUS', retryable: true, status: 408 }],
    [404, {}, { code: 'ERR_HTTP_STATUS', retryable: false, status: 404 }],
    [422, {}, { code: 'ERR_HTTP_STATUS', retryable: false, status: 422 }],
  ])('%i → %j', async (status, headers, expected) => {
    next = { status, body: `status ${status}`, headers }
    const err = leak.error(await http.request({ url: `${other.url}/x` }).catch((e) => e))
    expect(err).toMatchObject({ ...expected, message: `GET ${other.url}/x answered ${status}: "status ${status}"` })
  })

  it('keeps connections alive per origin', async () => {
    next = { status: 200, body: 'ok' }
    const c0 = other.connections
    for (let i = 0; i < 5; i++) expect((await http.request({ url: `${other.url}/k${i}` })).body).toBe('ok')
    expect(other.connections - c0).toBeLessThanOrEqual(1)
  })

  it('network failure and timeout are retryable', async () => {
    const closed = await plainServer(() => null)
    const url = closed.url
    const hang = leak.error(await http.request({ url: `${url}/slow`, timeoutMs: 150 }).catch((e) => e))
    expect(hang).toMatchObject({ code: 'ERR_HTTP_TIMEOUT', retryable: true, message: `GET ${url}/slow timed out after 150 ms` })
    closed.server.closeAllConnections()
    await new Promise((r) => closed.server.close(r))
    const refused = leak.error(await http.request({ url: `${url}/gone` }).catch((e) => e))
    expect(refused).toMatchObject({ code: 'ERR_HTTP_NETWORK', retryable: true, message: `GET ${url}/gone failed: ECONNREFUSED` })
  })
})

describe('a request undici refuses as built', () => {
  it.each<[string, Record<string, string>, string]>([
    ['a header value with a character above U+00FF', { 'X-Name': 'Łukasiewicz' }, 'header "X-Name" has a character that cannot be sent in an HTTP header (only tab, printable ASCII and U+0080–U+00FF)'],
    ['a header undici sets itself', { 'transfer-encoding': 'chunked' }, 'invalid transfer-encoding header'],
  ])('%s: permanent, naming the header, never its value, and nothing sent', async (_, headers, reason) => {
    const before = other.seen.length
    const err = leak.error(await http.request({ url: `${other.url}/h`, headers }).catch((e) => e)) as Error
    expect(err).toMatchObject({ code: 'ERR_HTTP_REQUEST_INVALID', retryable: false, message: `GET ${other.url}/h could not be sent: ${reason}` })
    expect(err.message).not.toMatch(/ukasiewicz|chunked/)
    expect(other.seen.length).toBe(before)
  })
})

describe('the request timeout and signal bound the wait for a token', () => {
  it('the token endpoint delays: the request times out waiting for a token, sends nothing, and the shared fetch goes on', async () => {
    const proxy = await holdingProxy(as.tokenUrl, () => true)
    try {
      const p = createTokenProvider('slow', { tokenUrl: proxy.url, clientId: 'api-client', clientAuth: { secret: new Secret('api-client-secret') }, timeoutMs: 60_000 }, { cache: new TokenCache(), log: leak.log })
      const other = p.getToken()
      const before = { tokens: tokenRequests(), api: api.requests.length }
      // The held token request never answers on its own: only the 50 ms request timeout can end this call.
      const err = leak.error(await http.request({ url: `${api.url}/Patient`, credential: p, timeoutMs: 50 }).catch((e) => e))
      expect(err).toMatchObject({ code: 'ERR_HTTP_TIMEOUT', retryable: true, message: `GET ${api.url}/Patient timed out after 50 ms waiting for an access token` })
      expect(api.requests.length).toBe(before.api)
      // The token request may reach the proxy after the 50 ms (a cold start): release it only once held.
      await proxy.held(1)
      proxy.release()
      expect((await other).tokenType).toBe('Bearer')
      expect(tokenRequests() - before.tokens).toBe(1)
      await p.close()
    } finally {
      await proxy.close()
    }
  })

  it('a shutdown abort ends the wait through a 120 s Retry-After', async () => {
    const p = provider()
    as.setFailure({ status: 503, retryAfter: 120 })
    const before = { tokens: tokenRequests(), api: api.requests.length }
    const ac = new AbortController()
    const result = http.request({ url: `${api.url}/Patient`, credential: p, signal: ac.signal }).catch((e) => e)
    await new Promise<void>((resolve) => {
      const check = () => (tokenRequests() > before.tokens && as.requests.at(-1)!.status === 503 ? resolve() : setImmediate(check))
      check()
    })
    ac.abort(new Error('channel stopping'))
    const err = leak.error(await result) as Error
    expect(err.message).toBe('channel stopping')
    expect([tokenRequests() - before.tokens, api.requests.length - before.api]).toEqual([1, 0])
    await p.close()
  })
})

describe('stream bodies', () => {
  it('are sent as is', async () => {
    const p = provider()
    const res = await http.request({ url: `${api.url}/Patient`, method: 'POST', body: Readable.from([Buffer.from('{"a":'), Buffer.from('1}')]), credential: p })
    expect([res.status, api.requests.at(-1)!.body]).toEqual([200, '{"a":1}'])
  })

  it('a 401 invalid_token on a stream body: the token is dropped, zero resends, a retryable error', async () => {
    const p = provider()
    await p.getToken()
    const before = { tokens: tokenRequests(), api: api.requests.length }
    api.respondNext({ ...invalidToken, beforeAuth: true })
    const err = leak.error(await http.request({ url: `${api.url}/Patient`, method: 'POST', body: Readable.from([Buffer.from('{"a":1}')]), credential: p }).catch((e) => e)) as Record<string, unknown>
    expect(err).toMatchObject({ code: 'ERR_OAUTH_CHALLENGE', status: 401, error: 'invalid_token', retryable: true, message: `POST ${api.url}/Patient answered 401 invalid_token; not resent because the request body is a stream` })
    expect([tokenRequests() - before.tokens, api.requests.length - before.api]).toEqual([0, 1])
    // The next attempt (with a fresh body) gets a new token.
    const res = await http.request({ url: `${api.url}/Patient`, method: 'POST', body: Readable.from([Buffer.from('{"a":1}')]), credential: p })
    expect([res.status, tokenRequests() - before.tokens]).toEqual([200, 1])
  })
})
