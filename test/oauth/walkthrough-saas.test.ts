// A SaaS engineer's walkthrough (Microsoft Graph / Salesforce style providers on 127.0.0.1):
// a token endpoint echoing the client secret, APIs answering 401 without `invalid_token`,
// credentials sharing a refresh token for different scopes.
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHttpClient } from '../../shared/http/index.ts'
import { createRefreshTokenStore, createTokenProvider, formEncode, importRefreshToken, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { leakCollector } from './_helpers.ts'

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void

const servers: Server[] = []
async function serve(handler: Handler): Promise<string> {
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => (body += c))
    req.on('end', () => handler(req, body, res))
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))))
})

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

describe('a token endpoint that echoes what it received', () => {
  // `~ : % + &`, a space and non-ASCII: every one is encoded differently by the form encoder,
  // encodeURIComponent and a Basic pair.
  const secret = 'Qx28Q~a:b%2B+c&d é中zz9'
  const encodings = [secret, formEncode(secret), encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)]

  /** Answers invalid_client with the raw body and the decoded Basic pair as the description. */
  const echo: Handler = (req, body, res) => {
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    const pair = basic ? Buffer.from(basic, 'base64').toString('utf8') : ''
    json(res, 401, { error: 'invalid_client', error_description: `got ${body} basic=${pair}` })
  }

  for (const clientAuth of [
    { method: 'client_secret_post' as const },
    { method: 'client_secret_basic' as const, basicEncoding: 'strict' as const },
    { method: 'client_secret_basic' as const, basicEncoding: 'loose' as const },
  ]) {
    it(`${clientAuth.method}${'basicEncoding' in clientAuth ? ` (${clientAuth.basicEncoding})` : ''}: the secret appears in no encoding in the error or a log line`, async () => {
      const leak = leakCollector()
      const url = await serve(echo)
      const p = createTokenProvider('graph', { tokenUrl: `${url}/token`, clientId: 'cid', clientAuth: { ...clientAuth, secret: new Secret(secret, '$env:GRAPH_SECRET') } }, { cache: new TokenCache(), log: leak.log })
      const err = (await p.getToken().catch((e) => e)) as Error
      leak.log.error({ err: err.message }, `token failed: ${err.message}`)
      leak.error(err)
      expect(err.message).toContain('invalid_client')
      // The server did echo: the rest of the body is there, the secret replaced.
      expect(err.message).toContain('[REDACTED]')
      if (clientAuth.method === 'client_secret_post') expect(err.message).toContain('grant_type=client_credentials')
      else expect(err.message).toContain('basic=')
      expect(leak.lines.length).toBeGreaterThan(1)
      const all = [...leak.lines, ...leak.texts]
      for (const form of encodings) expect(all.filter((t) => t.includes(form))).toEqual([])
      await p.close()
    })
  }

  it('an echo in the error code itself is scrubbed too', async () => {
    const leak = leakCollector()
    const url = await serve((_req, body, res) => json(res, 400, { error: body, error_uri: `https://x.example/?${body}` }))
    const p = createTokenProvider('sf', { tokenUrl: `${url}/token`, clientId: 'cid', clientAuth: { method: 'client_secret_post', secret: new Secret(secret, '$env:SF_SECRET') } }, { cache: new TokenCache(), log: leak.log })
    const err = leak.error(await p.getToken().catch((e) => e)) as Error & { error: string; error_uri: string }
    expect(err.error).toContain('[REDACTED]')
    for (const form of encodings) expect([err.message, err.error, err.error_uri, ...leak.lines].filter((t) => t.includes(form))).toEqual([])
    await p.close()
  })
})

/** A token endpoint for client_credentials handing out tok-1, tok-2, … */
async function tokenEndpoint() {
  let issued = 0
  const url = await serve((_req, _body, res) => json(res, 200, { access_token: `tok-${++issued}-abcdef`, token_type: 'Bearer', expires_in: 3600 }))
  return { url: `${url}/token`, issued: () => issued }
}

/** A client_credentials provider of its own (its own token cache) for the token endpoint at `url`. */
const clientCredentials = (url: string, log?: ReturnType<typeof leakCollector>['log']) =>
  createTokenProvider('c', { tokenUrl: url, clientId: 'cid', clientAuth: { method: 'client_secret_post', secret: new Secret('s3cret-value') } }, { cache: new TokenCache(), ...(log ? { log } : {}) })

