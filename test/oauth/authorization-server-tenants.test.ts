import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomUUID } from 'node:crypto'
import { request } from 'undici'
import { SignJWT, decodeJwt } from 'jose'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { discover } from '../../shared/oauth/discovery.ts'
import { keyFor } from './_helpers.ts'

// One client id at two token endpoints of one server (its own and a tenant's, or two tenants'):
// two clients, each with its own secret or keys, refresh tokens and injected faults.
let as: AuthorizationServer
let east: Awaited<ReturnType<typeof keyFor>>
let west: Awaited<ReturnType<typeof keyFor>>
beforeAll(async () => {
  as = await startAuthorizationServer()
  east = await keyFor('ES256', 'k1')
  west = await keyFor('ES256', 'k1')
  as.registerClient({ clientId: 'shared', authMethod: 'client_secret_post', secret: 'root-secret' })
  as.registerClient({ clientId: 'shared', authMethod: 'client_secret_post', secret: 'east-secret' }, { tenant: 'east' })
  as.registerClient({ clientId: 'shared', authMethod: 'client_secret_basic', secret: 'west-secret' }, { tenant: 'west' })
  as.registerClient({ clientId: 'pk', authMethod: 'private_key_jwt', jwks: { keys: [east.jwk] } }, { tenant: 'east' })
  as.registerClient({ clientId: 'pk', authMethod: 'private_key_jwt', jwks: { keys: [west.jwk] } }, { tenant: 'west' })
  as.registerClient({ clientId: 'other', authMethod: 'client_secret_post', secret: 'other-secret' }, { tenant: 'east' })
})
afterAll(() => as.close())

