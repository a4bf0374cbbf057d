import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import httpDest from '../../../components/destinations/http.ts'
import { loadComponentConfig, loopbackServer, message, staticTokenProvider, testContext, type RecordedRequest, type TestContext } from '../../_setup.ts'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { startAuthorizationServer, type AuthorizationServer, type ProtectedApi } from '../../../engine/embedded/authorization-server.ts'
import { createTokenProvider, TokenCache } from '../../../shared/oauth/index.ts'
import { reveal, Secret } from '../../../shared/secret.ts'
import { classify } from '../../../engine/runtime/failures.ts'

const TOKEN = 'eyJ0b2tlbi1mb3ItdGVzdHMi.payload.sig-1234567890'
let t: TestContext
let api: Awaited<ReturnType<typeof loopbackServer>>
let other: Awaited<ReturnType<typeof loopbackServer>>
let answer: (req: RecordedRequest, res: ServerResponse) => void = (_, res) => { res.statusCode = 201; res.end('{"resourceType":"Patient","id":"p1"}') }
beforeAll(async () => {
  api = await loopbackServer((req, res) => answer(req, res))
  other = await loopbackServer((_, res) => { res.end('{"stolen":false}') })
})
afterAll(async () => { await api.close(); await other.close() })
afterEach(async () => {
  await t?.cleanup()
  api.requests.length = 0
  other.requests.length = 0
  answer = (_, res) => { res.statusCode = 201; res.end('{"resourceType":"Patient","id":"p1"}') }
})

const opts = { signal: new AbortController().signal, idempotencyKey: 'msg-1:epic' }

async function destination(config: Record<string, unknown>) {
  // Credentials are the loader's and shared/oauth's business; validate the rest, then name the test credential.
  const { credential, ...rest } = config
  const loaded = await loadComponentConfig(httpDest, rest)
  expect(loaded.problems).toEqual([])
  t = await testContext({ credentials: { epic: staticTokenProvider('epic', TOKEN) } })
  return httpDest.create({ ...loaded.config, ...(credential ? { credential } : {}) } as never, t.ctx)
}

