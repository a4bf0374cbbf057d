import { afterEach, describe, expect, it, vi } from 'vitest'
import { underLeadership } from '../../engine/runtime/leader.ts'
import { silentLogger } from '../../shared/log/index.ts'
import type { Source } from '../../shared/component.ts'
import type { Leadership } from '../../shared/store/types.ts'
import { useFakeClock } from './_helpers.ts'

/** A turn every third of the lease: every 100 ms. */
const LEASE_MS = 300

/** A leadership that answers `held(n)` on the n-th call of `lead`, writing every call to `trace`. */
function fakeLeadership(trace: string[], held: (n: number) => boolean): Leadership {
  let n = 0
  return {
    leaseMs: LEASE_MS,
    lead: async () => {
      n++
      trace.push(`lead ${n}`)
      return held(n)
    },
    resign: async () => { trace.push('resign') },
  }
}

/** Counts the rejections nobody handled while `fn` runs (Node 20 ends the process on the first). */
async function unhandledDuring(fn: () => Promise<void>): Promise<string[]> {
  const seen: string[] = []
  const onUnhandled = (e: unknown) => seen.push((e as Error).message)
  process.on('unhandledRejection', onUnhandled)
  try {
    await fn()
    await new Promise((r) => setImmediate(r))
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
  return seen
}

const emit = async () => ({ id: 'x', duplicate: false })

/**
 * A leadership on a connection partitioned from the database (packets dropped, no reset): the n-th
 * `lead` answers held after `answerMs[n - 1]` ms of the fake clock, the ones after those never, until
 * `heal` (then: not held, another engine took over), writing every call and answer to `trace` with the fake time.
 */
function partitionedLeadership(trace: string[], answerMs: number[]) {
  let n = 0
  let healed = false
  const hung: Array<(held: boolean) => void> = []
  const leadership: Leadership = {
    leaseMs: LEASE_MS,
    lead: () => {
      const k = ++n
      trace.push(`lead ${k} at ${Date.now() - T0}`)
      return new Promise<boolean>((ok) => {
        if (healed) return ok(false)
        if (k > answerMs.length) return hung.push(ok)
        const answer = () => { trace.push(`held ${k} at ${Date.now() - T0}`); ok(true) }
        // At once without a timer: `start` awaits the first answer before the test moves the clock.
        if (answerMs[k - 1] === 0) answer()
        else setTimeout(answer, answerMs[k - 1])
      })
    },
    resign: async () => { trace.push('resign') },
  }
  return { leadership, heal: () => { healed = true; for (const f of hung.splice(0)) f(false) } }
}

const T0 = Date.UTC(2026, 0, 1)

/** A source writing its starts and stops to `trace` with the fake time. */
function tracedSource(trace: string[]): Source {
  return { start() { trace.push(`start at ${Date.now() - T0}`) }, stop() { trace.push(`stop at ${Date.now() - T0}`) } }
}

/** Starts `source` under `leadership`, lets four turns pass (400 ms of the fake clock), stops it: the rejections nobody handled, and how stop() ended. */
async function runTurns(source: Source, leadership: Leadership): Promise<{ unhandled: string[]; stopped: string }> {
  const s = underLeadership(source, { leadership, name: 'ch/source', log: silentLogger, now: Date.now })
  let stopped = ''
  const unhandled = await unhandledDuring(async () => {
    await s.start(emit)
    await vi.advanceTimersByTimeAsync(400)
    stopped = await Promise.resolve(s.stop()).then(() => 'stopped', (e: Error) => `stop rejected: ${e.message}`)
  })
  return { unhandled, stopped }
}

describe('a poller under a leadership', () => {
  afterEach(() => { vi.useRealTimers() })

  it('a source that fails to start on a takeover gives the leadership back and is started again at a later turn', async () => {
    useFakeClock()
    const trace: string[] = []
    // Another engine holds it for two turns; this engine takes it over at the third.
    const leadership = fakeLeadership(trace, (n) => n >= 3)
    let starts = 0
    const source: Source = {
      async start() {
        trace.push('start')
        if (++starts === 1) throw new Error('EACCES: cannot create the input directory')
      },
      async stop() { trace.push('stop') },
    }
    const { unhandled, stopped } = await runTurns(source, leadership)
    expect({ unhandled, stopped, trace }).toEqual({
      unhandled: [], stopped: 'stopped',
      trace: ['lead 1', 'lead 2', 'lead 3', 'start', 'stop', 'resign', 'lead 4', 'start', 'lead 5', 'stop', 'resign'],
    })
  })

  it('a source whose stop() throws when the leadership is lost does not end the turns; stop() still resigns', async () => {
    useFakeClock()
    const trace: string[] = []
    // Held at first, not renewed for two turns (two thirds of a lease: the source stops), held again from the fourth.
    const leadership = fakeLeadership(trace, (n) => n === 1 || n >= 4)
    const source: Source = {
      start() { trace.push('start') },
      stop() {
        trace.push('stop')
        throw new Error('the directory watcher is already closed')
      },
    }
    const { unhandled, stopped } = await runTurns(source, leadership)
    expect({ unhandled, stopped, trace }).toEqual({
      unhandled: [], stopped: 'stop rejected: the directory watcher is already closed',
      trace: ['lead 1', 'start', 'lead 2', 'lead 3', 'stop', 'lead 4', 'start', 'lead 5', 'stop', 'resign'],
    })
  })

  it('a renewal that hangs (a partition that drops packets) does not keep the source running: it stops two thirds of a lease after the last confirmed renewal', async () => {
    useFakeClock(T0)
    const trace: string[] = []
    // Held at once when starting; the renewal at 100 ms never answers.
    const { leadership, heal } = partitionedLeadership(trace, [0])
    const s = underLeadership(tracedSource(trace), { leadership, name: 'ch/source', log: silentLogger, now: Date.now })
    await s.start(emit)
    await vi.advanceTimersByTimeAsync(3 * LEASE_MS)
    // Stopped at 200 ms (2/3 of the 300 ms lease), long before another engine may take over at 300 ms.
    expect(trace).toEqual(['lead 1 at 0', 'held 1 at 0', 'start at 0', 'lead 2 at 100', 'stop at 200'])
    heal()
    await s.stop()
  })

  it('a renewal counts from when it was sent, not from when its answer came back', async () => {
    useFakeClock(T0)
    const trace: string[] = []
    // Held at once; the renewal sent at 100 ms answers at 190 ms; the next one, at 200 ms, never answers.
    const { leadership, heal } = partitionedLeadership(trace, [0, 90])
    const s = underLeadership(tracedSource(trace), { leadership, name: 'ch/source', log: silentLogger, now: Date.now })
    await s.start(emit)
    await vi.advanceTimersByTimeAsync(3 * LEASE_MS)
    // The database renewed the lease at 100 ms at the latest: sure until 300 ms, not 390 ms.
    expect(trace).toEqual(['lead 1 at 0', 'held 1 at 0', 'start at 0', 'lead 2 at 100', 'held 2 at 190', 'lead 3 at 200', 'stop at 300'])
    heal()
    await s.stop()
  })
})
