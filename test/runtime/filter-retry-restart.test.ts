import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { errorCodes } from '../../shared/errors.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { feedSource, destination, filter, filterRetryStored, settleIo, turns, useFakeClock, useRuntimeFixture } from './_helpers.ts'

const rt = useRuntimeFixture({ now: () => Date.now() })

describe('a filter\'s retries across a restart or a crash (fake clock)', () => {
  beforeEach(() => useFakeClock())
  afterEach(() => vi.useRealTimers())

  /** A filter whose lookup is down: every call fails retryably; `calls` holds when each was made. */
  const lookupDown = () => {
    const calls: number[] = []
    const definition = filter(() => {
      calls.push(Date.now())
      throw new errorCodes.ERR_HTTP_NETWORK('lookup API down')
    })
    return { definition, calls }
  }

  type Policy = { maxAttempts: number; initialDelayMs: number; maxDelayMs: number; maxElapsedMs: number }
  /**
   * Starts a channel whose filter's lookup is down (a retry a second under `retry`) and sends it a
   * message; its first `failures` attempts fail, a second apart (the retry after the last stored).
   */
  const begin = async (retry: Policy, failures: number) => {
    const f = lookupDown()
    const src = feedSource()
    const start = () => rt.start({ source: src.definition, filters: [f.definition], destinations: [destination('api', rt.api.url, { retry })] }, { random: () => 1 })
    const h = await start()
    const { id } = await src.emit({ i: 0 })
    for (let n = 1; n <= failures; n++) {
      if (n > 1) await vi.advanceTimersByTimeAsync(1000)
      await filterRetryStored(rt.store, id, n)
    }
    return { f, h, id, start }
  }

  /** Unclean stops the store reported as it opened (the warnings of its recovery). */
  const unclean: string[] = []
  const reopen = () => {
    rt.store = openSqliteStore({ dataDir: rt.dir.path, now: () => Date.now(), log: { warn: (_o: unknown, msg: string) => void unclean.push(msg), error: () => {} } as never })
  }

  /**
   * Ends the run by `how`, `downMs` passes, and the channel starts again on the store opened anew.
   * A clean stop releases the message; a crash closes the store first, so the stop releases nothing
   * (the message stays in flight, as after a kill) and the lock names a dead process.
   */
  const restart = async (how: 'clean stop' | 'crash', h: ChannelHandle, start: () => Promise<ChannelHandle>, downMs: number) => {
    if (how === 'crash') {
      await rt.store.close()
      await h.stop()
      await writeFile(join(rt.dir.path, 'weir.lock'), '999999999')
    } else {
      await h.stop()
      await rt.store.close()
    }
    await vi.advanceTimersByTimeAsync(downMs)
    unclean.length = 0
    reopen()
    expect(unclean.length > 0).toBe(how === 'crash')
    return start()
  }

  it.each(['clean stop', 'crash'] as const)('after a %s the retry scheduled waits its turn, and the attempts made before count: maxAttempts in all, then error', async (how) => {
    const { f, id, start, ...run } = await begin({ maxAttempts: 4, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 3_600_000 }, 2)
    let h = run.h
    const first = f.calls[0]!
    // Stored with the budget charged by the next attempt (a second away).
    expect((await rt.store.get(id))!.message.filterRetry).toEqual({ charged: 2, elapsedMs: 2000, nextAttemptAt: first + 2000 })
    // 300 ms of that second pass (100 before the stop, 200 down): after the restart, claimed again, the retry waits the 700 ms left, no less.
    await vi.advanceTimersByTimeAsync(100)
    h = await restart(how, h, start, 200)
    await settleIo(async () => (await rt.store.get(id))!.message.status === 'in-flight')
    await turns()
    expect(f.calls).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(699)
    await turns()
    expect(f.calls).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(1)
    await filterRetryStored(rt.store, id, 3)
    await vi.advanceTimersByTimeAsync(1000)
    await settleIo(() => h.counters().errors === 1)
    expect(f.calls.map((t) => t - first)).toEqual([0, 1000, 2000, 3000])
    const m = (await rt.store.get(id))!.message
    expect([m.status, m.error, m.filterRetry]).toEqual(['error', 'filters/0: gave up after 4 attempts: ERR_HTTP_NETWORK: lookup API down', undefined])
    expect(rt.api.received).toHaveLength(0)
  })

  it.each(['clean stop', 'crash'] as const)('after a %s the time charged before counts against maxElapsedMs; the time the engine was down does not', async (how) => {
    // A retry every second, for at most 2.5 s: attempts at 0, 1 and 2 s, the last one's wait would pass it.
    const { f, id, start, ...run } = await begin({ maxAttempts: 100, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 2500 }, 2)
    let h = run.h
    // Ten minutes down: the retry due meanwhile goes at once, and gives up on the budget's time.
    h = await restart(how, h, start, 600_000)
    await settleIo(() => h.counters().errors === 1)
    expect(f.calls).toHaveLength(3)
    expect((await rt.store.get(id))!.message).toMatchObject({ status: 'error', error: 'filters/0: gave up after 2000 ms: ERR_HTTP_NETWORK: lookup API down' })
  })

  it('filters that pass after a retry clear the stored budget while a destination retries, so a later run of the filters starts afresh', async () => {
    let fail = 1
    const calls: number[] = []
    const flaky = filter((m) => {
      calls.push(Date.now())
      if (fail-- > 0) throw new errorCodes.ERR_HTTP_NETWORK('lookup API down')
      return m
    })
    rt.api.behaviour = () => ({ status: 503 })
    const src = feedSource()
    const h = await rt.start({ source: src.definition, filters: [flaky], destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 10, initialDelayMs: 60_000, maxDelayMs: 60_000, maxElapsedMs: 3_600_000 } })] }, { random: () => 1 })
    const { id } = await src.emit({ i: 0 })
    await filterRetryStored(rt.store, id, 1)
    await vi.advanceTimersByTimeAsync((await rt.store.get(id))!.message.filterRetry!.nextAttemptAt - Date.now())
    // Passed at the second attempt; the API answers 503, so the message waits for its delivery's retry.
    await settleIo(async () => (await rt.store.get(id))!.message.status === 'retrying')
    expect(calls).toHaveLength(2)
    expect((await rt.store.get(id))!.message.filterRetry).toBeUndefined()
    await h.stop()
  })

  it('a resubmitted message\'s filters get a whole budget again', async () => {
    const { f, h, id } = await begin({ maxAttempts: 2, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 3_600_000 }, 1)
    await vi.advanceTimersByTimeAsync(1000)
    await settleIo(() => h.counters().errors === 1)
    expect(await rt.store.resubmit({ ids: [id] })).toEqual([id])
    h.wake()
    await filterRetryStored(rt.store, id, 1)
    expect(f.calls).toHaveLength(3)
    await vi.advanceTimersByTimeAsync(1000)
    await settleIo(() => h.counters().errors === 2)
    expect(f.calls).toHaveLength(4)
  })
})
