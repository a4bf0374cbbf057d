import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loopbackServer } from '../_setup.ts'
import { adminConfig, call, sessionCookie, useAdminFixture } from './_admin.ts'

let idp: Awaited<ReturnType<typeof loopbackServer>>
let key: CryptoKey
beforeAll(async () => {
  const pair = await generateKeyPair('ES256')
  key = pair.privateKey
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }
  idp = await loopbackServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    if (req.url === '/jwks') return void res.end(JSON.stringify({ keys: [jwk] }))
    res.statusCode = 404
    res.end('{}')
  })
})
afterAll(async () => { await idp.close() })

const token = (claims: Record<string, unknown>, aud = 'weir-admin') =>
  new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(idp.origin).setAudience(aud).setSubject('alice').setIssuedAt().setExpirationTime('5m').sign(key)
const pause = async (claims: Record<string, unknown>, aud?: string) =>
  call(fx.url, '/api/channels/orders/pause', { method: 'POST', headers: { authorization: `Bearer ${await token(claims, aud)}` } })

const fx = useAdminFixture(() => adminConfig({ jwt: { issuer: idp.origin, audience: 'weir-admin', jwksUrl: idp.origin + '/jwks', roleClaim: 'realm_access.roles' } }))

describe('admin server with OIDC bearer tokens', () => {
  it('maps the role claim: viewer reads but may not pause, operator pauses', async () => {
    const viewer = await token({ realm_access: { roles: ['weir-viewer'] } })
    expect((await call(fx.url, '/api/channels', { headers: { authorization: `Bearer ${viewer}` } })).status).toBe(200)
    expect((await pause({ realm_access: { roles: ['weir-viewer'] } })).status).toBe(403)
    const op = await pause({ realm_access: { roles: ['other', 'weir-operator'] } })
    expect([op.status, op.json.by]).toEqual([200, 'alice'])
  })

  it('refuses a token without either role (403) and one for another audience (401)', async () => {
    const none = await pause({ realm_access: { roles: ['other'] } })
    expect([none.status, none.json.error]).toEqual([403, 'token carries neither role "weir-operator" nor "weir-viewer" in claim "realm_access.roles"'])
    const aud = await pause({ realm_access: { roles: ['weir-operator'] } }, 'another-api')
    expect([aud.status, aud.json.error]).toEqual([401, 'invalid token: unexpected "aud" claim value'])
    expect(fx.rt.handles[0]!.status()).toBe('running')
  })

  it('ends a login session made with a token when that token expires, not sessionTtlSec later', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2
    const shortLived = await new SignJWT({ realm_access: { roles: ['weir-operator'] } }).setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(idp.origin).setAudience('weir-admin').setSubject('alice').setIssuedAt().setExpirationTime(exp).sign(key)
    const login = await call(fx.url, '/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${shortLived}` })
    expect(login.status).toBe(303)
    // The browser is told the session's real life, not the configured eight hours.
    expect(Number(/Max-Age=(\d+)/.exec(String(login.headers['set-cookie']?.[0]))?.[1])).toBeLessThanOrEqual(2)
    const cookie = sessionCookie(login)
    expect((await call(fx.url, '/api/session', { headers: { cookie } })).json.name).toBe('alice')
    await new Promise((ok) => setTimeout(ok, exp * 1000 - Date.now() + 50))
    expect((await call(fx.url, '/api/channels', { headers: { cookie } })).status).toBe(401)
  })
})