describe('http destination config', () => {
  it.each([
    [{}, '/destinations/0/config', 'must have required property "url"'],
    [{ url: 'https://api{body.env}.example.org/x' }, '/destinations/0/config/url', 'scheme, host and port must be fixed (no {fields}), so credentials only ever go to the configured host'],
    [{ url: 'ftp://example.org/x' }, '/destinations/0/config/url', 'must start with http://, https:// or /'],
    [{ url: 'https://exa mple.org/x' }, '/destinations/0/config/url', 'must be a valid URL'],
    [{ url: 'https://example.org/{mrn}' }, '/destinations/0/config/url', 'unknown template field "{mrn}"; fields start with id, channel, contentType, receivedAt, body, attributes'],
    [{ url: 'https://example.org/', method: 'TRACE' }, '/destinations/0/config/method', 'must be one of "POST", "PUT", "PATCH", "DELETE", "GET"'],
    [{ url: 'https://example.org/', headers: { Authorization: 'Bearer x' } }, '/destinations/0/config/headers/Authorization', '"Authorization" is set by the destination itself'],
    [{ url: 'https://example.org/', headers: { 'x-site': 'Łódź {id}' } }, '/destinations/0/config/headers/x-site', 'value has a character that cannot be sent in an HTTP header (only tab, printable ASCII and U+0080–U+00FF)'],
    [{ url: 'https://example.org/', successStatuses: ['2x'] }, '/destinations/0/config/successStatuses/0', 'must be integer or string'],
    [{ url: 'https://example.org/', timeoutMs: 0 }, '/destinations/0/config/timeoutMs', 'must be >= 1'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(httpDest, config)
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([[pointer, msg]])
  })

  it('fills in defaults', async () => {
    expect((await loadComponentConfig(httpDest, { url: 'https://example.org/in' })).config).toEqual({
      url: 'https://example.org/in', method: 'POST', headers: {}, secretHeaders: {}, timeoutMs: 30_000, successStatuses: ['2xx'],
    })
  })
})

describe('http destination', () => {
  it('POSTs the body with the credential\'s token and the Idempotency-Key, and reports status and excerpt', async () => {
    const dest = await destination({ url: api.origin + '/fhir/Patient', credential: 'epic', headers: { 'X-Correlation-Id': '{id}' }, contentType: 'application/fhir+json' })
    const res = await dest.deliver(message({ resourceType: 'Patient', id: 'p1' }), opts)
    expect(res).toEqual({ status: 201, excerpt: '{"resourceType":"Patient","id":"p1"}' })
    expect(api.requests).toHaveLength(1)
    const r = api.requests[0]!
    expect([r.method, r.url, r.body]).toEqual(['POST', '/fhir/Patient', '{"resourceType":"Patient","id":"p1"}'])
    expect(r.headers).toMatchObject({ authorization: `Bearer ${TOKEN}`, 'idempotency-key': 'msg-1:epic', 'content-type': 'application/fhir+json', 'x-correlation-id': 'msg-1' })
  })

  it('fills the URL template with URL-encoded message fields, sends text bodies as they are, and secret headers', async () => {
    const dest = await destination({ url: api.origin + '/patients/{body.mrn}?src={attributes.src}', method: 'PUT', secretHeaders: { 'x-api-key': 'partner-key-123456' } })
    await dest.deliver(message({ mrn: 'a/b c' }, { attributes: { src: 'lab&x' } }), opts)
    expect(api.requests[0]!.url).toBe('/patients/a%2Fb%20c?src=lab%26x')
    expect(api.requests[0]!.headers['x-api-key']).toBe('partner-key-123456')
    expect(api.requests[0]!.headers.authorization).toBeUndefined()
  })

  it('sends text bodies as they are, with their content type', async () => {
    const dest = await destination({ url: api.origin + '/hl7', method: 'PATCH' })
    await dest.deliver(message('MSH|^~\\&|'), opts)
    expect([api.requests[0]!.method, api.requests[0]!.body, api.requests[0]!.headers['content-type']]).toEqual(['PATCH', 'MSH|^~\\&|', 'text/plain'])
  })

  it('GET sends no body', async () => {
    const dest = await destination({ url: api.origin + '/Patient/{body.id}', method: 'GET' })
    await dest.deliver(message({ id: 'p9' }), opts)
    expect(api.requests[0]).toMatchObject({ method: 'GET', url: '/Patient/p9', body: '' })
    expect(api.requests[0]!.headers['content-type']).toBeUndefined()
  })

  it.each([
    [503, { 'retry-after': '7' }, 7000],
    [500, {}, undefined],
    [429, { 'retry-after': '2' }, 2000],
    [408, {}, undefined],
  ])('%s is retryable (Retry-After → %s ms)', async (status, headers, retryAfterMs) => {
    answer = (_, res) => { res.writeHead(status, headers); res.end('busy, try later') }
    const dest = await destination({ url: api.origin + '/in' })
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect([err.code, err.retryable, err.retryAfterMs, err.status]).toEqual(['ERR_HTTP_STATUS', true, retryAfterMs, status])
    expect(err.message).toBe(`POST ${api.origin}/in answered ${status}: "busy, try later"`)
  })

  it.each([400, 403, 404, 422])('%s is a permanent error with a redacted excerpt', async (status) => {
    answer = (req, res) => { res.statusCode = status; res.end(`{"issue":"bad","echo":"${req.headers.authorization}"}`) }
    const dest = await destination({ url: api.origin + '/in?key=secret-query', credential: 'epic' })
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect([err.code, err.retryable, err.status]).toEqual(['ERR_HTTP_STATUS', false, status])
    expect(err.message).toBe(`POST ${api.origin}/in answered ${status}: "{"issue":"bad","echo":"Bearer [REDACTED]"}"`)
    expect(err.excerpt).toBe('{"issue":"bad","echo":"Bearer [REDACTED]"}')
    expect(JSON.stringify(err) + String(err.stack)).not.toContain(TOKEN)
  })

  it('successStatuses decides what counts as delivered', async () => {
    answer = (_, res) => { res.statusCode = 409; res.end('exists') }
    const dest = await destination({ url: api.origin + '/in', successStatuses: ['2xx', 409] })
    expect(await dest.deliver(message({}), opts)).toEqual({ status: 409, excerpt: 'exists' })
  })

  it('does not follow a redirect to another host, so the token never reaches it', async () => {
    answer = (_, res) => { res.writeHead(307, { location: other.origin + '/collect?x=1' }); res.end() }
    const dest = await destination({ url: api.origin + '/in', credential: 'epic' })
    const err = await dest.deliver(message({ a: 1 }), opts).catch((e) => e)
    expect(api.requests[0]!.headers.authorization).toBe(`Bearer ${TOKEN}`)
    expect(other.requests.filter((r) => r.headers.authorization)).toEqual([])
    expect([err.code, err.retryable]).toEqual(['ERR_HTTP_STATUS', false])
    expect(err.message).toBe(`POST ${api.origin}/in answered 307 (redirect to ${other.origin}/collect); redirects are not followed`)
  })

  it('a 3xx with a malformed Location is a permanent error, not a retryable TypeError', async () => {
    answer = (_, res) => { res.writeHead(302, { location: 'http://[bad' }); res.end() }
    const dest = await destination({ url: api.origin + '/in' })
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect([err.name, err.code, err.retryable, err.status]).toEqual(['HttpStatusError', 'ERR_HTTP_STATUS', false, 302])
    expect(err.message).toBe(`POST ${api.origin}/in answered 302 (redirect to a malformed Location); redirects are not followed`)
  })

  it('redacts token fields and JWT-shaped strings in response excerpts (success and error)', async () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhYmMifQ.c2lnbmF0dXJl'
    answer = (_, res) => { res.statusCode = 201; res.end(`{"access_token":"opaque-tok-123","note":"${jwt}"}`) }
    const dest = await destination({ url: api.origin + '/in' })
    expect(await dest.deliver(message({}), opts)).toEqual({ status: 201, excerpt: '{"access_token":"[REDACTED]","note":"[REDACTED]"}' })
    answer = (_, res) => { res.statusCode = 400; res.end(`{"refresh_token":"rt-secret-9","seen":"${jwt}"}`) }
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect(err.excerpt).toBe('{"refresh_token":"[REDACTED]","seen":"[REDACTED]"}')
    expect(err.message).toBe(`POST ${api.origin}/in answered 400: "{"refresh_token":"[REDACTED]","seen":"[REDACTED]"}"`)
    expect(err.message + err.excerpt).not.toMatch(/opaque-tok-123|rt-secret-9|eyJhbGci/)
  })

  it('a refused connection is a retryable network error', async () => {
    const gone = await loopbackServer(() => {})
    await gone.close()
    const dest = await destination({ url: gone.origin + '/in' })
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect(err.retryable).toBe(true)
    expect(err.code).toMatch(/^ERR_HTTP_NETWORK$/)
  })

  it('a missing template field is a permanent error and sends nothing', async () => {
    const dest = await destination({ url: api.origin + '/p/{body.mrn}' })
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', 'template field "{body.mrn}" has no value in message msg-1'])
    expect(api.requests).toEqual([])
  })

  describe('header values undici cannot send', () => {
    it('a header template whose message value has a character above U+00FF fails permanently, naming the header, not the value', async () => {
      const dest = await destination({ url: api.origin + '/Patient', headers: { 'x-patient-name': '{body.name}' } })
      // A Polish family name: U+0141 is outside Latin-1, which undici refuses in a header value.
      const err = await dest.deliver(message({ name: 'Łukasiewicz' }), opts).catch((e) => e)
      expect(api.requests).toEqual([])
      // No retry can change the value: not retried, and not a network failure counting toward the circuit breaker.
      // undici's own check refuses it; the shared client says which header and why.
      expect([err.code, classify(err).retryable, err.cause?.code]).toEqual(['ERR_HTTP_REQUEST_INVALID', false, 'UND_ERR_INVALID_ARG'])
      expect(err.message).toBe(`POST ${api.origin}/Patient could not be sent: header "x-patient-name" has a character that cannot be sent in an HTTP header (only tab, printable ASCII and U+0080–U+00FF)`)
      expect(err.message).not.toMatch(/ukasiewicz/)
    })

    it('Latin-1 message values are sent as they are', async () => {
      const dest = await destination({ url: api.origin + '/Patient', headers: { 'x-patient-name': '{body.name}' } })
      await dest.deliver(message({ name: 'Müller\tJörg' }), opts)
      expect(api.requests[0]!.headers['x-patient-name']).toBe('Müller\tJörg')
    })

    it('a secret header undici refuses (UND_ERR_INVALID_ARG) fails permanently, without the value in the error', async () => {
      const dest = await destination({ url: api.origin + '/in', secretHeaders: { 'x-api-key': 'key-Ł-123456' } })
      const err = await dest.deliver(message({}), opts).catch((e) => e)
      expect(api.requests).toEqual([])
      expect([err.code, classify(err).retryable, err.cause?.code]).toEqual(['ERR_HTTP_REQUEST_INVALID', false, 'UND_ERR_INVALID_ARG'])
      expect(err.message).toBe(`POST ${api.origin}/in could not be sent: header "x-api-key" has a character that cannot be sent in an HTTP header (only tab, printable ASCII and U+0080–U+00FF)`)
      expect(err.message).not.toMatch(/key-/)
    })
  })

  it('a slow server hits timeoutMs and the attempt is retryable', async () => {
    answer = () => { /* never answers */ }
    const dest = await destination({ url: api.origin + '/slow', timeoutMs: 100 })
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect(err.retryable).toBe(true)
  })
})

