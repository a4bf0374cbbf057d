import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { discover, discoveryUrls } from '../../shared/oauth/index.ts'
import { loopbackServer } from '../_setup.ts'

describe('discover', () => {
  let idp: Awaited<ReturnType<typeof loopbackServer>>
  /** Answers by path: [status, body]; anything else 404. */
  const answers = new Map<string, [number, string]>()
  beforeAll(async () => {
    idp = await loopbackServer((req, res) => {
      const [status, body] = answers.get(req.url) ?? [404, '{}']
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(body)
    })
  })
  afterAll(async () => { await idp.close() })
  const pathsSince = (n: number) => idp.requests.slice(n).map((r) => r.url)

  it('orders RFC 8414 (path inserted) before OpenID configuration (path appended), or the reverse', () => {
    expect(discoveryUrls('https://idp.example/realms/a/')).toEqual(['https://idp.example/.well-known/oauth-authorization-server/realms/a', 'https://idp.example/realms/a/.well-known/openid-configuration'])
    expect(discoveryUrls('https://idp.example', 'oidc')).toEqual(['https://idp.example/.well-known/openid-configuration', 'https://idp.example/.well-known/oauth-authorization-server'])
  })

  it('moves on after a 404 and checks the field the caller requires', async () => {
    const issuer = `${idp.origin}/r1`
    answers.set('/r1/.well-known/openid-configuration', [200, JSON.stringify({ issuer, jwks_uri: `${idp.origin}/jwks` })])
    const n = idp.requests.length
    expect((await discover(issuer, { requires: 'jwks_uri' })).jwks_uri).toBe(`${idp.origin}/jwks`)
    expect(pathsSince(n)).toEqual(['/.well-known/oauth-authorization-server/r1', '/r1/.well-known/openid-configuration'])
    const err = await discover(issuer).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_OAUTH_DISCOVERY', `issuer discovery at ${idp.origin}/r1/.well-known/openid-configuration has no "token_endpoint"`])
  })

  it('refuses metadata naming another issuer (RFC 8414 §3.3)', async () => {
    answers.set('/.well-known/oauth-authorization-server/r2', [200, JSON.stringify({ issuer: `${idp.origin}/other`, token_endpoint: `${idp.origin}/token` })])
    const err = await discover(`${idp.origin}/r2`).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_OAUTH_DISCOVERY', `issuer discovery at ${idp.origin}/.well-known/oauth-authorization-server/r2 names issuer "${idp.origin}/other", not "${idp.origin}/r2"`])
  })

  it.each([408, 429, 503])('answers %s: retryable', async (status) => {
    answers.set(`/.well-known/oauth-authorization-server/s${status}`, [status, '{}'])
    const err = await discover(`${idp.origin}/s${status}`).catch((e) => e)
    expect([err.code, err.retryable, err.message]).toEqual(['ERR_HTTP_STATUS', true, `issuer discovery at ${idp.origin}/.well-known/oauth-authorization-server/s${status} answered ${status}`])
  })

  it('fails permanently when no document exists', async () => {
    const err = await discover(`${idp.origin}/none`).catch((e) => e)
    expect([err.code, err.retryable]).toEqual(['ERR_OAUTH_DISCOVERY', false])
    expect(err.message).toBe(`issuer ${idp.origin}/none publishes no discovery document (404 at ${idp.origin}/.well-known/oauth-authorization-server/none and ${idp.origin}/none/.well-known/openid-configuration)`)
  })

  it('GETs through the given function (a component passes its shared HTTP client)', async () => {
    const seen: string[] = []
    const meta = await discover('https://idp.example', {
      first: 'oidc',
      get: async (url) => { seen.push(url); return { status: 200, body: JSON.stringify({ issuer: 'https://idp.example', token_endpoint: 'https://idp.example/token' }) } },
    })
    expect([meta.token_endpoint, seen]).toEqual(['https://idp.example/token', ['https://idp.example/.well-known/openid-configuration']])
  })
})
