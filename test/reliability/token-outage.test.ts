import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { inParallel, report, server, startTestChannel, tally, textCollector, until } from './_helpers.ts'

/**
 * The token endpoint is down for 30 s of simulated time. The authorization server, the outage
 * switch and the channel's token providers share a clock running 10× real time
 * (`sim = t0 + (Date.now() - t0) × 10`, injected as their `now`), so the outage lasts 3 s of
 * real time. Backoff sleeps are real timers: the bound on token requests is stated in them.
 */
const SPEED = 10
const OUTAGE_SIM_MS = 30_000
const collector = textCollector()
const secret = randomBytes(24).toString('base64url')
let as: AuthorizationServer
let t0 = Date.now()
const sim = () => t0 + (Date.now() - t0) * SPEED

beforeAll(async () => {
  collector.capture()
  as = await startAuthorizationServer({ now: sim, tokenLifetimeSec: 3600 })
  as.registerClient({ clientId: 'outage', authMethod: 'client_secret_basic', secret })
})
afterAll(async () => {
  await as?.close()
  collector.release()
})

describe('the token endpoint down for 30 s of simulated time, under load', () => {
  it('messages wait, token requests stay bounded by the backoff, all are delivered after', async () => {
    let outageEnd = 0
    const tokenHits: Array<{ sim: number; real: number; status: number }> = []
    // The token endpoint as the channel sees it: 503 temporarily_unavailable during the outage, else the real server.
    const endpoint = await server(async (req, body, res) => {
      if (sim() < outageEnd) {
        tokenHits.push({ sim: sim(), real: Date.now(), status: 503 })
        return void res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"temporarily_unavailable"}')
      }
      const r = await request(as.tokenUrl, { method: 'POST', headers: { authorization: String(req.headers.authorization), 'content-type': String(req.headers['content-type']) }, body })
      tokenHits.push({ sim: sim(), real: Date.now(), status: r.statusCode })
      res.writeHead(r.statusCode, { 'content-type': 'application/json', date: String(r.headers.date) }).end(await r.body.text())
    })
    const delivered: string[] = []
    const api = await server(async (req, _body, res) => {
      try {
        await as.verifyAccessToken(req.headers.authorization)
      } catch {
        return void res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end()
      }
      delivered.push(String(req.headers['idempotency-key']))
      res.writeHead(200).end('{}')
    })
    const ch = await startTestChannel({
      name: 'token-outage',
      credentials: { api: { tokenUrl: `${endpoint.url}/token`, clientId: 'outage', clientAuth: { method: 'client_secret_basic', secret: { $env: 'OUTAGE_SECRET' } } } },
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'api', type: 'http', config: { url: `${api.url}/in`, credential: 'api' }, retry: { maxAttempts: 20, initialDelayMs: 100, maxDelayMs: 1000 }, circuitBreaker: { failureThreshold: 5, resetAfterMs: 500 } }],
      options: { concurrency: 16 },
    }, { log: collector.log, env: { OUTAGE_SECRET: secret }, now: sim })
    try {
      t0 = Date.now()
      outageEnd = sim() + OUTAGE_SIM_MS
      const total = 400
      const ids: string[] = []
      await inParallel(total, 16, async (i) => { ids.push(await ch.post({ n: i })) })
      // During the outage: nothing delivered, nothing in error, the messages wait.
      await until(() => sim() >= outageEnd - 2000, 10_000)
      const during = ch.handle.counters()
      expect(delivered.length).toBe(0)
      expect(during.errors).toBe(0)
      expect(during.queued).toBe(total)
      const keys = ids.map((id) => `${id}:api`)
      await until(() => { const got = new Set(delivered); return keys.every((k) => got.has(k)) }, 30_000, 'all delivered after the outage')
      await ch.handle.whenIdle()

      const failed = tokenHits.filter((h) => h.status === 503)
      const succeeded = tokenHits.filter((h) => h.status === 200)
      const outageRealMs = OUTAGE_SIM_MS / SPEED
      // One fetch in flight for all 16 workers; within it 4 attempts spaced by ≥ 125, 250, 500 ms
      // (250 ms × 2^k, jittered 50–100%), so a fetch cycle takes ≥ 875 ms of real time.
      const bound = 4 * (Math.ceil(outageRealMs / 875) + 1)
      const gaps = failed.slice(1).map((h, i) => h.real - failed[i]!.real)
      expect(failed.length).toBeGreaterThanOrEqual(2)
      expect(failed.length).toBeLessThanOrEqual(bound)
      expect(succeeded.length).toBe(1)
      expect(ch.handle.counters().errors).toBe(0)
      const { distinct, duplicated } = tally(delivered)
      expect(duplicated).toBe(0)
      report({
        scenario: 'token endpoint down 30 s (simulated)', injected: `503 temporarily_unavailable for 30 s of simulated time (${outageRealMs} ms real at ×${SPEED}), 400 messages queued, 16 workers`,
        sent: total, delivered: distinct.size, lost: keys.filter((k) => !distinct.has(k)).length, duplicated, inError: ch.handle.counters().errors,
        tokenRequests: tokenHits.length,
        notes: `${failed.length} token requests during the outage (bound ${bound}, smallest gap ${Math.min(...gaps)} ms), then 1 token`,
      })
    } finally {
      await ch.close()
      await api.close()
      await endpoint.close()
    }
  }, 60_000)

  it('leaves no secret or token in any log line or error text', () => {
    expect(collector.leaks([secret, ...as.secretsSeen()])).toEqual([])
  })
})