describe('http destination with the real OAuth client', () => {
  let as: AuthorizationServer
  let protectedApi: ProtectedApi
  beforeAll(async () => {
    as = await startAuthorizationServer()
    protectedApi = await as.createProtectedApi()
    as.registerClient({ clientId: 'dest-client', authMethod: 'client_secret_basic', secret: 'dest-client-secret-value' })
  })
  afterAll(async () => { await protectedApi.close(); await as.close() })

  it('401 invalid_token: exactly one new token and one resend, through the destination', async () => {
    const provider = createTokenProvider('epic', { tokenUrl: as.tokenUrl, clientId: 'dest-client', clientAuth: { secret: new Secret('dest-client-secret-value') } }, { cache: new TokenCache() })
    const loaded = await loadComponentConfig(httpDest, { url: protectedApi.url + '/fhir/Patient' })
    expect(loaded.problems).toEqual([])
    t = await testContext({ credentials: { epic: provider } })
    const dest = await httpDest.create({ ...loaded.config, credential: 'epic' } as never, t.ctx)
    const tokens = () => as.requests.filter((r) => r.clientId === 'dest-client').length

    expect(await dest.deliver(message({ n: 1 }), opts)).toMatchObject({ status: 200 })
    const first = reveal((await provider.getToken()).value)
    expect([tokens(), protectedApi.requests.length]).toEqual([1, 1])

    protectedApi.respondNext({ status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token", error_description="revoked"' }, body: '{"error":"invalid_token"}', beforeAuth: true })
    expect(await dest.deliver(message({ n: 2 }), opts)).toMatchObject({ status: 200 })
    expect([tokens(), protectedApi.requests.length]).toEqual([2, 3])
    expect(protectedApi.requests.slice(1).map((r) => [r.status, r.body, r.headers['idempotency-key']])).toEqual([[401, '{"n":2}', 'msg-1:epic'], [200, '{"n":2}', 'msg-1:epic']])
    expect(reveal((await provider.getToken()).value)).not.toBe(first)
    expect(tokens()).toBe(2)
    await provider.close()
  })
})

describe('testContext', () => {
  it('uses the shared HTTP client and closes it (and its keep-alive connections) on cleanup', async () => {
    const sockets = new Set<Socket>()
    api.server.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)) })
    const ctx = await testContext()
    const res = await ctx.ctx.http.request({ url: api.origin + '/ping' })
    expect(res.status).toBe(201)
    expect(sockets.size).toBe(1) // kept alive by the client's pool
    await ctx.cleanup()
    // Bounded: the closed pool ends its socket; the server sees it within a few event-loop turns.
    for (let i = 0; i < 10_000 && sockets.size > 0; i++) await new Promise((r) => setImmediate(r))
    expect(sockets.size).toBe(0)
  })
})

