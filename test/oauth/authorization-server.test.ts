import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomUUID } from 'node:crypto'
import { request } from 'undici'
import { SignJWT } from 'jose'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { keyFor } from './_helpers.ts'

let as: AuthorizationServer
let es256: Awaited<ReturnType<typeof keyFor>>
let other: Awaited<ReturnType<typeof keyFor>>
beforeAll(async () => {
  as = await startAuthorizationServer()
  es256 = await keyFor('ES256', 'k1')
  other = await keyFor('ES256', 'k1')
  as.registerClient({ clientId: 'pk', authMethod: 'private_key_jwt', jwks: { keys: [es256.jwk] } })
  as.registerClient({ clientId: 'basic', authMethod: 'client_secret_basic', secret: 'a+b c%d' })
  as.registerClient({ clientId: 'post', authMethod: 'client_secret_post', secret: 'post-secret', scopes: ['read'] })
  as.registerClient({ clientId: 'rt', authMethod: 'client_secret_post', secret: 'rt-secret' })
})
afterAll(() => as.close())

async function post(form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await request(as.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString() })
  return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as Record<string, string> }
}

async function assertion(overrides: Record<string, unknown> = {}, opts: { alg?: string; key?: typeof es256 } = {}) {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ iss: 'pk', sub: 'pk', aud: as.tokenUrl, jti: randomUUID(), iat: now, exp: now + 60, ...overrides })
    .setProtectedHeader({ alg: opts.alg ?? 'ES256', kid: 'k1' })
    .sign((opts.key ?? es256).key)
}
const pkForm = (a: string) => ({ grant_type: 'client_credentials', client_id: 'pk', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: a })

describe('embedded authorization server: client assertions', () => {
  it('accepts a valid assertion and rejects its replay (jti reused)', async () => {
    const a = await assertion()
    expect((await post(pkForm(a))).status).toBe(200)
    expect(await post(pkForm(a))).toMatchObject({ status: 401, body: { error: 'invalid_client', error_description: 'client assertion: jti reused' } })
  })

  it.each<[string, () => Promise<string>, string]>([
    ['wrong aud', () => assertion({ aud: `${as.issuer}/other` }), 'client assertion: aud must be the token endpoint'],
    ['exp too far', () => assertion({ exp: Math.floor(Date.now() / 1000) + 600 }), 'client assertion: exp more than 300 s ahead'],
    ['expired', () => assertion({ exp: Math.floor(Date.now() / 1000) - 120 }), 'client assertion: assertion expired'],
    ['iss not the client', () => assertion({ iss: 'someone' }), 'client assertion: iss must be the client_id'],
    ['no jti', () => assertion({ jti: undefined }), 'client assertion: jti is required'],
    ['other key', () => assertion({}, { key: other }), 'client assertion: signature verification failed (ERR_JWS_SIGNATURE_VERIFICATION_FAILED)'],
    ['alg not registered', async () => (await keyFor('RS256', 'k1')) && assertion({}, { alg: 'RS256', key: await keyFor('RS256', 'k1') }), 'client assertion: alg RS256 not allowed for this client'],
  ])('%s → invalid_client', async (_n, make, description) => {
    expect(await post(pkForm(await make()))).toMatchObject({ status: 401, body: { error: 'invalid_client', error_description: description } })
  })
})

