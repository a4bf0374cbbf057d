import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { inParallel, server, startTestChannel, tally, textCollector, until, type TestChannel } from '../reliability/_helpers.ts'

// A failure of the credential is an outage of the destination, not a defect of the message: the
// messages stay queued, the breaker opens, token requests stay bounded, and once the credential
// works again every message is delivered once, without a resubmission.

const collector = textCollector()
const secret = randomBytes(24).toString('base64url')
let as: AuthorizationServer

beforeAll(async () => {
  collector.capture()
  as = await startAuthorizationServer({ tokenLifetimeSec: 3600 })
})
afterAll(async () => {
  await as?.close()
  collector.release()
})

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))

/** An API that checks each token with the authorization server; while `rejecting`, it answers 401 invalid_token to every request. */
async function startApi() {
  const delivered: string[] = []
  let calls = 0
  const api = {
    delivered,
    rejecting: false,
    get calls() { return calls },
    ...(await server(async (req, _body, res) => {
      calls++
      let ok = !api.rejecting
      if (ok) ok = await as.verifyAccessToken(req.headers.authorization).then(() => true, () => false)
      if (!ok) return void res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end('{"error":"invalid_token"}')
      delivered.push(String(req.headers['idempotency-key']))
      res.writeHead(200).end('{}')
    })),
  }
  return api
}

const POLICIES = { retry: { maxAttempts: 5, initialDelayMs: 20, maxDelayMs: 100 }, circuitBreaker: { failureThreshold: 3, resetAfterMs: 150 } }

function channel(name: string, clientId: string, apiUrl: string, failFastMs: number, policies: Record<string, unknown> = POLICIES): Promise<TestChannel> {
  return startTestChannel({
    name,
    credentials: { api: { tokenUrl: as.tokenUrl, clientId, failFastMs, clientAuth: { method: 'client_secret_basic', secret: { $env: 'OUTAGE_SECRET' } } } },
    source: { type: 'http-listener', config: { port: 0, path: '/in' } },
    destinations: [{ name: 'api', type: 'http', config: { url: `${apiUrl}/in`, credential: 'api' }, ...policies }],
    options: { concurrency: 8 },
  }, { log: collector.log, env: { OUTAGE_SECRET: secret } })
}

const tokenRequests = (clientId: string) => as.requests.filter((r) => r.clientId === clientId)

describe('a credential the token endpoint refuses (invalid_client)', () => {
  it('keeps the messages queued with the breaker open, bounds token requests by failFastMs, and delivers each once after the server accepts the secret', async () => {
    as.registerClient({ clientId: 'outage-secret', authMethod: 'client_secret_basic', secret: randomBytes(24).toString('base64url') })
    const api = await startApi()
    const ch = await channel('outage-secret', 'outage-secret', api.url, 400)
    try {
      const ids: string[] = []
      const t0 = Date.now()
      await inParallel(12, 4, async (i) => { ids.push(await ch.post({ n: i })) })
      await until(() => (ch.handle.breakers().api?.openings ?? 0) >= 1, 5000, 'breaker open')
      await sleep(1200)
      const elapsed = Date.now() - t0
      const counters = ch.handle.counters()
      expect(counters.errors).toBe(0)
      expect(counters.delivered).toBe(0)
      expect(counters.queued).toBe(12)
      expect(api.calls).toBe(0)
      // One request per fail-fast period (a refusal is not retried within a fetch), plus the first.
      expect(tokenRequests('outage-secret').length).toBeLessThanOrEqual(Math.ceil(elapsed / 400) + 1)
      expect(ch.handle.breakers().api!.state).not.toBe('closed')

      as.registerClient({ clientId: 'outage-secret', authMethod: 'client_secret_basic', secret })
      const keys = ids.map((id) => `${id}:api`)
      await until(() => keys.every((k) => api.delivered.includes(k)), 10_000, 'all delivered after the secret works')
      await ch.handle.whenIdle({ timeoutMs: 5000 })
      const { distinct, duplicated } = tally(api.delivered)
      expect(distinct.size).toBe(12)
      expect(duplicated).toBe(0)
      expect(ch.handle.counters().errors).toBe(0)
      expect(ch.handle.breakers().api!.state).toBe('closed')
    } finally {
      await ch.close()
      await api.close()
    }
  }, 30_000)
})

