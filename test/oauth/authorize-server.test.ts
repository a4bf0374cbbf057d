import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { request } from 'undici'
import { startAuthorizationServer, type AuthorizationServer, type RegisteredClient } from '../../engine/embedded/authorization-server.ts'
import { redirectUriMatches } from '../../engine/embedded/authorization-server/authorize-endpoint.ts'

let as: AuthorizationServer
let clock = Date.now()
const REDIRECT = 'http://127.0.0.1/callback'
const client = (c: Partial<RegisteredClient> & { clientId: string }): RegisteredClient => ({ authMethod: 'client_secret_post', secret: `${c.clientId}-secret`, redirectUris: [REDIRECT], ...c })

beforeAll(async () => {
  as = await startAuthorizationServer({ now: () => clock })
  as.registerClient(client({ clientId: 'app', scopes: ['crm.read', 'crm.write'] }))
  as.registerClient(client({ clientId: 'other' }))
  as.registerClient(client({ clientId: 'refuser', consent: 'deny' }))
  as.registerClient(client({ clientId: 'no-code', grants: ['client_credentials'] }))
  as.registerClient(client({ clientId: 'no-refresh', grants: ['authorization_code'] }))
})
afterAll(() => as.close())

function pkce() {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
}

/** GET /authorize as a browser would, without following the redirect. */
async function authorize(params: Record<string, string>, extra = '') {
  const res = await request(`${as.authorizationUrl}?${new URLSearchParams(params).toString()}${extra}`)
  const text = await res.body.text()
  const location = res.headers.location as string | undefined
  return { status: res.statusCode, text, location: location ? new URL(location) : undefined }
}

function codeRequest(clientId: string, p = pkce(), redirectUri = 'http://127.0.0.1:49152/callback') {
  return { response_type: 'code', client_id: clientId, redirect_uri: redirectUri, state: 'st-1', code_challenge: p.challenge, code_challenge_method: 'S256' }
}

async function token(form: Record<string, string>) {
  const res = await request(as.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() })
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, string> }
}

/** A fresh code for `clientId` and what its exchange needs. */
async function freshCode(clientId = 'app') {
  const p = pkce()
  const redirectUri = 'http://127.0.0.1:49152/callback'
  const { location } = await authorize(codeRequest(clientId, p, redirectUri))
  const code = location!.searchParams.get('code')!
  const exchange = (over: Record<string, string> = {}) => token({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: p.verifier, client_id: clientId, client_secret: `${clientId}-secret`, ...over })
  return { code, exchange }
}

