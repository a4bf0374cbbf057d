import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../shared/log/index.ts'
import { Secret, registerSecretValue } from '../../shared/secret.ts'

function collect(pretty: boolean) {
  let out = ''
  const destination = new Writable({ write(chunk, _e, cb) { out += String(chunk); cb() } })
  return { log: createLogger({ destination, pretty, level: 'debug' }), text: () => out }
}

// Values a careless component might log; each must be absent from the output.
const SECRETS = {
  bearer: 'eyJhbGciOiJSUzM4NCJ9.payload-for-test.sig',
  dpop: 'eyJ0eXAiOiJkcG9wK2p3dCJ9.dpop-proof.sig',
  cookie: 'session=cookie-value-abcdef',
  accessToken: 'at-0123456789abcdef',
  refreshToken: 'rt-0123456789abcdef',
  assertion: 'eyJhbGciOiJQUzI1NiJ9.assertion.sig',
  clientSecret: 'client-secret-value-xyz',
  writeOnly: 'write-only-config-value-42',
  scrubbed: 'token-seen-by-oauth-client-77',
}

describe.each([false, true])('logger redaction (pretty=%s)', (pretty) => {
  it('scrubs a multi-line secret (a PEM key) logged under a key that is not redacted by name', () => {
    const { log, text } = collect(pretty)
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-test-material\nline2\"quoted\\backslash\n-----END PRIVATE KEY-----'
    new Secret(pem, '$file:keys/test.pem')
    log.info({ detail: pem }, 'careless component')
    log.info(`inline ${pem}`)
    expect(text()).not.toContain('MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-test-material')
    expect(text()).toContain('[REDACTED]')
  })

  it('never writes Authorization, DPoP, Cookie, tokens, assertions or writeOnly values', () => {
    const { log, text } = collect(pretty)
    registerSecretValue(SECRETS.scrubbed)
    log.info({ headers: { authorization: `Bearer ${SECRETS.bearer}`, DPoP: SECRETS.dpop, cookie: SECRETS.cookie, accept: 'application/json' } }, 'request')
    log.info({ response: { access_token: SECRETS.accessToken, refresh_token: SECRETS.refreshToken, token_type: 'Bearer' } }, 'token response')
    log.debug({ form: { client_assertion: SECRETS.assertion, client_secret: SECRETS.clientSecret, grant_type: 'client_credentials' } }, 'token request')
    log.info({ config: { url: 'https://api.example.org', apiKey: new Secret(SECRETS.writeOnly, '$env:K') } }, 'component config')
    log.warn(`upstream echoed ${SECRETS.scrubbed} in its error`)
    log.error({ err: new Error(`failed with ${SECRETS.scrubbed}`) }, 'delivery failed')
    const out = text()
    for (const [name, value] of Object.entries(SECRETS)) expect(out, name).not.toContain(value)
    expect(out).toContain('[REDACTED]')
    expect(out).toContain('application/json')
    expect(out).toContain('client_credentials')
    expect(out).toContain('https://api.example.org')
  })
})

describe('logger format', () => {
  it('writes JSON lines by default (not a TTY)', () => {
    const { log, text } = collect(false)
    log.info({ channel: 'c1' }, 'started')
    const line = JSON.parse(text().trim())
    expect(line).toMatchObject({ level: 30, msg: 'started', channel: 'c1', name: 'weir' })
  })
  it('writes readable lines when pretty', () => {
    const { log, text } = collect(true)
    log.info({ channel: 'c1' }, 'started')
    expect(text()).toMatch(/INFO.*started/)
    expect(() => JSON.parse(text())).toThrow()
  })
})
