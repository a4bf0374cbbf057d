import { describe, expect, it } from 'vitest'
import { SignJWT } from 'jose'
import { processTokenResponse, parseWwwAuthenticate, formEncode, type RawTokenResponse } from '../../shared/oauth/index.ts'

const url = 'https://as.example/token'
const raw = (status: number, body: unknown, headers: Record<string, string> = {}): RawTokenResponse => ({
  status, headers, text: typeof body === 'string' ? body : JSON.stringify(body), sentAt: 1_000_000, receivedAt: 1_000_050,
})
const opts = { url, expectDpop: false, defaultExpiresInSec: 300, clockOffsetMs: 0 }
const fail = (r: RawTokenResponse, o = opts) => {
  try {
    processTokenResponse(r, o)
  } catch (e) {
    return e as Record<string, unknown>
  }
  throw new Error('expected an error')
}

describe('processTokenResponse', () => {
  it('accepts expires_in as a string and keeps extra fields (not tokens)', () => {
    const t = processTokenResponse(raw(200, { access_token: 'at-value-123', token_type: 'bearer', expires_in: '3600', instance_url: 'https://x.my.salesforce.com', id_token: 'idt-value' }), opts)
    expect([t.token.tokenType, t.token.expiresAt, t.lifetimeMs, t.token.extra]).toEqual(['Bearer', 1_000_000 + 3_600_000, 3_600_000, { instance_url: 'https://x.my.salesforce.com' }])
    expect(String(t.token.value)).toBe('[REDACTED]')
  })

  it('falls back to the JWT exp (corrected by the clock offset), then to the default', async () => {
    const jwt = await new SignJWT({ exp: 2_000 }).setProtectedHeader({ alg: 'HS256' }).sign(new Uint8Array(32))
    expect(processTokenResponse(raw(200, { access_token: jwt, token_type: 'Bearer' }), { ...opts, clockOffsetMs: 5_000 }).token.expiresAt).toBe(2_000_000 - 5_000)
    expect(processTokenResponse(raw(200, { access_token: 'opaque-token', token_type: 'Bearer' }), opts).token.expiresAt).toBe(1_000_000 + 300_000)
  })

  it.each<[string, RawTokenResponse, Record<string, unknown>]>([
    ['200 carrying error', raw(200, { error: 'invalid_scope', error_description: 'nope', error_uri: 'https://as/e' }), { code: 'ERR_OAUTH_RESPONSE', status: 200, error: 'invalid_scope', error_description: 'nope', error_uri: 'https://as/e', message: `token endpoint ${url} answered 200 invalid_scope: nope` }],
    ['non-JSON 200', raw(200, '<html>login page</html>'), { code: 'ERR_OAUTH_RESPONSE', message: `token endpoint ${url} answered 200 with a body that is not a JSON object: "<html>login page</html>"` }],
    ['missing access_token', raw(200, { token_type: 'Bearer' }), { code: 'ERR_OAUTH_RESPONSE', message: `token endpoint ${url} answered 200: "response" body "access_token" property must be a non-empty string` }],
    ['wrong token_type', raw(200, { access_token: 'x-token-value', token_type: 'mac' }), { code: 'ERR_OAUTH_RESPONSE', message: `token endpoint ${url} answered 200: unsupported "token_type" "mac" (expected Bearer)` }],
    ['negative expires_in', raw(200, { access_token: 'x-token-value', token_type: 'Bearer', expires_in: -1 }), { message: `token endpoint ${url} answered 200: "response" body "expires_in" property must be a non-negative number` }],
    ['502 HTML', raw(502, '<h1>Bad gateway</h1>', { 'retry-after': '3' }), { code: 'ERR_HTTP_STATUS', retryable: true, retryAfterMs: 3000, status: 502, message: `token endpoint ${url} answered 502: "<h1>Bad gateway</h1>"` }],
    ['400 invalid_grant', raw(400, { error: 'invalid_grant' }), { code: 'ERR_OAUTH_RESPONSE', retryable: false, error: 'invalid_grant', message: `token endpoint ${url} answered 400 invalid_grant` }],
    ['503 temporarily_unavailable', raw(503, { error: 'temporarily_unavailable' }), { retryable: true, error: 'temporarily_unavailable' }],
    ['401 challenge only', raw(401, '', { 'www-authenticate': 'Basic realm="as", error="invalid_client"' }), { code: 'ERR_OAUTH_CHALLENGE', scheme: 'Basic', error: 'invalid_client', message: `token endpoint ${url} answered 401 with a Basic challenge (invalid_client)` }],
  ])('%s', (_n, r, expected) => {
    expect(fail(r)).toMatchObject(expected)
  })

  it('redacts tokens from excerpts', () => {
    const e = fail(raw(500, '{"access_token":"leaky-token-value","note":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig"}'))
    expect(e.message).toBe(`token endpoint ${url} answered 500: "{"access_token":"[REDACTED]","note":"[REDACTED]"}"`)
  })

  it('expects DPoP token_type when DPoP is on', () => {
    expect(fail(raw(200, { access_token: 'x-token-value', token_type: 'Bearer' }), { ...opts, expectDpop: true }).message).toBe(`token endpoint ${url} answered 200: unsupported "token_type" "Bearer" (expected DPoP)`)
  })
})

describe('helpers', () => {
  it('formEncode is application/x-www-form-urlencoded', () => {
    expect(formEncode('a b+c%d:é/~*')).toBe('a+b%2Bc%25d%3A%C3%A9%2F%7E*')
  })
  it('parses WWW-Authenticate challenges', () => {
    expect(parseWwwAuthenticate('Bearer realm="api", error="invalid_token", error_description="expired", DPoP algs="ES256", error="use_dpop_nonce"')).toEqual([
      { scheme: 'Bearer', parameters: { realm: 'api', error: 'invalid_token', error_description: 'expired' } },
      { scheme: 'DPoP', parameters: { algs: 'ES256', error: 'use_dpop_nonce' } },
    ])
  })
})
