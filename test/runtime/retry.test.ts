import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import { errorCodes, HttpStatusError } from '../../shared/errors.ts'
import { defineComponent } from '../../shared/component.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { backoffDelay, CircuitBreaker } from '../../engine/runtime/index.ts'
import { startApi, feedSource, destination, filter, filterRetryStored, settle, settleIo, turns, useFakeClock, useRuntimeFixture } from './_helpers.ts'

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
  beforeEach(() => useFakeClock(0))
  afterEach(() => vi.useRealTimers())

  it('opens after the threshold, lets one probe through after the reset, closes on success', async () => {
    const b = new CircuitBreaker({ failureThreshold: 2, resetAfterMs: 30 }, () => Date.now())
    const signal = new AbortController().signal
    expect(await b.acquire(signal)).toEqual({ probe: false })
    b.failure(false)
    expect(b.state).toBe('closed')
    b.failure(false)
    expect(b.state).toBe('open')
    let got: { probe: boolean } | undefined
    const p = b.acquire(signal).then((r) => (got = r))
    await vi.advanceTimersByTimeAsync(29)
    expect(got).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    await p
    expect(got).toEqual({ probe: true })
    expect(b.state).toBe('half-open')
    // Others wait for the probe's answer, however long it takes.
    let other: { probe: boolean } | undefined
    const q = b.acquire(signal).then((r) => (other = r))
    await vi.advanceTimersByTimeAsync(10_000)
    expect(other).toBeUndefined()
    b.success()
    await q
    expect(other).toEqual({ probe: false })
    expect(b.openings).toBe(1)
  })

  it('a failed probe opens it again; abort rejects a waiter', async () => {
    const b = new CircuitBreaker({ failureThreshold: 1, resetAfterMs: 10 }, () => Date.now())
    b.failure(false)
    await vi.advanceTimersByTimeAsync(10)
    const ac = new AbortController()
    expect(await b.acquire(ac.signal)).toEqual({ probe: true })
    b.failure(true)
    expect(b.state).toBe('open')
    expect(b.openings).toBe(2)
    const p = b.acquire(ac.signal).catch((e) => e)
    ac.abort(new Error('stopping'))
    expect((await p).message).toBe('stopping')
  })

  it('a failure\'s Retry-After keeps it open past resetAfterMs, also one that ends while it is already open', async () => {
    const b = new CircuitBreaker({ failureThreshold: 1, resetAfterMs: 10 }, () => Date.now())
    const signal = new AbortController().signal
    b.failure(false, 50)
    let got: { probe: boolean } | undefined
    const p = b.acquire(signal).then((r) => (got = r))
    await vi.advanceTimersByTimeAsync(40)
    // An attempt that started before the breaker opened fails at 40 ms asking for 30 ms more.
    b.failure(false, 30)
    await vi.advanceTimersByTimeAsync(29)
    expect(got).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    await p
    expect(got).toEqual({ probe: true })
    expect(b.openings).toBe(1)
  })
})

const rt = useRuntimeFixture({ now: () => Date.now() })

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]!)

/**
 * On fake time: after each attempt (its failure recorded in the store, so its wait is scheduled),
 * advances the clock to one millisecond before the expected next attempt and checks none was
 * made, then by one more and waits (bounded by event-loop turns) for exactly that attempt.
 */
async function expectAttemptsAt(id: string, key: string, expectedGaps: number[], made = 1) {
  const sent = () => rt.api.received.filter((r) => r.key === key).length
  const recorded = async () => (await rt.store.get(id))?.attempts.length ?? 0
  for (const gap of expectedGaps) {
    await settleIo(async () => sent() === made && (await recorded()) === made)
    await vi.advanceTimersByTimeAsync(gap - 1)
    await turns()
    expect(sent()).toBe(made)
    await vi.advanceTimersByTimeAsync(1)
    await settleIo(() => sent() === made + 1)
    made++
  }
}