describe('http destination connections', () => {
  /** A server that holds every request until `release()`, counting the connections they came on. */
  async function holdingServer() {
    const held: ServerResponse[] = []
    const sockets = new Set<Socket>()
    let arrived: () => void = () => {}
    const server = await loopbackServer((_, res) => {
      held.push(res)
      arrived()
    })
    server.server.on('connection', (s: Socket) => sockets.add(s))
    return {
      origin: server.origin,
      sockets,
      held,
      /** Resolves once `n` requests are held, or after `ms` (bounded wait), with how many are. */
      waitFor: (n: number, ms: number) => new Promise<number>((resolve) => {
        const done = () => { clearTimeout(timer); resolve(held.length) }
        const timer = setTimeout(done, ms)
        arrived = () => { if (held.length >= n) done() }
        if (held.length >= n) done()
      }),
      release: () => { for (const r of held.splice(0)) r.end('{}') },
      close: () => server.close(),
    }
  }

  it.each([[undefined, 16], [4, 4], [24, 24]])('connections %s: at most %i requests on the wire at once, the rest wait in the engine', async (connections, expected) => {
    const server = await holdingServer()
    try {
      const dest = await destination({ url: `${server.origin}/in`, ...(connections ? { connections } : {}) })
      const deliveries = Array.from({ length: 30 }, (_, i) => dest.deliver({ ...message({ n: i }), id: `m${i}` }, { ...opts, idempotencyKey: `m${i}` }))
      // All 30 are sent at once; the server holds what reaches it. It waits a while longer for more than expected.
      const onWire = await server.waitFor(expected + 1, 500)
      expect(onWire).toBe(expected)
      expect(server.sockets.size).toBe(expected)
      // Released in rounds, the rest come through on the same connections (bounded: 30 rounds of 200 ms at most).
      let settled = false
      const all = Promise.all(deliveries).finally(() => { settled = true })
      for (let i = 0; i < 30 && !settled; i++) {
        server.release()
        await server.waitFor(1, 200)
      }
      const results = await all
      expect(server.sockets.size).toBe(expected)
      expect(results.every((r) => r?.status === 200)).toBe(true)
    } finally {
      await server.close()
    }
  })

  it('is a validated option', async () => {
    const { problems } = await loadComponentConfig(httpDest, { url: 'https://example.org/', connections: 0 })
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([['/destinations/0/config/connections', 'must be >= 1']])
  })
})
