import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { inParallel, report, server, startTestChannel, tally, textCollector, until } from './_helpers.ts'

const collector = textCollector()
let as: AuthorizationServer
const secret = randomBytes(24).toString('base64url')

beforeAll(async () => {
  collector.capture()
  as = await startAuthorizationServer({ tokenLifetimeSec: 3600 })
  as.registerClient({ clientId: 'pacing', authMethod: 'client_secret_post', secret })
})
afterAll(async () => {
  await as?.close()
  collector.release()
})

const credentials = () => ({ api: { tokenUrl: as.tokenUrl, clientId: 'pacing', clientAuth: { method: 'client_secret_post', secret: { $env: 'PACING_SECRET' } } } })
const env = () => ({ PACING_SECRET: secret })

interface Hit { key: string; at: number; status: number; retryAfterMs?: number }

describe('an API that answers 429 with Retry-After', () => {
  it('waits at least Retry-After before the next attempt of that message; all delivered', async () => {
    const hits: Hit[] = []
    const seen = new Map<string, number>()
    // Every message's first attempt is refused with Retry-After: 1 (s); the second succeeds.
    const api = await server((req, _body, res) => {
      const key = String(req.headers['idempotency-key'])
      const n = (seen.get(key) ?? 0) + 1
      seen.set(key, n)
      if (n === 1) {
        hits.push({ key, at: Date.now(), status: 429, retryAfterMs: 1000 })
        return void res.writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' }).end('{"error":"rate limited"}')
      }
      hits.push({ key, at: Date.now(), status: 200 })
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
    const ch = await startTestChannel({
      name: 'rate-limited',
      credentials: credentials(),
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'api', type: 'http', config: { url: `${api.url}/in`, credential: 'api' }, retry: { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 100 }, circuitBreaker: { failureThreshold: 1000, resetAfterMs: 100 } }],
      options: { concurrency: 8 },
    }, { log: collector.log, env: env() })
    try {
      const total = 24
      const ids: string[] = []
      await inParallel(total, 8, async (i) => { ids.push(await ch.post({ n: i })) })
      const keys = ids.map((id) => `${id}:api`)
      await until(() => keys.every((k) => hits.some((h) => h.key === k && h.status === 200)), 30_000, 'all delivered')
      await ch.handle.whenIdle()
      const gaps = keys.map((k) => {
        const [first, second] = hits.filter((h) => h.key === k)
        return second!.at - first!.at
      })
      const { distinct, duplicated } = tally(hits.filter((h) => h.status === 200).map((h) => h.key))
      // The delay is the larger of the jittered backoff and Retry-After (1000 ms); 20 ms for timer granularity.
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(980)
      expect(ch.handle.counters().errors).toBe(0)
      expect(distinct.size).toBe(total)
      report({
        scenario: '429 with Retry-After', injected: 'every first attempt answered 429, Retry-After: 1',
        sent: total, delivered: distinct.size, lost: total - distinct.size, duplicated, inError: ch.handle.counters().errors,
        notes: `gap between the 429 and the retry: min ${Math.min(...gaps)} ms, max ${Math.max(...gaps)} ms (Retry-After 1000 ms)`,
      })
    } finally {
      await ch.close()
      await api.close()
    }
  }, 60_000)
})

describe('a slow API (attempts time out)', () => {
  it('abandons each attempt at timeoutMs, backs off, and delivers everything', async () => {
    const arrivals: Array<{ key: string; at: number; slow: boolean }> = []
    const seen = new Map<string, number>()
    const timeoutMs = 300
    // Every third message's first two attempts take 1.5 s (past the 300 ms timeout).
    const api = await server(async (req, body, res) => {
      const key = String(req.headers['idempotency-key'])
      const n = (seen.get(key) ?? 0) + 1
      seen.set(key, n)
      const slow = (JSON.parse(body) as { n: number }).n % 3 === 0 && n <= 2
      arrivals.push({ key, at: Date.now(), slow })
      if (slow) await new Promise((ok) => setTimeout(ok, 1500))
      if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
    const ch = await startTestChannel({
      name: 'slow-api',
      credentials: credentials(),
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'api', type: 'http', config: { url: `${api.url}/in`, credential: 'api', timeoutMs }, retry: { maxAttempts: 6, initialDelayMs: 50, maxDelayMs: 400 }, circuitBreaker: { failureThreshold: 1000, resetAfterMs: 100 } }],
      options: { concurrency: 8 },
    }, { log: collector.log, env: env() })
    try {
      const total = 60
      const ids: string[] = []
      await inParallel(total, 8, async (i) => { ids.push(await ch.post({ n: i })) })
      await ch.handle.whenIdle({ timeoutMs: 30_000 })
      const keys = ids.map((id) => `${id}:api`)
      const okKeys = new Set(arrivals.filter((a) => !a.slow).map((a) => a.key))
      // Attempt history from the message log: each timed-out attempt lasted about timeoutMs.
      const timedOut: number[] = []
      for (const id of ids) {
        const d = await ch.store.get(id)
        for (const a of d!.attempts) if (a.outcome === 'retryable') timedOut.push(a.endedAt - a.startedAt)
      }
      const counters = ch.handle.counters()
      const { duplicated } = tally(arrivals.map((a) => a.key))
      expect(counters.errors).toBe(0)
      expect(keys.every((k) => okKeys.has(k))).toBe(true)
      expect(timedOut.length).toBe(2 * Math.ceil(total / 3))
      expect(Math.min(...timedOut)).toBeGreaterThanOrEqual(timeoutMs - 5)
      expect(Math.max(...timedOut)).toBeLessThan(timeoutMs + 1000)
      const errors = (await Promise.all(ids.map((id) => ch.store.get(id)))).flatMap((d) => d!.attempts.map((a) => a.error ?? '')).filter(Boolean)
      expect(errors.every((e) => /ERR_HTTP_TIMEOUT: POST http:\/\/127\.0\.0\.1:\d+\/in timed out after 300 ms/.test(e))).toBe(true)
      report({
        scenario: 'slow API (timeouts)', injected: `1 message in 3: first 2 attempts answered after 1.5 s (timeoutMs ${timeoutMs})`,
        sent: total, delivered: keys.filter((k) => okKeys.has(k)).length, lost: keys.filter((k) => !okKeys.has(k)).length,
        duplicated, inError: counters.errors,
        notes: `${timedOut.length} attempts abandoned after ${Math.min(...timedOut)}–${Math.max(...timedOut)} ms; duplicates are the abandoned attempts the API still received (same Idempotency-Key)`,
      })
    } finally {
      await ch.close()
      await api.close()
    }
  }, 60_000)

  it('leaves no secret or token in any log line or error text', () => {
    expect(collector.leaks([secret, ...as.secretsSeen()])).toEqual([])
  })
})
