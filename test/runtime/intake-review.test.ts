// Reading whether a channel refuses its input (the admin API, the metrics, the alerts read it) used
// to begin or end the refusal and log it: a scrape changed the state. Reading is a pure read now;
// `review()`, called by the channel's periodic tick, begins and ends refusals the limits alone decide.
import { describe, expect, it } from 'vitest'
import type { EmitResult, MessageInput } from '../../shared/component.ts'
import type { ChannelOptions } from '../../shared/config/types.ts'
import type { Leadership, MessageStore } from '../../shared/store/types.ts'
import { Backoffs, type RunContext } from '../../engine/runtime/context.ts'
import { createEmit, type IntakeCounters } from '../../engine/runtime/intake.ts'
import { textCollector } from '../reliability/_helpers.ts'

/** A channel's intake on a store whose pending count and size the test sets, on the test's clock. */
function intake(options: { queueLimit?: number; maxStoreBytes?: number; shared?: boolean }) {
  const s = { pending: 0, size: 0, now: Date.UTC(2026, 0, 1) }
  const leadership: Leadership = { lead: async () => true, resign: async () => {}, leaseMs: 15_000 }
  const store = {
    pending: () => s.pending,
    size: async () => s.size,
    enqueue: async (_c: string, _i: MessageInput): Promise<EmitResult> => ({ id: `m${++s.pending}`, duplicate: false }),
    ...(options.shared ? { leadership } : {}),
  } as unknown as MessageStore
  const collector = textCollector()
  const rc: RunContext = {
    name: 'adt', store, log: collector.log, now: () => s.now, random: Math.random,
    stopping: new AbortController().signal, aborting: new AbortController().signal,
    retrying: new Set(), backingOff: new Backoffs(() => {}), observer: {}, encrypted: false,
  }
  const opts = { concurrency: 1, queueLimit: options.queueLimit ?? 10_000, onError: 'skip', shutdownTimeoutMs: 1000, ...(options.maxStoreBytes !== undefined ? { maxStoreBytes: options.maxStoreBytes } : {}) } as ChannelOptions
  const counters: IntakeCounters = { received: 0, duplicates: 0, refused: 0, errors: 0 }
  const emit = createEmit(rc, opts, { retryAfterMs: 1000, counters, stored: () => {}, settled: () => {} })
  const lines = () => collector.texts.join('').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg)
  return { s, emit, counters, lines }
}

describe('reading whether a channel refuses its input', () => {
  it('changes nothing and logs nothing: a queueLimit refusal ends at the review after the queue has room', async () => {
    const { s, emit, lines } = intake({ queueLimit: 1 })
    await emit({ body: { n: 1 } })
    const t0 = s.now
    await expect(emit({ body: { n: 2 } })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE', limit: 'queueLimit' })
    expect(emit.refusing).toEqual({ limit: 'queueLimit', since: t0 })
    s.pending = 0
    s.now += 5_000
    expect(emit.refusing).toEqual({ limit: 'queueLimit', since: t0 })
    expect(emit.refusing).toEqual({ limit: 'queueLimit', since: t0 })
    expect(lines().filter((m) => m === 'accepting messages again')).toEqual([])
    await emit.review()
    expect(emit.refusing).toBeUndefined()
    await emit.review()
    expect(lines().filter((m) => m === 'accepting messages again')).toHaveLength(1)
    expect(lines().filter((m) => m.startsWith('refusing messages'))).toHaveLength(1)
  })

  it('keeps a queueLimit refusal at a review while the queue is still full', async () => {
    const { s, emit } = intake({ queueLimit: 1 })
    await emit({ body: { n: 1 } })
    await expect(emit({ body: { n: 2 } })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    const r = emit.refusing
    s.now += 5_000
    await emit.review()
    expect(emit.refusing).toEqual(r)
  })

  it('in a cluster, counts a full cluster queue as refusing from the review that found it full, not from a read', async () => {
    const { s, emit, counters, lines } = intake({ queueLimit: 2, shared: true })
    s.pending = 2 // other engines' messages
    expect(emit.refusing).toBeUndefined()
    expect(lines()).toEqual([])
    s.now += 1_000
    const found = s.now
    await emit.review()
    expect(emit.refusing).toEqual({ limit: 'queueLimit', since: found })
    expect(lines()).toEqual(['refusing messages: the queue is full (2 messages pending)'])
    s.now += 1_000
    await emit.review()
    await expect(emit({ body: { n: 1 } })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    expect(emit.refusing).toEqual({ limit: 'queueLimit', since: found })
    expect(counters.refused).toBe(1)
    s.pending = 1
    expect(emit.refusing).toEqual({ limit: 'queueLimit', since: found })
    await emit.review()
    expect(emit.refusing).toBeUndefined()
    expect(lines()).toEqual(['refusing messages: the queue is full (2 messages pending)', 'accepting messages again'])
  })

  it('ends a maxStoreBytes refusal at a review with a later size reading below the limit', async () => {
    const { s, emit } = intake({ maxStoreBytes: 1_000 })
    s.size = 2_000
    await expect(emit({ body: { n: 1 } })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE', limit: 'maxStoreBytes' })
    s.size = 500
    expect(emit.refusing).toMatchObject({ limit: 'maxStoreBytes' })
    await emit.review() // the size read for the refusal is still current
    expect(emit.refusing).toMatchObject({ limit: 'maxStoreBytes' })
    s.now += 1_000
    await emit.review()
    expect(emit.refusing).toBeUndefined()
  })
})