describe('embedded authorization server: secrets', () => {
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`
  const enc = (s: string) => new URLSearchParams([['', s]]).toString().slice(1)

  it('client_secret_basic requires form-urlencoding before base64 (RFC 6749 §2.3.1)', async () => {
    expect((await post({ grant_type: 'client_credentials' }, { authorization: basic(enc('basic'), enc('a+b c%d')) })).status).toBe(200)
    expect(await post({ grant_type: 'client_credentials' }, { authorization: basic('basic', 'a+b c%d') })).toMatchObject({ status: 401, headers: { 'www-authenticate': 'Basic realm="weir"' }, body: { error: 'invalid_client' } })
  })

  it('rejects credentials in more than one place', async () => {
    expect(await post({ grant_type: 'client_credentials', client_id: 'post', client_secret: 'post-secret' }, { authorization: basic('post', 'post-secret') }))
      .toMatchObject({ status: 400, body: { error: 'invalid_request', error_description: 'client credentials sent in more than one place (RFC 6749 §2.3)' } })
  })

  it('rejects a method other than the registered one and out-of-registration scopes', async () => {
    expect(await post({ grant_type: 'client_credentials', client_id: 'basic', client_secret: 'a+b c%d' })).toMatchObject({ status: 401, body: { error: 'invalid_client', error_description: 'client is registered for client_secret_basic, not client_secret_post' } })
    expect(await post({ grant_type: 'client_credentials', client_id: 'post', client_secret: 'post-secret', scope: 'read write' })).toMatchObject({ status: 400, body: { error: 'invalid_scope', error_description: 'scope write not allowed for this client' } })
  })

  it('rotates refresh tokens: a spent one gets invalid_grant', async () => {
    const rt = as.issueRefreshToken('rt')
    const first = await post({ grant_type: 'refresh_token', refresh_token: rt, client_id: 'rt', client_secret: 'rt-secret' })
    expect(first.status).toBe(200)
    expect(typeof first.body.refresh_token).toBe('string')
    expect(await post({ grant_type: 'refresh_token', refresh_token: rt, client_id: 'rt', client_secret: 'rt-secret' })).toMatchObject({ status: 400, body: { error: 'invalid_grant', error_description: 'refresh token already used' } })
    expect(as.spentRefreshTokenUses()).toBe(1)
    expect((await post({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token!, client_id: 'rt', client_secret: 'rt-secret' })).status).toBe(200)
  })

  it.each<[string, () => void, Record<string, string>, string]>([
    ['unauthorized_client', () => as.registerClient({ clientId: 'rt-narrow', authMethod: 'client_secret_post', secret: 'rt-narrow-secret', grants: ['client_credentials'] }), {}, 'grant refresh_token not allowed for this client'],
    ['invalid_target', () => as.registerClient({ clientId: 'rt-narrow', authMethod: 'client_secret_post', secret: 'rt-narrow-secret', resources: ['https://api.example/a'] }), { resource: 'https://api.example/b' }, 'resource https://api.example/b not allowed for this client'],
  ])('a refresh request rejected with %s does not spend the refresh token', async (error, register, extra, description) => {
    register()
    const rt = as.issueRefreshToken('rt-narrow')
    const spent = as.spentRefreshTokenUses()
    const form = { grant_type: 'refresh_token', refresh_token: rt, client_id: 'rt-narrow', client_secret: 'rt-narrow-secret' }
    expect(await post({ ...form, ...extra })).toMatchObject({ status: 400, body: { error, error_description: description } })
    as.registerClient({ clientId: 'rt-narrow', authMethod: 'client_secret_post', secret: 'rt-narrow-secret' })
    const again = await post(form)
    expect([again.status, typeof again.body.refresh_token]).toEqual([200, 'string'])
    expect(as.spentRefreshTokenUses()).toBe(spent)
  })

  it('issues verifiable JWT access tokens, publishes metadata and JWKS, and can fail on demand', async () => {
    const ok = await post({ grant_type: 'client_credentials', client_id: 'post', client_secret: 'post-secret', resource: 'https://api.example/fhir' })
    expect(ok.body).toMatchObject({ token_type: 'Bearer', expires_in: 300, scope: 'read' })
    const { claims } = await as.verifyAccessToken(`Bearer ${ok.body.access_token}`)
    expect(claims).toMatchObject({ iss: as.issuer, sub: 'post', client_id: 'post', aud: 'https://api.example/fhir' })
    const meta = await (await request(`${as.url}/.well-known/oauth-authorization-server`)).body.json()
    expect(meta).toMatchObject({ issuer: as.issuer, token_endpoint: as.tokenUrl, jwks_uri: as.jwksUrl })
    const jwks = (await (await request(as.jwksUrl)).body.json()) as { keys: unknown[] }
    expect(jwks.keys).toHaveLength(1)
    as.setFailure({ status: 429, retryAfter: 7 })
    expect(await post({ grant_type: 'client_credentials', client_id: 'post', client_secret: 'post-secret' })).toMatchObject({ status: 429, headers: { 'retry-after': '7' }, body: { error: 'invalid_request' } })
    expect(as.counts().byClient.post).toEqual({ client_credentials: 4 })
    as.revokeAll()
    const err = await as.verifyAccessToken(`Bearer ${ok.body.access_token}`).catch((e) => e)
    expect([err.error, err.description]).toEqual(['invalid_token', 'token revoked'])
  })
})