describe('retries and outages (fake clock)', () => {
  beforeEach(() => useFakeClock())
  afterEach(() => vi.useRealTimers())

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
    const firstKey = `${ids[0]}:api`
    await expectAttemptsAt(ids[0]!, firstKey, [40, 80])
    // After the third failure: paused, the first message retrying, the rest still queued.
    await settleIo(async () => (await rt.store.get(ids[0]!))!.attempts.length === 3)
    expect(h.breakers().api).toEqual({ state: 'open', openings: 1 })
    expect(h.counters()).toMatchObject({ paused: 1, retrying: 1, queued: 20, delivered: 0 })
    await expectAttemptsAt(ids[0]!, firstKey, [300, 300, 300, 300], 3)
    await settleIo(() => h.counters().delivered === 20)

    expect(h.counters()).toMatchObject({ delivered: 20, errors: 0 })
    const first = rt.api.received.filter((r) => r.key === firstKey).map((r) => r.at)
    expect(gaps(first)).toEqual([40, 80, 300, 300, 300, 300])
    // Order kept through the outage: the successful requests are in arrival order.
    expect(rt.api.received.slice(6).map((r) => (r.body as { i: number }).i)).toEqual(Array.from({ length: 20 }, (_, i) => i))
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
    await expectAttemptsAt(id, `${id}:api`, [10, 20, 40])
    await settleIo(() => h.counters().errors === 1)
    const d = (await rt.store.get(id))!
    expect(d.message.status).toBe('error')
    expect(d.message.error).toBe(`api: gave up after 4 attempts: ERR_HTTP_STATUS: POST ${rt.api.url} answered 503`)
    expect(d.deliveries[0]).toMatchObject({ status: 'error', attempts: 4, responseStatus: 503, responseExcerpt: 'down' })
    expect(rt.api.received).toHaveLength(4)
  })

  it('honours Retry-After over a shorter backoff', async () => {
    rt.api.behaviour = ({ n }) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : undefined)
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] }, { random: () => 0 })
    const { id } = await src.emit({ i: 0 })
    await expectAttemptsAt(id, `${id}:api`, [1000])
    await settleIo(() => h.counters().delivered === 1)
    expect(gaps(rt.api.received.map((r) => r.at))).toEqual([1000])
  })

  it('a Retry-After longer than resetAfterMs holds the breaker the failure opened: the probe waits for it', async () => {
    // 429 with Retry-After: 5 on the first three requests; the third opens the breaker (reset after 1 s).
    rt.api.behaviour = ({ n }) => (n <= 3 ? { status: 429, headers: { 'retry-after': '5' }, body: 'slow down' } : undefined)
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', rt.api.url, {
        retry: { maxAttempts: 10, initialDelayMs: 100, maxDelayMs: 60_000, maxElapsedMs: 900_000 },
        circuitBreaker: { failureThreshold: 3, resetAfterMs: 1000 },
      })],
    }, { random: () => 0 })
    const { id } = await src.emit({ i: 0 })
    await expectAttemptsAt(id, `${id}:api`, [5000, 5000])
    await settleIo(async () => (await rt.store.get(id))!.attempts.length === 3)
    expect(h.breakers().api).toEqual({ state: 'open', openings: 1 })
    const d = (await rt.store.get(id))!
    expect(d.deliveries[0]!.nextAttemptAt).toBe(d.attempts[2]!.endedAt + 5000)
    // The probe goes when the server asked (the stored schedule), not after resetAfterMs.
    await expectAttemptsAt(id, `${id}:api`, [5000], 3)
    await settleIo(() => h.counters().delivered === 1)
    expect(gaps(rt.api.received.map((r) => r.at))).toEqual([5000, 5000, 5000])
    expect(h.breakers().api).toEqual({ state: 'closed', openings: 1 })
  })

  it('gives up when the next attempt would pass maxElapsedMs', async () => {
    rt.api.behaviour = () => ({ status: 500, body: 'boom' })
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 100, initialDelayMs: 80, maxDelayMs: 10_000, maxElapsedMs: 200 } })],
    }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await expectAttemptsAt(id, `${id}:api`, [80])
    await settleIo(() => h.counters().errors === 1)
    const d = (await rt.store.get(id))!
    expect(d.message.status).toBe('error')
    // 80 ms then 160 ms: the third wait (320 ms) would pass 200 ms.
    expect(rt.api.received).toHaveLength(2)
    expect(d.message.error).toMatch(/^api: gave up after 80 ms: ERR_HTTP_STATUS: POST .* answered 500$/)
  })

  it('a network failure is retryable', async () => {
    const src = feedSource()
    const closed = await startApi()
    const url = closed.url
    await closed.close()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', url, { retry: { maxAttempts: 2, initialDelayMs: 5, maxDelayMs: 10, maxElapsedMs: 60_000 } })],
    }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await settleIo(async () => (await rt.store.get(id))!.attempts.length === 1)
    await vi.advanceTimersByTimeAsync(5)
    await settleIo(() => h.counters().errors === 1)
    const d = (await rt.store.get(id))!
    expect(d.deliveries[0]).toMatchObject({ status: 'error', attempts: 2 })
    expect(d.attempts.map((a) => a.startedAt - d.attempts[0]!.startedAt)).toEqual([0, 5])
    expect(d.message.error).toMatch(/^api: gave up after 2 attempts: ERR_HTTP_NETWORK: POST .* failed: fetch failed$/)
  })

  it('a retryable filter failure backs off holding the message\'s key (the whole channel at concurrency 1); permanent ones go to error at once', async () => {
    const calls: Array<{ i: number; at: number }> = []
    let outage = 2
    const flaky = filter((m) => {
      calls.push({ i: m.body.i, at: Date.now() })
      if (m.body.bad) throw new Error('cannot map this message')
      if (m.body.i === 0 && outage-- > 0) throw new HttpStatusError('lookup API answered 503', 503)
      return m
    })
    const src = feedSource()
    const h = await rt.start({
      source: src.definition, filters: [flaky],
      destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 5, initialDelayMs: 100, maxDelayMs: 10_000, maxElapsedMs: 60_000 } })],
    }, { random: () => 1 })
    const a = await src.emit({ i: 0 })
    const b = await src.emit({ i: 1 })
    const bad = await src.emit({ i: 2, bad: true })
    // First failure: backoff 100 ms (the first destination's policy); the message keeps its claim and its key, so the channel waits, order kept.
    await filterRetryStored(rt.store, a.id, 1)
    expect(calls).toHaveLength(1)
    expect((await rt.store.get(a.id))!.message.status).toBe('in-flight')
    await vi.advanceTimersByTimeAsync(99)
    await turns()
    expect(calls).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1)
    await filterRetryStored(rt.store, a.id, 2)
    // Second failure: 200 ms.
    await vi.advanceTimersByTimeAsync(199)
    await turns()
    expect(calls).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(1)
    await settleIo(() => h.counters().delivered === 2 && h.counters().errors === 1)
    expect(gaps(calls.filter((c) => c.i === 0).map((c) => c.at))).toEqual([100, 200])
    expect(calls.map((c) => c.i)).toEqual([0, 0, 0, 1, 2])
    expect(rt.api.received.map((r) => r.key)).toEqual([`${a.id}:api`, `${b.id}:api`])
    const e = (await rt.store.get(bad.id))!
    expect(e.message).toMatchObject({ status: 'error', error: 'filters/0: cannot map this message' })
  })

  it('one rule for filters and destinations: a plain Error marked retryable: true is retried, an unmarked one is permanent', async () => {
    let lookups = 0
    const marked = filter((m) => {
      if (m.body.i === 0 && lookups++ === 0) throw Object.assign(new Error('lookup timed out'), { retryable: true })
      return m
    })
    let deliveries = 0
    const custom = defineComponent({
      type: 'plain-error-destination', kind: 'destination', description: 'fails with plain errors', configSchema: { type: 'object' },
      create: () => ({
        async deliver(m: { body: unknown }) {
          deliveries++
          if ((m.body as { i: number }).i === 1) throw new Error('this record has no MRN')
          return {}
        },
      }),
    })
    const src = feedSource()
    const h = await rt.start({ source: src.definition, filters: [marked], destinations: [destination('api', rt.api.url, { definition: custom as never, config: {}, retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10, maxElapsedMs: 60_000 } })] }, { random: () => 1 })
    const a = await src.emit({ i: 0 })
    const b = await src.emit({ i: 1 })
    await filterRetryStored(rt.store, a.id, 1)
    await vi.advanceTimersByTimeAsync(10)
    await settleIo(() => h.counters().delivered === 1 && h.counters().errors === 1)
    expect(lookups).toBe(2)
    expect(deliveries).toBe(2)
    expect((await rt.store.get(a.id))!.message.status).toBe('delivered')
    expect((await rt.store.get(b.id))!.message).toMatchObject({ status: 'error', error: 'api: this record has no MRN' })
  })

  it('a filter that keeps failing retryably goes to error after maxAttempts', async () => {
    let n = 0
    const down = filter(() => { n++; throw new errorCodes.ERR_HTTP_NETWORK('lookup API down') })
    const src = feedSource()
    const h = await rt.start({
      source: src.definition, filters: [down],
      destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10_000, maxElapsedMs: 60_000 } })],
    }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await filterRetryStored(rt.store, id, 1)
    await vi.advanceTimersByTimeAsync(10)
    await filterRetryStored(rt.store, id, 2)
    await vi.advanceTimersByTimeAsync(20)
    await settle(() => h.counters().errors === 1)
    expect(n).toBe(3)
    expect((await rt.store.get(id))!.message).toMatchObject({ status: 'error', error: 'filters/0: gave up after 3 attempts: ERR_HTTP_NETWORK: lookup API down' })
  })

  it('a filter that keeps failing retryably goes to error once the next wait would pass maxElapsedMs, as a destination does', async () => {
    const calls: number[] = []
    const down = filter(() => { calls.push(Date.now()); throw new errorCodes.ERR_HTTP_NETWORK('lookup API down') })
    const src = feedSource()
    const h = await rt.start({
      source: src.definition, filters: [down],
      destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 100, initialDelayMs: 80, maxDelayMs: 10_000, maxElapsedMs: 200 } })],
    }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await filterRetryStored(rt.store, id, 1)
    await vi.advanceTimersByTimeAsync(80)
    // 80 ms then 160 ms: the second wait would pass 200 ms, so the second failure is the last.
    await settleIo(() => h.counters().errors === 1)
    expect(gaps(calls)).toEqual([80])
    expect((await rt.store.get(id))!.message).toMatchObject({ status: 'error', error: 'filters/0: gave up after 80 ms: ERR_HTTP_NETWORK: lookup API down' })
    expect(rt.api.received).toHaveLength(0)
  })

  it('a retry scheduled before a restart waits its turn after it (persisted nextAttemptAt)', async () => {
    rt.api.behaviour = ({ n }) => (n === 1 ? { status: 503, body: 'busy' } : undefined)
    const src = feedSource()
    const policy = { retry: { maxAttempts: 5, initialDelayMs: 60_000, maxDelayMs: 600_000, maxElapsedMs: 3_600_000 } }
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url, policy)] }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await settleIo(async () => (await rt.store.get(id))!.attempts.length === 1)
    const failedAt = Date.now()
    expect((await rt.store.get(id))!.deliveries[0]).toMatchObject({ status: 'retrying', nextAttemptAt: failedAt + 60_000 })
    await vi.advanceTimersByTimeAsync(10_000)
    await h.stop()
    await rt.store.close()
    // Restart: a new store on the same directory (its clock is the fake one) and a new channel.
    rt.store = openSqliteStore({ dataDir: rt.dir.path, now: () => Date.now() })
    expect((await rt.store.get(id))!.deliveries[0]).toMatchObject({ status: 'queued', nextAttemptAt: failedAt + 60_000 })
    const src2 = feedSource()
    const h2 = await rt.start({ source: src2.definition, destinations: [destination('api', rt.api.url, policy)] }, { random: () => 1 })
    await settle(() => h2.counters().retrying === 1)
    await turns()
    expect(rt.api.received).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(49_999)
    await turns()
    expect(rt.api.received).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1)
    await settleIo(() => h2.counters().delivered === 1)
    expect(rt.api.received.map((r) => r.at - failedAt)).toEqual([0, 60_000])
    expect((await rt.store.get(id))!.deliveries[0]).toMatchObject({ status: 'delivered', attempts: 2 })
  })

  it('after a restart the carried-over retry holds only its key, not a place among concurrency (orderBy, concurrency 1)', async () => {
    rt.api.behaviour = ({ n }) => (n === 1 ? { status: 503, body: 'busy' } : undefined)
    const policy = { retry: { maxAttempts: 5, initialDelayMs: 60_000, maxDelayMs: 600_000, maxElapsedMs: 3_600_000 } }
    const options = { orderBy: 'k', concurrency: 1 }
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url, policy)], options }, { random: () => 1 })
    const a = await src.emit({ k: 'a' })
    await settleIo(async () => (await rt.store.get(a.id))!.attempts.length === 1)
    const failedAt = Date.now()
    await h.stop()
    await rt.store.close()
    rt.store = openSqliteStore({ dataDir: rt.dir.path, now: () => Date.now() })
    const src2 = feedSource()
    const h2 = await rt.start({ source: src2.definition, destinations: [destination('api', rt.api.url, policy)], options }, { random: () => 1 })
    await settleIo(() => h2.counters().retrying === 1)
    // Fake time stands still, so 'a' is not due for 60 s; 'b' (another key) goes meanwhile, as before a restart.
    await src2.emit({ k: 'b' })
    await settleIo(() => h2.counters().delivered === 1)
    await vi.advanceTimersByTimeAsync(60_000)
    await settleIo(() => h2.counters().delivered === 2)
    expect(rt.api.received.map((r) => [(r.body as { k: string }).k, r.at - failedAt])).toEqual([['a', 0], ['b', 0], ['a', 60_000]])
  })
})

