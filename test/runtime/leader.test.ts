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
})
