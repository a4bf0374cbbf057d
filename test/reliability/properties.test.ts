import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { processTokenResponse, type RawTokenResponse } from '../../shared/oauth/token-endpoint.ts'
import { loadChannelObject } from '../../engine/load.ts'
import { registerSecretValue } from '../../shared/secret.ts'
import { report } from './_helpers.ts'

// Secret values: long random strings that appear only where a server or a channel file puts secrets.
const secretArb = fc.string({ minLength: 16, maxLength: 40, unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') }).map((s) => `S3CR3T${s}`)
const jwtArb = fc.tuple(secretArb, secretArb).map(([a, b]) => `eyJhbGciOiJFUzI1NiJ9.${a}.${b}`)
const tokenValue = fc.oneof(secretArb, jwtArb)

/** A token-endpoint body: a plausible token or error object with random extras, mangled JSON, or arbitrary text. */
const bodyArb = fc.record({
  access_token: fc.option(fc.oneof(tokenValue, fc.anything()), { nil: undefined }),
  refresh_token: fc.option(fc.oneof(tokenValue, fc.integer()), { nil: undefined }),
  id_token: fc.option(jwtArb, { nil: undefined }),
  token_type: fc.option(fc.oneof(fc.constantFrom('Bearer', 'bearer', 'DPoP', 'mac', ''), fc.anything()), { nil: undefined }),
  expires_in: fc.option(fc.oneof(fc.integer({ min: -10, max: 100_000 }), fc.constantFrom('3600', ' 60 ', '1e3', 'NaN', '-1', '12.5'), fc.double(), fc.anything()), { nil: undefined }),
  error: fc.option(fc.oneof(fc.constantFrom('invalid_client', 'invalid_grant', 'temporarily_unavailable', 'slow_down', 'use_dpop_nonce'), fc.anything()), { nil: undefined }),
  error_description: fc.option(fc.string(), { nil: undefined }),
  scope: fc.option(fc.anything(), { nil: undefined }),
  extra: fc.option(fc.dictionary(fc.string(), fc.anything()), { nil: undefined }),
}, { requiredKeys: [] })

const validArb = fc.record({ access_token: tokenValue, token_type: fc.constantFrom('Bearer', 'bearer', 'DPoP'), expires_in: fc.option(fc.oneof(fc.nat(86_400), fc.constant('3600')), { nil: undefined }), scope: fc.option(fc.string(), { nil: undefined }) }, { requiredKeys: ['access_token', 'token_type'] })
const textArb = fc.oneof(
  validArb.map((b) => JSON.stringify(b)),
  bodyArb.map((b) => JSON.stringify(b)),
  bodyArb.map((b) => JSON.stringify(b)).chain((t) => fc.nat(t.length).map((n) => t.slice(0, n))), // cut short
  fc.string(), fc.json(), fc.constantFrom('', 'null', '[]', '<html>502 Bad Gateway</html>'),
)
const headersArb = fc.dictionary(
  fc.constantFrom('retry-after', 'content-type', 'www-authenticate', 'date', 'dpop-nonce', 'x-other'),
  fc.oneof(fc.string(), fc.constantFrom('5', 'Wed, 21 Oct 2015 07:28:00 GMT', 'Bearer error="invalid_client"', 'application/json')),
)

describe('property: the token-response parser', () => {
  it('never crashes: a token or a typed ERR_* error, and never a secret in the message', () => {
    let tokens = 0
    let errors = 0
    fc.assert(fc.property(fc.oneof(fc.constant(200), fc.integer({ min: 100, max: 599 })), headersArb, textArb, fc.boolean(), secretArb, (status, headers, text, expectDpop, registered) => {
      // A secret the client knows (its client_secret) echoed by the server in the description.
      registerSecretValue(registered)
      const raw: RawTokenResponse = { status, headers, text: text.replace('RANDOM_REGISTERED', registered), sentAt: 1_700_000_000_000, receivedAt: 1_700_000_000_050 }
      const secrets = [...text.matchAll(/S3CR3T[A-Za-z0-9_-]{16,}/g)].map((m) => m[0]).concat(registered)
      try {
        const r = processTokenResponse(raw, { url: 'https://as.example/token', expectDpop, defaultExpiresInSec: 300, clockOffsetMs: 0 })
        tokens++
        expect(status).toBeGreaterThanOrEqual(200)
        expect(status).toBeLessThan(300)
        expect(Number.isFinite(r.token.expiresAt)).toBe(true)
        expect(String(r.token.value)).toBe('[REDACTED]')
      } catch (e) {
        errors++
        expect(e).toBeInstanceOf(Error)
        expect((e as { code?: string }).code).toMatch(/^ERR_[A-Z0-9_]+$/)
        const message = (e as Error).message
        for (const s of secrets) expect(message).not.toContain(s)
        expect(message).not.toMatch(/eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/) // a JWT header alone is public
      }
    }), { numRuns: 2000 })
    report({ scenario: 'property: token-response parser', injected: 'random statuses, headers and bodies (2,000 runs)', sent: 2000, delivered: tokens, lost: 0, duplicated: 0, inError: errors, notes: `${tokens} parsed as tokens, ${errors} typed ERR_* errors, 0 crashes, 0 secrets in messages` })
  })

  it('also when the server echoes a registered secret in error_description', () => {
    fc.assert(fc.property(secretArb, fc.string(), fc.integer({ min: 200, max: 599 }), (secret, noise, status) => {
      registerSecretValue(secret)
      const raw: RawTokenResponse = { status, headers: {}, text: JSON.stringify({ error: 'invalid_client', error_description: `${noise} ${secret} ${noise}` }), sentAt: 0, receivedAt: 0 }
      const e = (() => { try { processTokenResponse(raw, { url: 'https://as.example/token', expectDpop: false, defaultExpiresInSec: 300, clockOffsetMs: 0 }) } catch (err) { return err as Error & { code: string } } })()
      expect(e?.code).toBe('ERR_OAUTH_RESPONSE')
      expect(e!.message).not.toContain(secret)
    }), { numRuns: 300 })
  })
})

// A valid channel, then random damage: subtrees replaced by arbitrary values, keys added or removed.
const baseChannel = (secret: string, apiKey: string) => ({
  name: 'prop',
  credentials: { api: { tokenUrl: 'https://as.example/token', clientId: 'c1', clientAuth: { method: 'client_secret_basic', secret }, scope: 'system/Patient.write' } },
  source: { type: 'http-listener', config: { port: 7001, path: '/in', apiKey: { value: apiKey } } },
  filters: [{ type: 'map', config: { jsonata: "{ 'id': mrn }" } }],
  destinations: [{ name: 'api', type: 'http', config: { url: 'https://api.example/in', credential: 'api', secretHeaders: { 'x-api-key': apiKey } }, retry: { maxAttempts: 3 } }],
  options: { concurrency: 2 },
})

type Json = Record<string, unknown>
const PATHS = [
  [], ['name'], ['credentials'], ['credentials', 'api'], ['credentials', 'api', 'clientAuth'], ['credentials', 'api', 'clientAuth', 'method'], ['credentials', 'api', 'tokenUrl'],
  ['source'], ['source', 'type'], ['source', 'config'], ['source', 'config', 'port'], ['source', 'config', 'apiKey'],
  ['filters'], ['filters', '0'], ['filters', '0', 'config', 'jsonata'], ['destinations'], ['destinations', '0'], ['destinations', '0', 'config'],
  ['destinations', '0', 'config', 'url'], ['destinations', '0', 'config', 'credential'], ['destinations', '0', 'retry'], ['options'], ['options', 'concurrency'],
]
const mutation = fc.record({ path: fc.constantFrom(...PATHS), value: fc.oneof(fc.anything(), fc.jsonValue(), fc.constant(undefined)), key: fc.option(fc.string({ maxLength: 12 }), { nil: undefined }) })

function mutate(obj: Json, m: { path: string[]; value: unknown; key?: string }): unknown {
  if (m.path.length === 0) return m.key === undefined ? m.value : { ...obj, [m.key]: m.value }
  let cur: Json = obj
  for (const p of m.path.slice(0, -1)) {
    if (cur[p] === null || typeof cur[p] !== 'object') return obj
    cur = cur[p] as Json
  }
  const last = m.path[m.path.length - 1]!
  // A named key on an array (`length` = -5e-324 threw in this function) is nothing a JSON file can say.
  if (m.key !== undefined && Array.isArray(cur[last])) return obj
  if (m.key !== undefined && cur[last] && typeof cur[last] === 'object') (cur[last] as Json)[m.key] = m.value
  else if (m.value === undefined) delete cur[last]
  else cur[last] = m.value
  return obj
}

describe('property: the channel loader', () => {
  it('never crashes: a loaded channel or ERR_CONFIG_INVALID, and never a secret in the message', async () => {
    let loaded = 0
    let rejected = 0
    await fc.assert(fc.asyncProperty(secretArb, secretArb, fc.array(mutation, { minLength: 1, maxLength: 4 }), async (secret, apiKey, mutations) => {
      let raw: unknown = baseChannel(secret, apiKey)
      for (const m of mutations) raw = raw && typeof raw === 'object' && !Array.isArray(raw) ? mutate(raw as Json, m) : raw
      try {
        await loadChannelObject(raw, { file: join(tmpdir(), 'prop.json'), env: {} })
        loaded++
      } catch (e) {
        rejected++
        expect((e as { code?: string }).code).toBe('ERR_CONFIG_INVALID')
        const message = (e as Error).message
        expect(message).not.toContain(secret)
        expect(message).not.toContain(apiKey)
      }
    }), { numRuns: 400 })
    expect(rejected).toBeGreaterThan(0)
    report({ scenario: 'property: channel loader', injected: 'a valid channel with 1–4 random subtree replacements (400 runs)', sent: 400, delivered: loaded, lost: 0, duplicated: 0, inError: rejected, notes: `${loaded} loaded, ${rejected} rejected with ERR_CONFIG_INVALID, 0 crashes, 0 secrets in messages` })
  }, 60_000)
})