describe('a credential failure spends no retry budget', () => {
  it('keeps a message retrying past maxAttempts when maxAttempts is below the breaker\'s threshold, and delivers it once the secret works', async () => {
    as.registerClient({ clientId: 'outage-budget', authMethod: 'client_secret_basic', secret: randomBytes(24).toString('base64url') })
    const api = await startApi()
    // Two attempts allowed, the breaker opening only after five failures: every attempt meets the broken credential.
    const ch = await channel('outage-budget', 'outage-budget', api.url, 50, { retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 40, maxElapsedMs: 300 }, circuitBreaker: { failureThreshold: 5, resetAfterMs: 100 } })
    try {
      const id = await ch.post({ n: 1 })
      const attempts = async () => (await ch.store.get(id))?.attempts?.length ?? 0
      await until(async () => (await attempts()) >= 6, 10_000, 'six attempts')
      // Past maxAttempts (2) and maxElapsedMs (300 ms): still waiting for the credential, not in error.
      await sleep(400)
      const m = await ch.store.get(id)
      expect(m?.message.status).toBe('retrying')
      expect(m?.attempts.every((a) => a.outcome === 'retryable')).toBe(true)
      expect(ch.handle.counters().errors).toBe(0)
      expect(api.calls).toBe(0)

      as.registerClient({ clientId: 'outage-budget', authMethod: 'client_secret_basic', secret })
      await until(() => api.delivered.includes(`${id}:api`), 10_000, 'delivered after the secret works')
      await ch.handle.whenIdle({ timeoutMs: 5000 })
      expect((await ch.store.get(id))?.message.status).toBe('delivered')
    } finally {
      await ch.close()
      await api.close()
    }
  }, 30_000)
})

describe('an API that answers 401 to every token, renewed ones too', () => {
  it('renews once, keeps the messages queued with the breaker open, and delivers each once when the API accepts again', async () => {
    as.registerClient({ clientId: 'outage-401', authMethod: 'client_secret_basic', secret })
    const api = await startApi()
    const ch = await channel('outage-401', 'outage-401', api.url, 60_000)
    try {
      const first = await ch.post({ n: -1 })
      await until(() => api.delivered.includes(`${first}:api`), 5000, 'first delivered')
      expect(tokenRequests('outage-401').length).toBe(1)
      await ch.handle.pause('api')
      const ids: string[] = []
      await inParallel(20, 4, async (i) => { ids.push(await ch.post({ n: i })) })
      api.rejecting = true
      const callsBefore = api.calls
      const resumed = Date.now()
      await ch.handle.resume('api')
      await until(() => (ch.handle.breakers().api?.openings ?? 0) >= 1, 5000, 'breaker open')
      await sleep(1000)
      const counters = ch.handle.counters()
      expect(counters.errors).toBe(0)
      expect(counters.queued).toBe(20)
      // Exactly one renewal: once the renewed token is refused too, no 401 fetches another.
      expect(tokenRequests('outage-401').length).toBe(2)
      // At most two calls (the token, then its renewal) for each of the 8 attempts under way when the
      // breaker opened, then one probe per resetAfterMs.
      expect(api.calls - callsBefore).toBeLessThanOrEqual(2 * 8 + Math.ceil((Date.now() - resumed) / 150) + 1)

      api.rejecting = false
      const keys = ids.map((id) => `${id}:api`)
      await until(() => keys.every((k) => api.delivered.includes(k)), 10_000, 'all delivered after the API accepts')
      await ch.handle.whenIdle({ timeoutMs: 5000 })
      const { duplicated } = tally(api.delivered)
      expect(duplicated).toBe(0)
      expect(ch.handle.counters().errors).toBe(0)
      expect(tokenRequests('outage-401').length).toBe(2)
    } finally {
      await ch.close()
      await api.close()
    }
  }, 30_000)

  it('a single revocation still renews exactly once, with nothing in error', async () => {
    as.registerClient({ clientId: 'outage-revoke', authMethod: 'client_secret_basic', secret })
    const api = await startApi()
    const ch = await channel('outage-revoke', 'outage-revoke', api.url, 60_000)
    try {
      const ids: string[] = []
      ids.push(await ch.post({ n: -1 }))
      await until(() => api.delivered.length === 1, 5000, 'first delivered')
      as.revokeAll()
      await inParallel(30, 8, async (i) => { ids.push(await ch.post({ n: i })) })
      await until(() => ids.every((id) => api.delivered.includes(`${id}:api`)), 10_000, 'all delivered')
      expect(tokenRequests('outage-revoke').filter((r) => r.status === 200).length).toBe(2)
      expect(ch.handle.counters().errors).toBe(0)
      // The renewal is in the history of every message whose request met the 401: one delivered
      // attempt with the note; the message delivered before the revocation has none.
      const noted = async (id: string) => (await ch.store.get(id))!.attempts.filter((a) => a.outcome === 'delivered' && a.error !== undefined)
      expect(await noted(ids[0]!)).toEqual([])
      const notes = (await Promise.all(ids.slice(1).map(noted))).flat()
      expect(notes.length).toBeGreaterThanOrEqual(1)
      for (const a of notes) expect([a.attempt, a.responseStatus, a.error]).toEqual([1, 200, 'access token rejected (401 invalid_token); sent again with a renewed one'])
    } finally {
      await ch.close()
      await api.close()
    }
  }, 30_000)

  it('leaves no secret or token in any log line or error text', () => {
    expect(collector.leaks([secret, ...as.secretsSeen()])).toEqual([])
  })
})
