import { describe, it, expect } from 'vitest'
import { backoffDelay, CircuitBreaker } from '../../engine/runtime/index.ts'
import { startApi, feedSource, destination, useRuntimeFixture } from './_helpers.ts'

describe('backoffDelay', () => {
  const policy = { initialDelayMs: 100, maxDelayMs: 1000 }
  it.each([
    [1, 1, undefined, 100], [2, 1, undefined, 200], [3, 1, undefined, 400], [5, 1, undefined, 1000], [20, 1, undefined, 1000],
    [3, 0.5, undefined, 200], [3, 0, undefined, 0],
    [1, 1, 5000, 5000], [3, 1, 50, 400], [1, 0, 0, 0],
  ])('attempt %i, random %d, retry-after %s → %i ms', (attempt, r, retryAfter, expected) => {
    expect(backoffDelay(attempt, policy, () => r, retryAfter)).toBe(expected)
  })
})

describe('CircuitBreaker', () => {
  it('opens after the threshold, lets one probe through after the reset, closes on success', async () => {
    let t = 0
    const b = new CircuitBreaker({ failureThreshold: 2, resetAfterMs: 30 }, () => t)
    const signal = new AbortController().signal
    expect(await b.acquire(signal)).toEqual({ probe: false })
    b.failure(false)
    expect(b.state).toBe('closed')
    b.failure(false)
    expect(b.state).toBe('open')
    let got: { probe: boolean } | undefined
    const p = b.acquire(signal).then((r) => (got = r))
    await new Promise((ok) => setTimeout(ok, 5))
    expect(got).toBeUndefined()
    t = 30
    await p
    expect(got).toEqual({ probe: true })
    expect(b.state).toBe('half-open')
    // Others wait for the probe's answer.
    let other: { probe: boolean } | undefined
    const q = b.acquire(signal).then((r) => (other = r))
    await new Promise((ok) => setTimeout(ok, 5))
    expect(other).toBeUndefined()
    b.success()
    await q
    expect(other).toEqual({ probe: false })
    expect(b.openings).toBe(1)
  })

  it('a failed probe opens it again; abort rejects a waiter', async () => {
    let t = 0
    const b = new CircuitBreaker({ failureThreshold: 1, resetAfterMs: 10 }, () => t)
    b.failure(false)
    t = 10
    const ac = new AbortController()
    expect(await b.acquire(ac.signal)).toEqual({ probe: true })
    b.failure(true)
    expect(b.state).toBe('open')
    expect(b.openings).toBe(2)
    const p = b.acquire(ac.signal).catch((e) => e)
    ac.abort(new Error('stopping'))
    expect((await p).message).toBe('stopping')
  })
})

const rt = useRuntimeFixture()

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]!)