describe('embedded authorization server: authorization endpoint', () => {
  it('advertises the endpoint, S256 and the iss parameter (RFC 8414, RFC 9207)', async () => {
    const meta = (await (await request(`${as.url}/.well-known/oauth-authorization-server`)).body.json()) as Record<string, unknown>
    expect(meta).toMatchObject({
      authorization_endpoint: as.authorizationUrl, response_types_supported: ['code'], code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true, grant_types_supported: expect.arrayContaining(['authorization_code']),
    })
  })

  it('consents and redirects to the loopback URI on any port with code, state and iss (RFC 8252 §7.3)', async () => {
    const r = await authorize({ ...codeRequest('app'), scope: 'crm.read' })
    expect(r.status).toBe(302)
    expect(`${r.location!.origin}${r.location!.pathname}`).toBe('http://127.0.0.1:49152/callback')
    expect(r.location!.searchParams.get('state')).toBe('st-1')
    expect(r.location!.searchParams.get('iss')).toBe(as.issuer)
    expect(r.location!.searchParams.get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it.each<[string, string, string]>([
    ['unknown client', 'client_id=nobody&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback', 'unknown client_id'],
    ['another path', 'client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fother', 'redirect_uri is not registered for this client'],
    ['localhost is not a loopback IP literal', 'client_id=app&redirect_uri=http%3A%2F%2Flocalhost%3A5000%2Fcallback', 'redirect_uri is not registered for this client'],
    ['https instead of http', 'client_id=app&redirect_uri=https%3A%2F%2F127.0.0.1%3A5000%2Fcallback', 'redirect_uri is not registered for this client'],
  ])('%s: answered in place, never redirected', async (_n, query, why) => {
    const res = await request(`${as.authorizationUrl}?${query}&response_type=code`)
    expect([res.statusCode, res.headers.location, await res.body.text()]).toEqual([400, undefined, `authorization request refused: ${why}\n`])
  })

  it.each<[string, Record<string, string>, string, string]>([
    ['implicit flow', { response_type: 'token' }, 'unsupported_response_type', 'response_type must be code'],
    ['no PKCE', { code_challenge: '' }, 'invalid_request', 'PKCE with code_challenge_method S256 is required (RFC 7636)'],
    ['plain PKCE', { code_challenge_method: 'plain' }, 'invalid_request', 'PKCE with code_challenge_method S256 is required (RFC 7636)'],
    ['a scope not allowed', { scope: 'crm.admin' }, 'invalid_scope', 'scope crm.admin not allowed for this client'],
  ])('%s: redirected back with the error, state and iss', async (_n, over, error, description) => {
    const { location } = await authorize({ ...codeRequest('app'), ...over })
    expect(Object.fromEntries(location!.searchParams)).toEqual({ error, error_description: description, state: 'st-1', iss: as.issuer })
  })

  it('a repeated parameter is invalid_request (RFC 6749 §3.1)', async () => {
    const { location } = await authorize(codeRequest('app'), '&scope=crm.read&scope=crm.write')
    expect(location!.searchParams.get('error_description')).toBe('parameter scope is repeated')
  })

  it('a client registered with consent "deny" is refused as a user would: access_denied', async () => {
    const { location } = await authorize(codeRequest('refuser'))
    expect([location!.searchParams.get('error'), location!.searchParams.get('error_description')]).toEqual(['access_denied', 'the user denied the request'])
  })

  it('a client without the authorization_code grant is unauthorized_client', async () => {
    const { location } = await authorize(codeRequest('no-code'))
    expect(location!.searchParams.get('error')).toBe('unauthorized_client')
  })

  it.each<[string, string, string, boolean]>([
    ['http://127.0.0.1/callback', 'http://127.0.0.1:61000/callback', 'any port of a loopback IP', true],
    ['http://[::1]/callback', 'http://[::1]:61000/callback', 'IPv6 loopback too', true],
    ['http://127.0.0.1:8765/callback', 'http://127.0.0.1:8765/callback', 'a fixed port, exactly', true],
    ['http://localhost/callback', 'http://localhost:61000/callback', 'not localhost (RFC 8252 §8.3)', false],
    ['http://127.0.0.1/callback', 'http://127.0.0.1:61000/callback?x=1', 'not another query', false],
    ['https://app.example/cb', 'https://app.example:444/cb', 'not a remote host', false],
  ])('redirect URI %s accepts %s (%s): %s', (registered, given, _why, ok) => {
    expect(redirectUriMatches(registered, given)).toBe(ok)
  })
})

describe('embedded authorization server: authorization_code grant', () => {
  it('exchanges a code once for an access token and a refresh token that the refresh grant accepts', async () => {
    const { exchange } = await freshCode()
    const first = await exchange()
    expect(first.status).toBe(200)
    expect(first.body).toMatchObject({ token_type: 'Bearer', scope: 'crm.read crm.write', refresh_token: expect.any(String) })
    expect((await as.verifyAccessToken(`Bearer ${first.body.access_token}`)).claims).toMatchObject({ sub: 'user-1', client_id: 'app' })
    const refreshed = await token({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token!, client_id: 'app', client_secret: 'app-secret' })
    expect(refreshed.status).toBe(200)
    expect(as.requests.at(-2)!.form).toMatchObject({ code: '[REDACTED]', code_verifier: '[REDACTED]', grant_type: 'authorization_code' })
  })

  it('a replayed code is refused and every token obtained with it is revoked, rotated ones too (RFC 6749 §4.1.2)', async () => {
    const { exchange } = await freshCode()
    const first = await exchange()
    const rotated = await token({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token!, client_id: 'app', client_secret: 'app-secret' })
    expect(await exchange()).toEqual({ status: 400, body: expect.objectContaining({ error: 'invalid_grant', error_description: 'authorization code already used; the tokens issued for it are revoked' }) })
    for (const at of [first.body.access_token, rotated.body.access_token]) {
      expect(await as.verifyAccessToken(`Bearer ${at}`).catch((e) => e.description)).toBe('token revoked')
    }
    const again = await token({ grant_type: 'refresh_token', refresh_token: rotated.body.refresh_token!, client_id: 'app', client_secret: 'app-secret' })
    expect(again.body).toMatchObject({ error: 'invalid_grant', error_description: 'refresh token revoked' })
  })

  it.each<[string, Record<string, string>, string]>([
    ['a verifier of another pair', { code_verifier: pkce().verifier }, 'PKCE verification failed: code_verifier does not match code_challenge'],
    ['no verifier', { code_verifier: '' }, 'code_verifier is missing or malformed (RFC 7636 §4.1)'],
    ['another redirect URI', { redirect_uri: 'http://127.0.0.1:49153/callback' }, 'redirect_uri does not match the authorization request'],
    ['another client', { client_id: 'other', client_secret: 'other-secret' }, 'unknown authorization code'],
  ])('%s: invalid_grant', async (_n, over, description) => {
    const { exchange } = await freshCode()
    expect(await exchange(over)).toEqual({ status: 400, body: expect.objectContaining({ error: 'invalid_grant', error_description: description }) })
  })

  it('a failed exchange spends the code: the right verifier afterwards is a replay', async () => {
    const { exchange } = await freshCode()
    await exchange({ code_verifier: pkce().verifier })
    expect((await exchange()).body.error_description).toBe('authorization code already used; the tokens issued for it are revoked')
  })

  it('a code lives one minute', async () => {
    const { exchange } = await freshCode()
    clock += 61_000
    expect((await exchange()).body.error_description).toBe('authorization code expired')
  })

  it('a client that may not refresh gets no refresh token', async () => {
    const { exchange } = await freshCode('no-refresh')
    const res = await exchange()
    expect([res.status, res.body.refresh_token]).toEqual([200, undefined])
  })
})