describe('retry budgets across restarts and resubmissions (fake clock)', () => {
  beforeEach(() => useFakeClock())
  afterEach(() => vi.useRealTimers())

  /** The destination's policies, and its component when not the HTTP POST of the fixture. */
  type Policy = NonNullable<Parameters<typeof destination>[2]>
  const start = (policy: Policy) => rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url, policy)] }, { random: () => 1 })
  /** Stops the channel and its store, as a crash or a restart does, and starts both again on the same directory `downMs` later. */
  const restart = async (h: Awaited<ReturnType<typeof start>>, policy: Policy, downMs = 0) => {
    await h.stop()
    await rt.store.close()
    await vi.advanceTimersByTimeAsync(downMs)
    rt.store = openSqliteStore({ dataDir: rt.dir.path, now: () => Date.now() })
    return start(policy)
  }

  it('attempts made before each restart count against maxAttempts: a crash loop does not retry a message for ever', async () => {
    rt.api.behaviour = () => ({ status: 503, body: 'down' })
    const policy = { retry: { maxAttempts: 3, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 3_600_000 } }
    const src = feedSource()
    let h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url, policy)] }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    // One attempt per run, then a restart: the budget of 3 is spent in the third run.
    for (let run = 1; run <= 5; run++) {
      await settleIo(async () => { const d = (await rt.store.get(id))!; return d.message.status === 'error' || d.attempts.length === run })
      if ((await rt.store.get(id))!.message.status === 'error') break
      h = await restart(h, policy)
      await vi.advanceTimersByTimeAsync(1000)
    }
    const d = (await rt.store.get(id))!
    expect(d.message).toMatchObject({ status: 'error', error: `api: gave up after 3 attempts: ERR_HTTP_STATUS: POST ${rt.api.url} answered 503` })
    expect(d.deliveries[0]).toMatchObject({ status: 'error', attempts: 3 })
    expect(rt.api.received).toHaveLength(3)
  })

  /** A destination answering each call as `script` says (then 200): a broken credential, a 503, or 200. */
  const scripted = (script: Array<'credential' | 503 | 200>) => {
    let calls = 0
    const definition = defineComponent({
      type: 'scripted-destination', kind: 'destination', description: 'answers as scripted', configSchema: { type: 'object' },
      create: () => ({
        async deliver() {
          const answer = script[calls++] ?? 200
          if (answer === 'credential') throw new errorCodes.ERR_OAUTH_FAIL_FAST('the credential is broken')
          if (answer === 503) throw new HttpStatusError('answered 503', 503)
          return { status: 200 }
        },
      }),
    })
    return { definition: definition as never, config: {}, calls: () => calls }
  }

  it.each([
    { spent: 'maxAttempts', uncharged: 'failures of the credential', script: ['credential', 'credential', 'credential', 'credential', 503] as const,
      policy: { retry: { maxAttempts: 2, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 3_600_000 } } },
    { spent: 'maxElapsedMs', uncharged: 'failures of the credential', script: ['credential', 'credential', 'credential', 'credential', 503] as const,
      policy: { retry: { maxAttempts: 100, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 1500 } } },
    // The first 503 is charged and opens the breaker; the three probes after it are not.
    { spent: 'maxAttempts', uncharged: 'a breaker\'s probes', script: [503, 503, 503, 503, 503] as const,
      policy: { retry: { maxAttempts: 3, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 3_600_000 }, circuitBreaker: { failureThreshold: 1, resetAfterMs: 1000 } } },
  ])('$uncharged before a restart are not charged to $spent after it: the next ordinary failure is retried, and the message delivered', async ({ script, policy }) => {
    const dest = scripted([...script])
    const withDest = { ...policy, definition: dest.definition, config: dest.config }
    const src = feedSource()
    let h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url, withDest)] }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    // A failure a second, the engine restarted after the fourth: the fifth (503) is the first of the new run.
    for (let made = 1; made <= script.length; made++) {
      await settleIo(async () => { const d = (await rt.store.get(id))!; return d.message.status === 'error' || d.attempts.length === made })
      if (made === 4) h = await restart(h, withDest, 600_000)
      await vi.advanceTimersByTimeAsync(1000)
    }
    await settleIo(async () => ['delivered', 'error'].includes((await rt.store.get(id))!.message.status))
    const d = (await rt.store.get(id))!
    expect([d.message.status, d.message.error]).toEqual(['delivered', undefined])
    expect(dest.calls()).toBe(script.length + 1)
    expect(d.attempts.map((a) => a.outcome)).toEqual([...script.map(() => 'retryable'), 'delivered'])
  })

  it('time spent retrying before a restart counts against maxElapsedMs; the time the engine was down does not', async () => {
    rt.api.behaviour = () => ({ status: 503, body: 'down' })
    // A retry every second, for at most 5 s: 6 attempts (0 … 5 s) with or without a restart.
    const policy = { retry: { maxAttempts: 100, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 5000 } }
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url, policy)] }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await expectAttemptsAt(id, `${id}:api`, [1000, 1000])
    await settleIo(async () => (await rt.store.get(id))!.attempts.length === 3)
    // Ten minutes down, then up again: the retry due at 3 s goes at once, two more a second apart, then it gives up.
    await restart(h, policy, 600_000)
    for (let made = 4; made <= 10; made++) {
      await settleIo(async () => { const d = (await rt.store.get(id))!; return d.message.status === 'error' || d.attempts.length === made })
      if ((await rt.store.get(id))!.message.status === 'error') break
      await vi.advanceTimersByTimeAsync(1000)
    }
    const d = (await rt.store.get(id))!
    expect(d.message).toMatchObject({ status: 'error', error: `api: gave up after 5000 ms: ERR_HTTP_STATUS: POST ${rt.api.url} answered 503` })
    expect(rt.api.received).toHaveLength(6)
  })

  it('a resubmitted message gets a whole budget again, also one that went to error by spending it', async () => {
    rt.api.behaviour = ({ n }) => (n <= 3 ? { status: 503, body: 'down' } : undefined)
    const policy = { retry: { maxAttempts: 2, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 3_600_000 } }
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url, policy)] }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await expectAttemptsAt(id, `${id}:api`, [1000])
    await settleIo(() => h.counters().errors === 1)
    expect(await rt.store.resubmit({ ids: [id] })).toEqual([id])
    h.wake()
    // The third request fails too: a second attempt of the new budget follows a second later, and gets through.
    await settleIo(async () => (await rt.store.get(id))!.attempts.length === 3)
    await vi.advanceTimersByTimeAsync(1000)
    await settleIo(() => h.counters().delivered === 1)
    expect((await rt.store.get(id))!.message.status).toBe('delivered')
    expect(rt.api.received).toHaveLength(4)
  })
})