describe('retries and outages', () => {
  it('outage: 503s then recovery; backoff spacing, the breaker pauses instead of spending budgets, nothing lost', async () => {
    // The first 6 requests fail: 3 counted attempts (40, 80 ms apart), then the breaker (threshold 3) pauses
    // the destination and probes every 300 ms; the 3 failing probes do not count against maxAttempts 4.
    rt.api.behaviour = ({ n }) => (n <= 6 ? { status: 503, body: 'down for maintenance' } : undefined)
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 4, initialDelayMs: 40, maxDelayMs: 10_000, maxElapsedMs: 60_000 }, circuitBreaker: { failureThreshold: 3, resetAfterMs: 300 } })],
    }, { random: () => 1 })
    const ids: string[] = []
    for (let i = 0; i < 20; i++) ids.push((await src.emit({ i })).id)
    await new Promise((ok) => setTimeout(ok, 250))
    // During the outage: paused, the first message retrying, the rest still queued.
    expect(h.breakers().api!.state).not.toBe('closed')
    expect(h.counters()).toMatchObject({ paused: 1, retrying: 1, queued: 20, delivered: 0 })
    await h.whenIdle({ timeoutMs: 15_000 })

    expect(h.counters()).toMatchObject({ delivered: 20, errors: 0 })
    const firstKey = `${ids[0]}:api`
    const first = rt.api.received.filter((r) => r.key === firstKey).map((r) => r.at)
    expect(first).toHaveLength(7)
    const g = gaps(first)
    // Measured spacing, generous upper bounds (loaded CI machine); lower bounds are the backoff itself.
    const expected = [40, 80, 300, 300, 300, 300]
    g.forEach((gap, i) => {
      expect(gap).toBeGreaterThanOrEqual(expected[i]! - 2)
      expect(gap).toBeLessThan(expected[i]! + 400)
    })
    // Order kept through the outage: the successful requests are in arrival order.
    expect(rt.api.received.slice(6).map((r) => (r.body as { i: number }).i)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    // Every message reached the API; the others once each.
    for (const id of ids.slice(1)) expect(rt.api.received.filter((r) => r.key === `${id}:api`)).toHaveLength(1)
    const d = (await rt.store.get(ids[0]!))!
    expect(d.message.status).toBe('delivered')
    expect(d.deliveries[0]).toMatchObject({ status: 'delivered', attempts: 7, responseStatus: 200 })
    expect(d.attempts.slice(0, 6).every((a) => a.outcome === 'retryable' && a.responseStatus === 503 && a.excerpt === 'down for maintenance')).toBe(true)
    expect(h.breakers().api).toEqual({ state: 'closed', openings: 4 })
  })

  it('without a breaker the same outage exhausts the budget: error after maxAttempts', async () => {
    rt.api.behaviour = ({ n }) => (n <= 6 ? { status: 503, body: 'down' } : undefined)
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 4, initialDelayMs: 10, maxDelayMs: 100, maxElapsedMs: 60_000 } })],
    }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await h.whenIdle()
    const d = (await rt.store.get(id))!
    expect(d.message.status).toBe('error')
    expect(d.message.error).toBe(`api: gave up after 4 attempts: ERR_HTTP_STATUS: POST ${rt.api.url} answered 503`)
    expect(d.deliveries[0]).toMatchObject({ status: 'error', attempts: 4, responseStatus: 503, responseExcerpt: 'down' })
  })

  it('honours Retry-After over a shorter backoff', async () => {
    rt.api.behaviour = ({ n }) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : undefined)
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] }, { random: () => 0 })
    await src.emit({ i: 0 })
    await h.whenIdle()
    const [gap] = gaps(rt.api.received.map((r) => r.at))
    expect(gap).toBeGreaterThanOrEqual(995)
    expect(gap).toBeLessThan(1800)
  })

  it('gives up when the next attempt would pass maxElapsedMs', async () => {
    rt.api.behaviour = () => ({ status: 500, body: 'boom' })
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 100, initialDelayMs: 80, maxDelayMs: 10_000, maxElapsedMs: 200 } })],
    }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await h.whenIdle()
    const d = (await rt.store.get(id))!
    expect(d.message.status).toBe('error')
    // 80 ms then 160 ms: the third wait (320 ms) would pass 200 ms.
    expect(rt.api.received).toHaveLength(2)
    expect(d.message.error).toMatch(/^api: gave up after \d+ ms: ERR_HTTP_STATUS: POST .* answered 500$/)
  })

  it('a network failure is retryable', async () => {
    const src = feedSource()
    const closed = await startApi()
    const url = closed.url
    await closed.close()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', url, { retry: { maxAttempts: 2, initialDelayMs: 5, maxDelayMs: 10, maxElapsedMs: 60_000 } })],
    })
    const { id } = await src.emit({ i: 0 })
    await h.whenIdle()
    const d = (await rt.store.get(id))!
    expect(d.deliveries[0]).toMatchObject({ status: 'error', attempts: 2 })
    expect(d.message.error).toMatch(/^api: gave up after 2 attempts: ERR_HTTP_NETWORK: POST .* failed: fetch failed$/)
  })
})
