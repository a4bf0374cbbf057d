import { generateKeyPairSync, createPublicKey, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exportJWK } from 'jose'
import { startAuthorizationServer, type AuthorizationServer, type ProtectedApi } from '../../engine/embedded/authorization-server.ts'
import { inParallel, pemLines, report, startTestChannel, tally, textCollector, until, type TestChannel } from './_helpers.ts'

const collector = textCollector()
let as: AuthorizationServer
let api: ProtectedApi
let ch: TestChannel
const secret = randomBytes(24).toString('base64url')
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()

beforeAll(async () => {
  collector.capture()
  as = await startAuthorizationServer({ tokenLifetimeSec: 3600 })
  as.registerClient({ clientId: 'rel-basic', authMethod: 'client_secret_basic', secret })
  as.registerClient({ clientId: 'rel-jwt', authMethod: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(createPublicKey(privateKey))), alg: 'RS384', kid: 'rel-k1' }] } })
  api = await as.createProtectedApi()
  const breaker = { failureThreshold: 1000, resetAfterMs: 200 }
  const retry = { maxAttempts: 20, initialDelayMs: 20, maxDelayMs: 200 }
  ch = await startTestChannel({
    name: 'revocation',
    credentials: {
      basic: { tokenUrl: as.tokenUrl, clientId: 'rel-basic', clientAuth: { method: 'client_secret_basic', secret: { $env: 'REL_SECRET' } } },
      jwt: { tokenUrl: as.tokenUrl, clientId: 'rel-jwt', clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid: 'rel-k1', privateKey: { $env: 'REL_KEY' } } },
    },
    source: { type: 'http-listener', config: { port: 0, path: '/in' } },
    destinations: [
      { name: 'a', type: 'http', config: { url: `${api.url}/a`, credential: 'basic' }, retry, circuitBreaker: breaker },
      { name: 'b', type: 'http', config: { url: `${api.url}/b`, credential: 'jwt' }, retry, circuitBreaker: breaker },
    ],
    options: { concurrency: 8 },
  }, { log: collector.log, env: { REL_SECRET: secret, REL_KEY: keyPem } })
})

afterAll(async () => {
  await ch?.close()
  await api?.close()
  await as?.close()
  collector.release()
})

describe('every live token revoked mid-stream', () => {
  it('renews exactly one token per credential; no message in error; nothing lost', async () => {
    const total = 1000
    const acked: string[] = []
    const delivered = () => api.requests.filter((r) => r.status === 200).length
    let revokedAt = -1
    let tokensBefore = 0
    // Half the stream before the revocation, half after: however fast the engine, the second half
    // starts on the revoked tokens, so the revocation is met by requests in flight, not after the fact.
    const half = total / 2
    const sending = inParallel(half, 16, async (i) => {
      acked.push(await ch.post({ n: i, text: 'revocation' }))
    })
    await until(() => delivered() >= 600, 30_000, '600 deliveries')
    tokensBefore = as.requests.length
    const rejectedBefore = api.requests.filter((r) => r.status === 401).length
    as.revokeAll()
    revokedAt = api.requests.length
    await sending
    await inParallel(half, 16, async (i) => {
      acked.push(await ch.post({ n: half + i, text: 'revocation' }))
    })
    const keys = acked.flatMap((id) => [`${id}:a`, `${id}:b`])
    await until(() => { const got = new Set(api.requests.filter((r) => r.status === 200).map((r) => r.headers['idempotency-key'])); return keys.every((k) => got.has(k)) }, 60_000, 'all delivered')
    await ch.handle.whenIdle({ timeoutMs: 10_000 })

    const ok = api.requests.filter((r) => r.status === 200).map((r) => r.headers['idempotency-key']!)
    const { distinct, duplicated } = tally(ok)
    // Requests already received when revokeAll() ran are verified after it: their 401s count too.
    const rejected = api.requests.filter((r) => r.status === 401).length
    const after = as.requests.slice(tokensBefore)
    const byClient = (c: string) => after.filter((r) => r.clientId === c && r.status === 200).length
    const counters = ch.handle.counters()
    expect(tokensBefore).toBe(2) // one per credential before the revocation
    expect(byClient('rel-basic')).toBe(1)
    expect(byClient('rel-jwt')).toBe(1)
    expect(after.length).toBe(2)
    expect(rejectedBefore).toBe(0)
    expect(rejected).toBeGreaterThan(0) // the revocation really hit requests in flight
    expect(counters.errors).toBe(0)
    expect(keys.every((k) => distinct.has(k))).toBe(true)
    expect(duplicated).toBe(0) // a 401 is not a delivery: the resend is the only one
    report({
      scenario: 'tokens revoked mid-stream', injected: `revokeAll() after ${revokedAt} API requests (2 credentials, 2 destinations)`,
      sent: total * 2, delivered: distinct.size, lost: keys.filter((k) => !distinct.has(k)).length, duplicated, inError: counters.errors,
      tokenRequests: after.length, notes: `${rejected} requests answered 401 invalid_token and were resent once; 1 new token per credential`,
    })
  }, 90_000)

  it('leaves no secret, key or token in any log line or error text', () => {
    const leaks = collector.leaks([secret, ...pemLines(keyPem), ...as.secretsSeen()])
    expect(leaks).toEqual([])
  })
})