async function post(url: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString() })
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, string> }
}
const secretPost = (secret: string, id = 'shared') => ({ grant_type: 'client_credentials', client_id: id, client_secret: secret })
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`

async function pkForm(key: typeof east, aud: string) {
  const now = Math.floor(Date.now() / 1000)
  const jwt = await new SignJWT({ iss: 'pk', sub: 'pk', aud, jti: randomUUID(), iat: now, exp: now + 60 }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(key.key)
  return { grant_type: 'client_credentials', client_id: 'pk', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt }
}

describe('embedded authorization server: tenants', () => {
  it('a tenant has its own issuer and endpoints under /tenants/<name>; the server keeps its own', () => {
    expect(as.tenant('east')).toEqual({ name: 'east', issuer: `${as.url}/tenants/east`, tokenUrl: `${as.url}/tenants/east/token`, authorizationUrl: `${as.url}/tenants/east/authorize` })
    expect(as.tenant('a b/c').tokenUrl).toBe(`${as.url}/tenants/a%20b%2Fc/token`)
    expect([as.issuer, as.tokenUrl]).toEqual([as.url, `${as.url}/token`])
  })

  it('one client id with three secrets: each authenticates at its own endpoint only', async () => {
    const urls = { root: as.tokenUrl, east: as.tenant('east').tokenUrl, west: as.tenant('west').tokenUrl }
    expect((await post(urls.root, secretPost('root-secret'))).status).toBe(200)
    expect((await post(urls.east, secretPost('east-secret'))).status).toBe(200)
    expect((await post(urls.west, { grant_type: 'client_credentials' }, { authorization: basic('shared', 'west-secret') })).status).toBe(200)
    expect(await post(urls.root, secretPost('east-secret'))).toMatchObject({ status: 401, body: { error: 'invalid_client', error_description: 'client secret mismatch' } })
    expect(await post(urls.east, secretPost('root-secret'))).toMatchObject({ status: 401, body: { error: 'invalid_client', error_description: 'client secret mismatch' } })
    expect(await post(urls.west, secretPost('west-secret'))).toMatchObject({ status: 401, body: { error: 'invalid_client', error_description: 'client is registered for client_secret_basic, not client_secret_post' } })
    expect(await post(urls.root, secretPost('other-secret', 'other'))).toMatchObject({ status: 401, body: { error: 'invalid_client', error_description: 'unknown client' } })
  })

  it('a client assertion: verified with the keys registered at that tenant, its aud that tenant\'s token endpoint', async () => {
    const eastUrl = as.tenant('east').tokenUrl
    const westUrl = as.tenant('west').tokenUrl
    expect((await post(eastUrl, await pkForm(east, eastUrl))).status).toBe(200)
    expect((await post(westUrl, await pkForm(west, westUrl))).status).toBe(200)
    expect(await post(westUrl, await pkForm(east, westUrl))).toMatchObject({ status: 401, body: { error_description: 'client assertion: signature verification failed (ERR_JWS_SIGNATURE_VERIFICATION_FAILED)' } })
    expect(await post(westUrl, await pkForm(west, eastUrl))).toMatchObject({ status: 401, body: { error_description: 'client assertion: aud must be the token endpoint' } })
  })

  it('records the tenant of each request; access tokens carry the tenant\'s issuer and verify', async () => {
    const before = as.requests.length
    const { body } = await post(as.tenant('east').tokenUrl, secretPost('east-secret'))
    expect(as.requests.slice(before).map((r) => [r.tenant, r.clientId, r.status])).toEqual([['east', 'shared', 200]])
    expect(decodeJwt(body.access_token!).iss).toBe(`${as.url}/tenants/east`)
    await expect(as.verifyAccessToken(`Bearer ${body.access_token}`)).resolves.toMatchObject({ claims: { client_id: 'shared' } })
    const own = await post(as.tokenUrl, secretPost('root-secret'))
    expect(as.requests.at(-1)!.tenant).toBeUndefined()
    expect(decodeJwt(own.body.access_token!).iss).toBe(as.url)
  })

  it('a refresh token is good only at the tenant that issued it', async () => {
    const rt = as.issueRefreshToken('shared', { tenant: 'east' })
    const refresh = { grant_type: 'refresh_token', refresh_token: rt, client_id: 'shared' }
    expect(await post(as.tokenUrl, { ...refresh, client_secret: 'root-secret' })).toMatchObject({ status: 400, body: { error: 'invalid_grant', error_description: 'unknown refresh token' } })
    expect((await post(as.tenant('east').tokenUrl, { ...refresh, client_secret: 'east-secret' })).status).toBe(200)
  })

  it('publishes each tenant\'s metadata where RFC 8414 §3.1 puts it, so that discovery finds its token endpoint', async () => {
    const meta = await discover(as.tenant('west').issuer)
    expect(meta).toMatchObject({ issuer: `${as.url}/tenants/west`, token_endpoint: `${as.url}/tenants/west/token`, authorization_endpoint: `${as.url}/tenants/west/authorize`, jwks_uri: as.jwksUrl })
    expect((await discover(as.issuer)).token_endpoint).toBe(as.tokenUrl)
    const unknown = await request(`${as.url}/tenants/nowhere/token`, { method: 'POST', body: '' })
    expect([unknown.statusCode, await unknown.body.json()]).toEqual([404, { error: 'not_found' }])
  })

  it('a failure for a tenant and client hits only their requests, in order with the others', async () => {
    as.setFailure({ status: 503, tenant: 'east', clientId: 'other', count: 2 })
    as.setFailure({ status: 429, tenant: 'west' })
    expect((await post(as.tenant('east').tokenUrl, secretPost('east-secret'))).status).toBe(200)
    expect((await post(as.tokenUrl, secretPost('root-secret'))).status).toBe(200)
    expect(await post(as.tenant('west').tokenUrl, { grant_type: 'client_credentials' }, { authorization: basic('shared', 'west-secret') })).toMatchObject({ status: 429, body: { error: 'invalid_request' } })
    expect(await post(as.tenant('east').tokenUrl, secretPost('other-secret', 'other'))).toMatchObject({ status: 503, body: { error: 'temporarily_unavailable' } })
    expect((await post(as.tenant('east').tokenUrl, secretPost('other-secret', 'other'))).status).toBe(503)
    expect((await post(as.tenant('east').tokenUrl, secretPost('other-secret', 'other'))).status).toBe(200)
  })

  it('an injected 401 answers invalid_client, as a token endpoint does (RFC 6749 §5.2); 400 invalid_request', async () => {
    as.setFailure({ status: 401 })
    as.setFailure({ status: 400 })
    expect(await post(as.tokenUrl, secretPost('root-secret'))).toMatchObject({ status: 401, body: { error: 'invalid_client' } })
    expect(await post(as.tokenUrl, secretPost('root-secret'))).toMatchObject({ status: 400, body: { error: 'invalid_request' } })
  })
})
