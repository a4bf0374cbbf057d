// With a store shared by a cluster, each channel re-read the cluster's pending count twice (its
// follower every second, and its claim loop's idle poll every pollIntervalMs) and ran a second timer
// for the operator pauses: two timers and three queries a second per channel per engine. One
// follower now reads both, a tick at a time; the idle poll only looks for work (a claim reads the
// shared store). Alone on its store (SQLite), the idle poll still re-reads the queue: that is how
// it finds another process's resubmits.
import { describe, expect, it } from 'vitest'
import type { Leadership, MessageStore } from '../../shared/store/types.ts'
import { destination, feedSource, until, useRuntimeFixture } from './_helpers.ts'

/** Reads of the store counted: pause loads (the operator pauses' state), pending-count refreshes, claims. */
interface Counted { store: MessageStore; loads: number; refreshes: number; claims: number; hold(): void; release(): void }

/** `base` seen as a store shared by a cluster (with a leadership) or not, counting its reads; `hold()` keeps refreshes pending until `release()`. */
function counting(base: MessageStore, shared: boolean): Counted {
  const store: MessageStore = Object.create(base)
  let held: Array<() => void> | undefined
  const c: Counted = {
    store, loads: 0, refreshes: 0, claims: 0,
    hold: () => { held = [] },
    release: () => { const h = held ?? []; held = undefined; for (const f of h) f() },
  }
  if (shared) {
    const leadership: Leadership = { lead: async () => true, resign: async () => {}, leaseMs: 15_000 }
    Object.defineProperty(store, 'leadership', { value: leadership })
  }
  store.getState = (channel, component, key) => {
    if (component === '#operator') c.loads++
    return base.getState(channel, component, key)
  }
  store.refreshPending = async (channel) => {
    c.refreshes++
    if (held) await new Promise<void>((ok) => held!.push(ok))
    return base.refreshPending(channel)
  }
  store.claim = (...a) => {
    c.claims++
    return base.claim(...a)
  }
  return c
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))

describe('a channel\'s periodic reads of the store', () => {
  const rt = useRuntimeFixture()

  it('with a store shared by a cluster, re-reads the pending count once per pause load: the idle poll only looks for work', async () => {
    const c = counting(rt.store, true)
    await rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url)] }, { store: c.store, pollIntervalMs: 50, pauseSyncMs: 50 })
    const [loads, claims] = [c.loads, c.claims]
    await until(() => c.loads - loads >= 10, 5_000, 'ten pause loads')
    // The same tick reads both: as many refreshes as pause loads since start (one may be under way).
    expect(Math.abs(c.refreshes - (c.loads - loads))).toBeLessThanOrEqual(1)
    expect(c.claims - claims).toBeGreaterThanOrEqual(3) // the idle poll still claims
  })

  it('with a store shared by a cluster, reads one tick at a time: a slow read holds the next tick back', async () => {
    const c = counting(rt.store, true)
    c.hold()
    await rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url)] }, { store: c.store, pollIntervalMs: 50, pauseSyncMs: 50 })
    const loads = c.loads
    await until(() => c.refreshes === 1, 5_000, 'the first refresh')
    const claims = c.claims
    await sleep(500)
    expect(c.refreshes).toBe(1)
    expect(c.loads - loads).toBe(1)
    expect(c.claims - claims).toBeGreaterThanOrEqual(3) // the claim loop does not wait for the follower
    c.release()
    await until(() => c.refreshes >= 3 && c.loads - loads >= 3, 5_000, 'ticks after the slow one')
  })

  it('reloads the pauses every pauseSyncMs, and the count every pollIntervalMs', async () => {
    const c = counting(rt.store, true)
    await rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url)] }, { store: c.store, pollIntervalMs: 50, pauseSyncMs: 60_000 })
    const loads = c.loads
    await until(() => c.refreshes >= 5, 5_000, 'five refreshes')
    expect(c.loads).toBe(loads)
  })

  it('stops with the channel: no pause load, no count after stop()', async () => {
    const c = counting(rt.store, true)
    const h = await rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url)] }, { store: c.store, pollIntervalMs: 50, pauseSyncMs: 50 })
    const loads = c.loads
    await until(() => c.loads - loads >= 3, 5_000, 'three ticks')
    await h.stop()
    const [stoppedLoads, stoppedRefreshes] = [c.loads, c.refreshes]
    await sleep(400) // eight ticks' worth
    expect([c.loads, c.refreshes]).toEqual([stoppedLoads, stoppedRefreshes])
  })

  it('alone on its store, re-reads the queue at each idle poll (another process\'s resubmits) and reloads no pauses', async () => {
    const c = counting(rt.store, false)
    await rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url)] }, { store: c.store, pollIntervalMs: 50, pauseSyncMs: 50 })
    const loads = c.loads
    await until(() => c.refreshes >= 5, 5_000, 'five refreshes')
    await sleep(200)
    expect(c.loads).toBe(loads)
  })
})