const GRAPH_401 = (res: ServerResponse) => json(res, 401, { error: { code: 'InvalidAuthenticationToken', message: 'Access token has expired or is not yet valid.' } }, {
  'www-authenticate': 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"',
})
const SALESFORCE_401 = (res: ServerResponse) => json(res, 401, [{ message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' }])
const GOOGLE_401 = (res: ServerResponse) => json(res, 401, { error: { code: 401, status: 'UNAUTHENTICATED' } }, { 'www-authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' })

/** An API that rejects the tokens `rejects` picks with `answer`, and answers 200 otherwise. */
async function api(answer: (res: ServerResponse) => void, rejects: (token: string, seen: string[]) => boolean) {
  const seen: string[] = []
  const url = await serve((req, _body, res) => {
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '')
    const reject = rejects(token, seen)
    seen.push(token)
    if (reject) answer(res)
    else json(res, 200, { ok: true })
  })
  return { url: `${url}/v1/me`, seen }
}

describe('an API answering 401 without invalid_token', () => {
  const http = createHttpClient()
  afterAll(() => http.close())

  for (const [name, answer] of [['Graph-shaped challenge', GRAPH_401], ['Salesforce-shaped body', SALESFORCE_401], ['Google-shaped invalid_token', GOOGLE_401]] as const) {
    it(`${name}: the rejected token is dropped and the request delivered after one renewal`, async () => {
      const te = await tokenEndpoint()
      const a = await api(answer, (token, seen) => !seen.includes(token) && seen.length === 0)
      const leak = leakCollector()
      const p = clientCredentials(te.url, leak.log)
      const res = await http.request({ method: 'POST', url: a.url, body: '{"x":1}', credential: p })
      expect(res.status).toBe(200)
      expect(a.seen).toEqual(['tok-1-abcdef', 'tok-2-abcdef'])
      expect(te.issued()).toBe(2)
      // The next request uses the renewed token: no further token request.
      await http.request({ url: a.url, credential: p })
      expect(te.issued()).toBe(2)
      expect(leak.leaks(['tok-1-abcdef', 'tok-2-abcdef', 's3cret-value'])).toEqual([])
      await p.close()
    })
  }

  it.each([
    ['Graph-shaped', GRAPH_401, { scheme: 'Bearer', parameters: { client_id: '00000003-0000-0000-c000-000000000000' } }, '{"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired or is not yet valid."}}'],
    ['Salesforce-shaped', SALESFORCE_401, {}, '[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]'],
  ] as const)('a %s API rejecting every token fails permanently after exactly one renewal, with the excerpt and the challenge', async (_name, answer, challenge, body) => {
    const te = await tokenEndpoint()
    const a = await api(answer, () => true)
    const p = clientCredentials(te.url)
    const err = await http.request({ url: a.url, credential: p }).catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_OAUTH_CHALLENGE', retryable: false, status: 401, ...challenge })
    expect(err.message).toBe(`GET ${a.url} answered 401 again after renewing the access token: "${body}"`)
    expect(err.response.excerpt).toBe(body)
    expect([a.seen.length, te.issued()]).toEqual([2, 2])
    await p.close()
  })

  it('an explicit challenge that is not about the token (invalid_request, a Basic challenge) fails at once, without renewal', async () => {
    for (const header of ['Bearer error="invalid_request", error_description="missing header"', 'Basic realm="api"']) {
      const te = await tokenEndpoint()
      const a = await api((res) => json(res, 401, { e: 'no' }, { 'www-authenticate': header }), () => true)
      const p = clientCredentials(te.url)
      const err = await http.request({ url: a.url, credential: p }).catch((e) => e)
      expect(err).toMatchObject({ code: 'ERR_OAUTH_CHALLENGE', retryable: false, status: 401 })
      expect(err.message).toContain('"{"e":"no"}"')
      expect([a.seen.length, te.issued()]).toEqual([1, 1])
      await p.close()
    }
  })
})

describe('credentials sharing one refresh token for different scopes', () => {
  it('each refresh request carries its own scope and each credential uses its own access token', async () => {
    const requests: Array<{ scope: string | null; refreshToken: string | null }> = []
    let n = 0
    const url = await serve((_req, body, res) => {
      const form = new URLSearchParams(body)
      requests.push({ scope: form.get('scope'), refreshToken: form.get('refresh_token') })
      n++
      json(res, 200, { access_token: `at-${form.get('scope')}-${n}-xyz`, token_type: 'Bearer', expires_in: 3600, scope: form.get('scope'), refresh_token: `rt-${n}-rotated` })
    })
    const dir = await mkdtemp(join(tmpdir(), 'weir-walk-'))
    try {
      const store = createRefreshTokenStore({ dir, key: 'k'.repeat(32) })
      await importRefreshToken(store, 'ms', 'rt-0-initial')
      const cache = new TokenCache()
      const config = (scope: string): CredentialConfig => ({ grant: 'refresh_token', tokenUrl: `${url}/token`, clientId: 'cid', storeKey: 'ms', scope, clientAuth: { method: 'client_secret_post', secret: new Secret('s3cret-value') } })
      const graph = createTokenProvider('graph', config('https://graph.microsoft.com/.default offline_access'), { store, cache })
      const outlook = createTokenProvider('outlook', config('https://outlook.office.com/.default offline_access'), { store, cache })
      const g = await graph.getToken()
      const o = await outlook.getToken()
      expect(requests).toEqual([
        { scope: 'https://graph.microsoft.com/.default offline_access', refreshToken: 'rt-0-initial' },
        { scope: 'https://outlook.office.com/.default offline_access', refreshToken: 'rt-1-rotated' },
      ])
      expect(g.value.reveal()).toBe('at-https://graph.microsoft.com/.default offline_access-1-xyz')
      expect(o.value.reveal()).toBe('at-https://outlook.office.com/.default offline_access-2-xyz')
      // Cached apart: each gets its own again, without a request.
      expect((await graph.getToken()).value.reveal()).toBe(g.value.reveal())
      expect((await outlook.getToken()).value.reveal()).toBe(o.value.reveal())
      expect(requests).toHaveLength(2)
      await graph.close()
      await outlook.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('re-authorization messages', () => {
  /** A token endpoint refusing every refresh token. */
  const revoked = () => serve((_req, _body, res) => json(res, 400, { error: 'invalid_grant', error_description: 'AADSTS70008: the refresh token has expired' }))

  async function withStore<T>(fn: (store: ReturnType<typeof createRefreshTokenStore>) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'weir-walk-'))
    try {
      return await fn(createRefreshTokenStore({ dir, key: 'k'.repeat(32) }))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
  const config = (url: string, extra: Partial<CredentialConfig> = {}): CredentialConfig => ({ grant: 'refresh_token', tokenUrl: `${url}/token`, clientId: 'cid', clientAuth: { method: 'client_secret_post', secret: new Secret('s3cret-value') }, ...extra })

  it('a credential with authorizationUrl names weir credentials authorize first', async () => {
    const url = await revoked()
    await withStore(async (store) => {
      const p = createTokenProvider('mail', config(url, { authorizationUrl: `${url}/authorize` }), { store, cache: new TokenCache() })
      const none = await p.getToken().catch((e) => e)
      expect([none.code, none.message]).toEqual(['ERR_OAUTH_REAUTH_REQUIRED', 'no refresh token is stored: run weir credentials authorize <channel.json> mail (or weir credentials import <channel.json> mail --refresh-token-file FILE)'])
      await p.close()
      await importRefreshToken(store, 'mail', 'rt-revoked-1')
      const q = createTokenProvider('mail', config(url, { authorizationUrl: `${url}/authorize` }), { store, cache: new TokenCache() })
      const rejected = await q.getToken().catch((e) => e)
      expect([rejected.code, rejected.message]).toEqual(['ERR_OAUTH_REAUTH_REQUIRED', `the refresh token was rejected (invalid_grant: AADSTS70008: the refresh token has expired); re-authorize: run weir credentials authorize <channel.json> mail (or weir credentials import <channel.json> mail --refresh-token-file FILE)`])
      await q.close()
    })
  })

  it('without authorizationUrl it names weir credentials import', async () => {
    const url = await revoked()
    await withStore(async (store) => {
      await importRefreshToken(store, 'sf', 'rt-revoked-2')
      const p = createTokenProvider('sf', config(url), { store, cache: new TokenCache() })
      const rejected = await p.getToken().catch((e) => e)
      expect(rejected.message).toBe('the refresh token was rejected (invalid_grant: AADSTS70008: the refresh token has expired); re-authorize and run weir credentials import <channel.json> sf --refresh-token-file FILE')
      await p.close()
    })
  })

  it('credentials sharing a storeKey: the one that meets the refusal another recorded is not told the other\'s name as its own', async () => {
    const url = await revoked()
    await withStore(async (store) => {
      await importRefreshToken(store, 'ms', 'rt-revoked-3')
      const cache = new TokenCache()
      const graph = createTokenProvider('graph', config(url, { storeKey: 'ms', scope: 'https://graph.microsoft.com/.default', authorizationUrl: `${url}/authorize` }), { store, cache })
      const outlook = createTokenProvider('outlook', config(url, { storeKey: 'ms', scope: 'https://outlook.office.com/.default', authorizationUrl: `${url}/authorize` }), { store, cache })
      const first = await graph.getToken().catch((e) => e)
      const second = await outlook.getToken().catch((e) => e)
      for (const e of [first, second]) {
        expect(e.code).toBe('ERR_OAUTH_REAUTH_REQUIRED')
        expect(e.message).not.toMatch(/^credential "/)
        expect(e.message).toMatch(/^the refresh token was rejected \(invalid_grant: AADSTS70008: the refresh token has expired\); re-authorize: run weir credentials authorize <channel.json> (graph|outlook) \(or weir credentials import/)
      }
      // As weir token prints it: one credential named once.
      expect(`credential "outlook": ${second.message}`).not.toMatch(/credential "outlook": credential "graph"/)
      await graph.close()
      await outlook.close()
    })
  })
})
