/**
 * The message store conformance suite: what the runtime relies on, whatever the backend. Every
 * store (SQLite, and any server-backed store) runs it through a factory, then adds tests of its own.
 *
 *   storeConformance({ name: 'sqlite', location: ..., open: ..., crash: ... })
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import type { MessageStore, StoreError } from '../../shared/store/index.ts'
import { INTERRUPTED_ERROR, MAX_INTERRUPTIONS } from '../../shared/store/types.ts'

export interface StoreFactory {
  name: string
  /** Prepares a fresh, empty location for one test (a directory, a database schema). */
  fresh(): Promise<void>
  /** Opens the store at the current location; `owner: false` opens it as a reader beside the engine. */
  open(options?: { now?: () => number; owner?: boolean }): MessageStore | Promise<MessageStore>
  /** Ends a store the way a dying engine does: no claim is released (the next owner's open, or a live engine of a cluster, recovers them). */
  crash(store: MessageStore): Promise<void>
  /** Removes the location after the test. */
  cleanup(): Promise<void>
}

const delivered = (at: number) => ({ startedAt: at, endedAt: at + 1, outcome: 'delivered' as const })

export function storeConformance(factory: StoreFactory): void {
  describe(`message store conformance: ${factory.name}`, () => {
    let store: MessageStore
    beforeEach(async () => {
      await factory.fresh()
      store = await factory.open()
    })
    afterEach(async () => {
      await store.close()
      await factory.cleanup()
    })
    const reopen = async (options?: { now?: () => number }) => {
      await store.close()
      store = await factory.open(options)
    }

    it('enqueues and claims in order, with body, content type and attributes', async () => {
      const a = await store.enqueue('c1', { body: { n: 1 }, attributes: { from: 'x' } })
      const b = await store.enqueue('c1', { body: 'two' })
      await store.enqueue('c2', { body: 3 })
      expect(a.duplicate).toBe(false)
      expect(a.id).toMatch(/^[0-9A-Z]{26}$/)
      expect(store.pending('c1')).toBe(2)
      const claimed = await store.claim('c1', 10)
      expect(claimed.map((m) => m.id)).toEqual([a.id, b.id])
      expect(claimed[0]).toMatchObject({ channel: 'c1', body: { n: 1 }, contentType: 'application/json', attributes: { from: 'x' }, status: 'in-flight', deliveries: [] })
      expect(claimed[0]!.seq).toBeLessThan(claimed[1]!.seq)
      expect(claimed[1]).toMatchObject({ body: 'two', contentType: 'text/plain' })
      expect(await store.claim('c1', 10)).toEqual([])
      expect((await store.list({ channel: 'c1', status: 'in-flight', order: 'asc' })).map((m) => m.id)).toEqual([a.id, b.id])
    })

    it('names the channels the log holds messages of, sorted, and a resubmit changes each message it queues (its updatedAt)', async () => {
      expect(await store.channels?.()).toEqual([])
      await store.enqueue('orders', { body: 1 })
      const a = await store.enqueue('adt', { body: 2 })
      await store.enqueue('adt', { body: 3 })
      expect(await store.channels?.()).toEqual(['adt', 'orders'])
      await store.claim('adt', 1)
      await store.complete(a.id, 'delivered')
      const finished = (await store.get(a.id))!.message.updatedAt
      await new Promise((r) => setTimeout(r, 5))
      expect(await store.resubmit({ ids: [a.id] })).toEqual([a.id])
      expect((await store.get(a.id))!.message.updatedAt).toBeGreaterThan(finished)
    })

    it('resolves every write of a burst after it is stored, and claims them in arrival order', async () => {
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.enqueue('c', { body: i })))
      expect(new Set(results.map((r) => r.id)).size).toBe(50)
      expect((await store.stats('c')).queued).toBe(50)
      const claimed = await store.claim('c', 100)
      expect(claimed.map((m) => m.body)).toEqual(Array.from({ length: 50 }, (_, i) => i))
    })

    it('tells when the oldest unfinished message of each channel was received', async () => {
      let t = 1_000
      await reopen({ now: () => t })
      expect(await store.oldestPending()).toEqual({})
      const a = await store.enqueue('c1', { body: 1 })
      t = 2_000
      await store.enqueue('c1', { body: 2 })
      await store.enqueue('c2', { body: 3 })
      expect(await store.oldestPending()).toEqual({ c1: 1_000, c2: 2_000 })
      await store.claim('c1', 1)
      expect(await store.oldestPending('c1')).toEqual({ c1: 1_000 })
      await store.complete(a.id, 'delivered', [{ destination: 'd', part: 0, status: 'delivered', attempt: delivered(t) }])
      expect(await store.oldestPending('c1')).toEqual({ c1: 2_000 })
      expect(await store.oldestPending('none')).toEqual({})
    })

    it('counts the messages of a channel in error that went to error at or after a time; a resubmitted one no longer counts', async () => {
      let t = 1_000
      await reopen({ now: () => t })
      const [a, b, c, g] = [(await store.enqueue('c', { body: 1 })).id, (await store.enqueue('c', { body: 2 })).id, (await store.enqueue('c', { body: 3 })).id, (await store.enqueue('c', { body: 4 })).id]
      const e = (await store.enqueue('d', { body: 5 })).id
      await store.claim('c', 3)
      await store.claim('d', 1)
      t = 2_000
      await store.complete(a, 'error', [], 'api: 400')
      t = 3_000
      await store.fail(b, 'filter threw')
      await store.complete(c, 'delivered')
      await store.complete(e, 'error', [], 'api: 400')
      t = 3_500
      await store.enqueue('c', { body: 6 }, { error: 'no order key' })
      const count = (channel: string, since: number) => store.countErrors!(channel, since)
      expect([await count('c', 0), await count('c', 2_500), await count('c', 3_000), await count('c', 3_001), await count('c', 4_000)]).toEqual([3, 2, 2, 1, 0])
      expect([await count('d', 0), await count('none', 0)]).toEqual([1, 0])
      t = 5_000
      expect(await store.resubmit({ ids: [b] })).toEqual([b])
      expect(await count('c', 0)).toBe(2)
      const [again] = await store.claim('c', 1)
      expect(again!.id).toBe(b)
      t = 6_000
      await store.complete(b, 'error', [], 'filter threw again')
      expect([await count('c', 0), await count('c', 5_500)]).toEqual([3, 1])
      expect((await store.get(g))!.message.status).toBe('queued')
    })

    it('tells its size on disk, which grows with what is stored', async () => {
      const before = await store.size()
      expect(before).toBeGreaterThan(0)
      const { randomBytes } = await import('node:crypto')
      for (let i = 0; i < 20; i++) await store.enqueue('c', { body: { blob: randomBytes(48_000).toString('base64') } })
      expect(await store.size()).toBeGreaterThan(before + 500_000)
    })

    it('holds a dedupe key only for its window: a repeat after it is a new message, the earlier one kept', async () => {
      let t = 10_000
      await reopen({ now: () => t })
      const first = await store.enqueue('c', { body: 1, dedupeKey: 'k', dedupeWindowMs: 500 })
      t = 10_400
      expect(await store.enqueue('c', { body: 2, dedupeKey: 'k', dedupeWindowMs: 500 })).toEqual({ id: first.id, duplicate: true })
      t = 10_500
      const second = await store.enqueue('c', { body: 3, dedupeKey: 'k', dedupeWindowMs: 500 })
      expect(second.duplicate).toBe(false)
      t = 10_700
      expect(await store.enqueue('c', { body: 4, dedupeKey: 'k', dedupeWindowMs: 500 })).toEqual({ id: second.id, duplicate: true })
      expect(await store.enqueue('c', { body: 5, dedupeKey: 'k' })).toEqual({ id: second.id, duplicate: true })
      expect((await store.get(first.id))!.message.body).toBe(1)
      expect((await store.claim('c', 10)).map((m) => m.body)).toEqual([1, 3])
    })

    it('previews a resubmit without doing it: finished messages only, per destination what would be sent again', async () => {
      const ids: string[] = []
      for (let i = 0; i < 4; i++) ids.push((await store.enqueue('c', { body: i })).id)
      const [a, b, c] = await store.claim('c', 3)
      const outcome = (destination: string, status: 'delivered' | 'error') => ({ destination, part: 0, status, attempt: { ...delivered(1), outcome: status === 'delivered' ? 'delivered' as const : 'permanent' as const } })
      await store.complete(a!.id, 'error', [outcome('api', 'delivered'), outcome('archive', 'error')], 'archive refused')
      await store.complete(b!.id, 'delivered', [outcome('api', 'delivered'), outcome('archive', 'delivered')])
      await store.complete(c!.id, 'filtered')
      // ids[3] is still queued: not counted.
      expect(await store.resubmitPreview([...ids, ids[0]!, 'nope'])).toEqual({ messages: 3, destinations: { archive: 2, api: 1 }, undelivered: 1 })
      expect((await store.get(a!.id))!.message.status).toBe('error')
      expect(await store.resubmitPreview([])).toEqual({ messages: 0, destinations: {}, undelivered: 0 })
    })

    it('keeps an audit log of operator actions, newest first', async () => {
      await store.audit({ at: 1000, actor: 'ops', action: 'pause', target: 'adt', count: 0 })
      await store.audit({ at: 2000, actor: 'alice', action: 'resubmit', target: 'adt: 3 messages', count: 3 })
      await store.audit({ at: 3000, actor: 'ops', action: 'resume', target: 'adt', count: 0 })
      expect((await store.auditLog()).map((e) => e.action)).toEqual(['resume', 'resubmit', 'pause'])
      expect(await store.auditLog({ before: 3000, limit: 1 })).toEqual([{ at: 2000, actor: 'alice', action: 'resubmit', target: 'adt: 3 messages', count: 3 }])
      await reopen()
      expect(await store.auditLog({ limit: 10 })).toHaveLength(3)
    })

    it('recognises a repeated dedupe key per channel', async () => {
      const [a, b] = await Promise.all([
        store.enqueue('c', { body: 1, dedupeKey: 'k' }),
        store.enqueue('c', { body: 2, dedupeKey: 'k' }),
      ])
      const other = await store.enqueue('d', { body: 3, dedupeKey: 'k' })
      expect(a).toEqual({ id: a!.id, duplicate: false })
      expect(b).toEqual({ id: a!.id, duplicate: true })
      expect(other.duplicate).toBe(false)
      expect(store.pending('c')).toBe(1)
      expect((await store.claim('c', 5)).map((m) => m.body)).toEqual([1])
    })

    it('a dedupe key given with its clear form (clearDedupeKey) is a duplicate of a message stored under either, within the window; the clear form is never stored', async () => {
      let t = 10_000
      await reopen({ now: () => t })
      // Stored before encryption was switched on: the dedupe keys in clear.
      const clear = await store.enqueue('c', { body: 1, dedupeKey: 'ctl-1' })
      const windowed = await store.enqueue('c', { body: 2, dedupeKey: 'ctl-2', dedupeWindowMs: 500 })
      const hashed = (key: string, extra: { dedupeWindowMs?: number } = {}) => ({ dedupeKey: `hmac:${key}`, ...extra })
      // Alone (the PostgreSQL store's one-statement path) and in a burst beside a new message.
      expect(await store.enqueue('c', { body: 3, ...hashed('ctl-1') }, { clearDedupeKey: 'ctl-1' })).toEqual({ id: clear.id, duplicate: true })
      const [again, fresh] = await Promise.all([
        store.enqueue('c', { body: 4, ...hashed('ctl-1') }, { clearDedupeKey: 'ctl-1' }),
        store.enqueue('c', { body: 5, ...hashed('ctl-3') }, { clearDedupeKey: 'ctl-3' }),
      ])
      expect(again).toEqual({ id: clear.id, duplicate: true })
      expect(fresh.duplicate).toBe(false)
      expect(await store.enqueue('c', { body: 6, ...hashed('ctl-3') }, { clearDedupeKey: 'ctl-3' })).toEqual({ id: fresh.id, duplicate: true })
      expect(await store.enqueue('c', { body: 7, dedupeKey: 'ctl-3' })).toMatchObject({ duplicate: false })
      t = 10_400
      expect(await store.enqueue('c', { body: 8, ...hashed('ctl-2', { dedupeWindowMs: 500 }) }, { clearDedupeKey: 'ctl-2' })).toEqual({ id: windowed.id, duplicate: true })
      t = 10_500
      expect(await store.enqueue('c', { body: 9, ...hashed('ctl-2', { dedupeWindowMs: 500 }) }, { clearDedupeKey: 'ctl-2' })).toMatchObject({ duplicate: false })
      const stored = await store.list({ channel: 'c', order: 'asc' })
      expect(stored.map((m) => [m.body, m.dedupeKey])).toEqual([[1, 'ctl-1'], [2, undefined], [5, 'hmac:ctl-3'], [7, 'ctl-3'], [9, 'hmac:ctl-2']])
      expect(store.pending('c')).toBe(5)
    })

    it('keeps the order key with the message, across a restart', async () => {
      const a = await store.enqueue('c', { body: 1 }, { orderKey: 'mrn-1' })
      const b = await store.enqueue('c', { body: 2 })
      expect((await store.claim('c', 5)).map((m) => m.orderKey)).toEqual(['mrn-1', undefined])
      await factory.crash(store)
      store = await factory.open()
      const again = await store.claim('c', 5)
      expect(again.map((m) => [m.id, m.orderKey])).toEqual([[a.id, 'mrn-1'], [b.id, undefined]])
      expect((await store.get(a.id))!.message.orderKey).toBe('mrn-1')
    })

    it('stores a message in error at once when told why, without queueing it', async () => {
      const r = await store.enqueue('c', { body: { mrn: null } }, { error: 'orderBy: the key expression gave no value' })
      expect(r.duplicate).toBe(false)
      expect(store.pending('c')).toBe(0)
      expect(await store.claim('c', 5)).toEqual([])
      expect((await store.get(r.id))!.message).toMatchObject({ status: 'error', error: 'orderBy: the key expression gave no value', body: { mrn: null } })
    })

    it('keeps which filter dropped a filtered message as its filteredBy, never as an error; a resubmit clears it', async () => {
      const [a, b] = [await store.enqueue('c', { body: 1 }), await store.enqueue('c', { body: 2 })]
      await store.claim('c', 2)
      await store.complete(a.id, 'filtered', [{ destination: 'api', part: 0, status: 'filtered' }], 'filters/2 "test-patients" (match)')
      await store.complete(b.id, 'error', [], 'filters/0 (map): boom')
      const filtered = (await store.get(a.id))!.message
      expect(filtered).toMatchObject({ status: 'filtered', filteredBy: 'filters/2 "test-patients" (match)' })
      expect(filtered.error).toBeUndefined()
      const inError = (await store.get(b.id))!.message
      expect(inError).toMatchObject({ status: 'error', error: 'filters/0 (map): boom' })
      expect(inError.filteredBy).toBeUndefined()
      expect((await store.list({ channel: 'c', status: 'filtered' })).map((m) => [m.id, m.filteredBy, m.error])).toEqual([[a.id, 'filters/2 "test-patients" (match)', undefined]])
      await reopen()
      expect((await store.get(a.id))!.message.filteredBy).toBe('filters/2 "test-patients" (match)')
      expect(await store.resubmit({ ids: [a.id] })).toEqual([a.id])
      expect((await store.get(a.id))!.message).not.toHaveProperty('filteredBy')
    })

    it('latestErrors: per message asked for, the destination and error of its latest failed attempt; none for one without', async () => {
      const [a, b, c] = [await store.enqueue('c', { body: 1 }), await store.enqueue('c', { body: 2 }), await store.enqueue('c', { body: 3 })]
      await store.claim('c', 3)
      const failed = (at: number, error: string) => ({ startedAt: at, endedAt: at + 10, outcome: 'retryable' as const, responseStatus: 503, error })
      await store.recordDelivery(a.id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: failed(1000, 'api first') })
      await store.recordDelivery(a.id, { destination: 'audit', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: failed(3000, 'audit latest') })
      await store.recordDelivery(a.id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: failed(2000, 'api second') })
      await store.recordDelivery(b.id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: failed(1500, 'b failed') })
      const got = await store.latestErrors!([a.id, b.id, c.id, 'no-such-id'])
      expect(got.sort((x, y) => x.error.localeCompare(y.error))).toEqual([
        { id: a.id, destination: 'audit', error: 'audit latest' },
        { id: b.id, destination: 'api', error: 'b failed' },
      ])
      expect(await store.latestErrors!([])).toEqual([])
    })

    it('records attempts and final outcomes per destination', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      await store.claim('c', 1)
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 5000, attempt: { startedAt: 1000, endedAt: 1100, outcome: 'retryable', responseStatus: 503, error: 'http 503', excerpt: 'busy' } })
      expect((await store.get(id))!.message.status).toBe('retrying')
      await store.complete(id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: 5000, endedAt: 5010, outcome: 'delivered', responseStatus: 201, excerpt: 'ok' } }])
      const d = (await store.get(id))!
      expect(d.message.status).toBe('delivered')
      expect(d.deliveries).toEqual([{ destination: 'api', part: 0, status: 'delivered', attempts: 2, firstAttemptAt: 1000, lastAttemptAt: 5000, responseStatus: 201, responseExcerpt: 'ok' }])
      expect(d.attempts.map((a) => [a.attempt, a.outcome, a.responseStatus])).toEqual([[1, 'retryable', 503], [2, 'delivered', 201]])
      expect(store.pending('c')).toBe(0)
      expect(await store.stats('c')).toMatchObject({ delivered: 1, queued: 0 })
    })

    it('keeps every attempt of a message delivered, resubmitted and delivered again', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      await store.claim('c', 1)
      await store.complete(id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: 1000, endedAt: 1010, outcome: 'delivered', responseStatus: 200, excerpt: 'first' } }])
      const once = (await store.get(id))!
      expect(once.attempts).toEqual([{ destination: 'api', part: 0, attempt: 1, startedAt: 1000, endedAt: 1010, outcome: 'delivered', responseStatus: 200, excerpt: 'first' }])
      expect(await store.resubmit({ ids: [id] })).toEqual([id])
      await store.refreshPending('c')
      expect((await store.claim('c', 1)).map((m) => m.id)).toEqual([id])
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 3000, attempt: { startedAt: 2000, endedAt: 2010, outcome: 'retryable', responseStatus: 503, error: 'http 503' } })
      await store.complete(id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: 3000, endedAt: 3020, outcome: 'delivered', responseStatus: 201, excerpt: 'third' } }])
      const d = (await store.get(id))!
      expect(d.attempts.map((a) => [a.attempt, a.startedAt, a.endedAt, a.outcome, a.responseStatus, a.excerpt ?? a.error])).toEqual([
        [1, 1000, 1010, 'delivered', 200, 'first'], [2, 2000, 2010, 'retryable', 503, 'http 503'], [3, 3000, 3020, 'delivered', 201, 'third'],
      ])
      expect(d.deliveries).toEqual([{ destination: 'api', part: 0, status: 'delivered', attempts: 3, budgetAttempts: 1, budgetSince: 2000, firstAttemptAt: 1000, lastAttemptAt: 3000, responseStatus: 201, responseExcerpt: 'third' }])
    })

    it('a resubmission starts a new retry budget: the attempts before it, and the first attempt after it (the history numbers on)', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      await store.claim('c', 1)
      const failed = (at: number) => ({ startedAt: at, endedAt: at + 10, outcome: 'retryable' as const, responseStatus: 503, error: 'http 503' })
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 2000, attempt: failed(1000) })
      await store.complete(id, 'error', [{ destination: 'api', part: 0, status: 'error', attempt: failed(2000) }], 'api: gave up')
      expect((await store.get(id))!.deliveries).toEqual([{ destination: 'api', part: 0, status: 'error', attempts: 2, firstAttemptAt: 1000, lastAttemptAt: 2000, lastError: 'http 503', responseStatus: 503 }])
      expect(await store.resubmit({ ids: [id] })).toEqual([id])
      await store.refreshPending('c')
      const [again] = await store.claim('c', 1)
      expect(again!.deliveries).toEqual([{ destination: 'api', part: 0, status: 'queued', attempts: 2, budgetAttempts: 2, firstAttemptAt: 1000, lastAttemptAt: 2000, lastError: 'http 503', responseStatus: 503 }])
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 6000, attempt: failed(5000) })
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 7000, attempt: failed(6000) })
      await store.release([id])
      const [released] = await store.claim('c', 1)
      expect(released!.deliveries).toEqual([{ destination: 'api', part: 0, status: 'queued', attempts: 4, budgetAttempts: 2, budgetSince: 5000, firstAttemptAt: 1000, lastAttemptAt: 6000, nextAttemptAt: 7000, lastError: 'http 503', responseStatus: 503 }])
      await store.complete(id, 'error', [{ destination: 'api', part: 0, status: 'error', attempt: failed(7000) }], 'api: gave up')
      // A second resubmission moves the baseline on.
      expect(await store.resubmit({ ids: [id] })).toEqual([id])
      const d = (await store.get(id))!
      expect(d.deliveries.map((x) => [x.attempts, x.budgetAttempts, x.budgetSince, x.nextAttemptAt])).toEqual([[5, 5, undefined, undefined]])
      expect(d.attempts.map((a) => [a.attempt, a.startedAt])).toEqual([[1, 1000], [2, 2000], [3, 5000], [4, 6000], [5, 7000]])
    })

    it('a retry scheduled with the budget charged stores it: attempts - budgetAttempts is what was charged, nextAttemptAt - budgetSince the time', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      await store.claim('c', 1)
      const failed = (at: number) => ({ startedAt: at, endedAt: at + 10, outcome: 'retryable' as const, responseStatus: 401, error: 'credential refused' })
      const spent = (d: { attempts: number; budgetAttempts?: number; budgetSince?: number; nextAttemptAt?: number }) =>
        [d.attempts, d.attempts - d.budgetAttempts!, d.nextAttemptAt! - d.budgetSince!]
      // The first attempt (a new row) and the next two were not charged (a broken credential), the fourth was.
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 2000, attempt: failed(1000), budget: { charged: 0, elapsedMs: 0 } })
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 4000, attempt: failed(2000), budget: { charged: 0, elapsedMs: 0 } })
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 8000, attempt: failed(4000), budget: { charged: 0, elapsedMs: 0 } })
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 9500, attempt: failed(8000), budget: { charged: 1, elapsedMs: 1510 } })
      expect((await store.get(id))!.deliveries.map(spent)).toEqual([[4, 1, 1510]])
      await store.release([id])
      const [again] = await store.claim('c', 1)
      expect(again!.deliveries).toEqual([{ destination: 'api', part: 0, status: 'queued', attempts: 4, budgetAttempts: 3, budgetSince: 7990, firstAttemptAt: 1000, lastAttemptAt: 8000, nextAttemptAt: 9500, lastError: 'credential refused', responseStatus: 401 }])
      // An update without a budget leaves it as it is: its attempt counts.
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 13_000, attempt: failed(12_000) })
      expect((await store.get(id))!.deliveries.map(spent)).toEqual([[5, 2, 5010]])
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 20_000, attempt: failed(14_000), budget: { charged: 3, elapsedMs: 9520 } })
      expect((await store.get(id))!.deliveries.map(spent)).toEqual([[6, 3, 9520]])
      // A resubmission starts a new budget all the same.
      await store.complete(id, 'error', [{ destination: 'api', part: 0, status: 'error', attempt: failed(20_000) }], 'api: gave up')
      expect(await store.resubmit({ ids: [id] })).toEqual([id])
      expect((await store.get(id))!.deliveries.map((x) => [x.attempts, x.budgetAttempts, x.budgetSince, x.nextAttemptAt])).toEqual([[7, 7, undefined, undefined]])
    })

    it('a retry of the filters is kept with its message until it finishes (released, crashed); finishing or a resubmission clears it', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      const { id: given } = await store.enqueue('c', { body: 2 })
      const retry = { charged: 2, elapsedMs: 1500, nextAttemptAt: 3000 }
      await store.claim('c', 2)
      await store.recordFilterRetry(id, { charged: 1, elapsedMs: 500, nextAttemptAt: 1500 })
      await store.recordFilterRetry(id, retry)
      await store.recordFilterRetry(given, retry)
      // The message stays in flight: its filters retry, no delivery waits.
      expect((await store.get(id))!.message).toMatchObject({ status: 'in-flight', filterRetry: retry })
      await store.release([id, given])
      expect((await store.claim('c', 2)).map((m) => [m.id, m.filterRetry])).toEqual([[id, retry], [given, retry]])
      await store.fail(id, 'filters/0: gave up after 3 attempts: lookup API down')
      const failed = (await store.get(id))!.message
      expect([failed.status, failed.filterRetry]).toEqual(['error', undefined])
      // In flight at each crash, so each counts as an unclean stop; at the last, recovery gives up on it.
      for (let i = 1; i <= MAX_INTERRUPTIONS; i++) {
        await factory.crash(store)
        store = await factory.open()
        if (i < MAX_INTERRUPTIONS) expect((await store.claim('c', 1)).map((m) => [m.id, m.filterRetry, m.interruptions])).toEqual([[given, retry, i]])
      }
      // Given up on: finished, so no retry of its filters is left to show.
      const gaveUp = (await store.get(given))!.message
      expect([gaveUp.status, gaveUp.filterRetry]).toEqual(['error', undefined])
      expect(await store.resubmit({ ids: [given] })).toEqual([given])
      expect((await store.claim('c', 1)).map((m) => [m.id, m.filterRetry])).toEqual([[given, undefined]])
      // Filters that pass after a retry clear it (null), the message staying in flight for its deliveries.
      await store.recordFilterRetry(given, retry)
      await store.recordFilterRetry(given, null)
      const passed = (await store.get(given))!.message
      expect([passed.status, passed.filterRetry]).toEqual(['in-flight', undefined])
    })

    it('a claim carries the delivery records so far: a released message keeps what got through and its next retry time', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      await store.claim('c', 1)
      await store.recordDelivery(id, { destination: 'a', part: 0, status: 'delivered', attempt: delivered(1) })
      await store.recordDelivery(id, { destination: 'b', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: { startedAt: 2, endedAt: 3, outcome: 'retryable', error: 'x' } })
      await store.release([id])
      const [again] = await store.claim('c', 1)
      expect(again!.id).toBe(id)
      expect(again!.deliveries.map((x) => [x.destination, x.status, x.attempts, x.nextAttemptAt])).toEqual([['a', 'delivered', 1, undefined], ['b', 'queued', 1, 9000]])
    })

    it('released messages are claimed again before the ones queued after them', async () => {
      const ids = []
      for (let i = 0; i < 6; i++) ids.push((await store.enqueue('c', { body: i })).id)
      const first = await store.claim('c', 3)
      expect(first.map((m) => m.body)).toEqual([0, 1, 2])
      await store.release([first[1]!.id, first[2]!.id])
      await store.enqueue('c', { body: 6 })
      expect((await store.claim('c', 10)).map((m) => m.body)).toEqual([1, 2, 3, 4, 5, 6])
      expect(store.pending('c')).toBe(7)
    })

    it('returns a crashed owner\'s claims to the queue on the next open, keeping delivered destinations', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      const { id: id2 } = await store.enqueue('c', { body: 2 })
      await store.claim('c', 2)
      await store.recordDelivery(id, { destination: 'a', part: 0, status: 'delivered', attempt: delivered(1) })
      await store.recordDelivery(id, { destination: 'b', part: 0, status: 'retrying', attempt: { startedAt: 1, endedAt: 2, outcome: 'retryable', error: 'x' } })
      await factory.crash(store)
      store = await factory.open()
      expect(store.pending('c')).toBe(2)
      const claimed = await store.claim('c', 5)
      expect(claimed.map((m) => m.id)).toEqual([id, id2])
      expect(claimed[0]!.deliveries.map((x) => [x.destination, x.status])).toEqual([['a', 'delivered'], ['b', 'queued']])
    })

    it('counts the unclean stops a message was in flight at (not one waiting out a retry); at the last it goes to error, and a resubmit starts again', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      const { id: waiting } = await store.enqueue('c', { body: 2 })
      await reopen() // a backlog from now on: every claim is in flight in the store at once
      const retryable = { startedAt: 1, endedAt: 2, outcome: 'retryable' as const, error: 'x' }
      for (let i = 0; i < MAX_INTERRUPTIONS; i++) {
        const claimed = await store.claim('c', 2)
        expect(claimed.map((m) => [m.id, m.interruptions])).toEqual([[id, i || undefined], [waiting, undefined]])
        await store.recordDelivery(waiting, { destination: 'a', part: 0, status: 'retrying', attempt: retryable })
        await factory.crash(store)
        store = await factory.open()
      }
      expect((await store.claim('c', 5)).map((m) => m.id)).toEqual([waiting])
      const detail = (await store.get(id))!
      expect(detail.message.status).toBe('error')
      expect(detail.message.error).toBe(INTERRUPTED_ERROR)
      expect(store.pending('c')).toBe(1)
      expect(await store.resubmit({ ids: [id] })).toEqual([id])
      await store.release([waiting])
      expect((await store.claim('c', 5)).map((m) => [m.id, m.interruptions])).toEqual([[id, undefined], [waiting, undefined]])
    })

    it('a store closed with claims it never released (a delivery that outlived the shutdown) gives them back: the next open claims them at once', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      const { id: id2 } = await store.enqueue('c', { body: 2 })
      await store.claim('c', 2)
      await store.recordDelivery(id, { destination: 'a', part: 0, status: 'delivered', attempt: delivered(1) })
      await reopen()
      const claimed = await store.claim('c', 5)
      expect(claimed.map((m) => m.id)).toEqual([id, id2])
      expect(claimed[0]!.deliveries.map((x) => [x.destination, x.status])).toEqual([['a', 'delivered']])
    })

    it('a reader beside the owner sees claims and does not release them', async () => {
      await store.enqueue('c', { body: 1 })
      await store.claim('c', 1)
      const reader = await factory.open({ owner: false })
      try {
        // The SQLite store marks a claim from memory in flight within 100 ms (its own reads at once).
        await expect.poll(async () => (await reader.list({ channel: 'c' }))[0]!.status, { timeout: 2000, interval: 20 }).toBe('in-flight')
      } finally {
        await reader.close()
      }
      expect(await store.claim('c', 1)).toEqual([])
    })

    it('resubmits error messages, skipping destinations that already have them', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      const { id: ok } = await store.enqueue('c', { body: 2 })
      await store.claim('c', 2)
      await store.complete(id, 'error', [
        { destination: 'a', part: 0, status: 'delivered', attempt: delivered(1) },
        { destination: 'b', part: 0, status: 'error', attempt: { startedAt: 1, endedAt: 2, outcome: 'permanent', responseStatus: 400, excerpt: 'bad' } },
      ], 'b: http 400')
      await store.complete(ok, 'delivered')
      expect((await store.get(id))!.message.error).toBe('b: http 400')
      expect(await store.resubmit({ status: 'error' })).toEqual([id])
      const d = (await store.get(id))!
      expect(d.message.status).toBe('queued')
      expect(d.message.error).toBeUndefined()
      expect(d.deliveries.map((x) => [x.destination, x.status])).toEqual([['a', 'delivered'], ['b', 'queued']])
      expect(store.pending('c')).toBe(1)
      // In-flight messages are not resubmitted; a delivered one by id is sent to every destination again.
      expect(await store.resubmit({ ids: [id] })).toEqual([])
      expect(await store.resubmit({ ids: [ok] })).toEqual([ok])
      expect((await store.claim('c', 5)).map((m) => m.id)).toEqual([id, ok])
    })

    /** Three finished messages of channel c (delivered, error, filtered), as a preview pins them: ids with their updatedAt. */
    const finishedSet = async (on: MessageStore = store) => {
      const ids = [(await on.enqueue('c', { body: 1 })).id, (await on.enqueue('c', { body: 2 })).id, (await on.enqueue('c', { body: 3 })).id]
      await on.claim('c', 3)
      await on.complete(ids[0]!, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: delivered(1) }])
      await on.complete(ids[1]!, 'error', [{ destination: 'api', part: 0, status: 'error', attempt: { startedAt: 1, endedAt: 2, outcome: 'permanent' } }], 'api: 400')
      await on.complete(ids[2]!, 'filtered')
      return Promise.all(ids.map(async (id) => ({ id, updatedAt: (await on.get(id))!.message.updatedAt })))
    }
    const conflictOf = (r: PromiseSettledResult<unknown>) => (r.status === 'rejected' ? { code: (r.reason as StoreError).code, conflict: (r.reason as StoreError).conflict } : r.value)

    it('resubmits a previewed set only as previewed: of two confirmations at once on two handles, one queues every message once, the other fails with the conflict and queues none', async () => {
      const previewed = await finishedSet()
      const ids = previewed.map((m) => m.id)
      const other = await factory.open({ owner: false })
      try {
        const results = await Promise.allSettled([store.resubmit({ asPreviewed: previewed }), other.resubmit({ asPreviewed: previewed })])
        const [won, lost] = results[0]!.status === 'fulfilled' ? results : [results[1]!, results[0]!]
        expect(won).toEqual({ status: 'fulfilled', value: ids })
        expect(conflictOf(lost!)).toEqual({ code: 'ERR_STORE', conflict: true })
      } finally {
        await other.close()
      }
      await store.refreshPending('c')
      expect((await store.claim('c', 10)).map((m) => m.id)).toEqual(ids)
      expect(await store.claim('c', 10)).toEqual([])
    })

    it('refuses a previewed set whose messages changed after the check passed (resubmitted and finished again): queues none, where a resubmit by id would send them again', async () => {
      const previewed = await finishedSet()
      const ids = previewed.map((m) => m.id)
      // One confirmation resubmits; the messages are delivered again; then the other, which passed its check before, resubmits.
      expect(await store.resubmit({ asPreviewed: previewed })).toEqual(ids)
      await store.claim('c', 10)
      for (const id of ids) await store.complete(id, 'delivered')
      const late = await store.resubmit({ asPreviewed: previewed }).catch((e: StoreError) => ({ code: e.code, conflict: e.conflict }))
      expect(late).toEqual({ code: 'ERR_STORE', conflict: true })
      expect(await Promise.all(ids.map(async (id) => (await store.get(id))!.message.status))).toEqual(['delivered', 'delivered', 'delivered'])
      // One message changed refuses them all, unless changed ones are to be skipped.
      const now = await Promise.all(ids.map(async (id) => ({ id, updatedAt: (await store.get(id))!.message.updatedAt })))
      const stale = [now[0]!, { ...now[1]!, updatedAt: now[1]!.updatedAt - 1 }, now[2]!]
      await expect(store.resubmit({ asPreviewed: stale })).rejects.toMatchObject({ code: 'ERR_STORE', conflict: true })
      expect(store.pending('c')).toBe(0)
      expect(await store.resubmit({ asPreviewed: stale, changed: 'skip' })).toEqual([ids[0], ids[2]])
      expect(await store.resubmit({ asPreviewed: [] })).toEqual([])
      await expect(store.resubmit({ ids, asPreviewed: now })).rejects.toMatchObject({ code: 'ERR_INTERNAL' })
    })

    it('gives every message it resubmits a later updatedAt, even on a clock that stands still', async () => {
      await reopen({ now: () => 5000 })
      const previewed = await finishedSet()
      expect(previewed.map((m) => m.updatedAt)).toEqual([5000, 5000, 5000])
      await store.resubmit({ asPreviewed: previewed })
      for (const m of previewed) expect((await store.get(m.id))!.message.updatedAt).toBeGreaterThan(5000)
    })

    it('lists by channel, status and time, newest first; finds a message by an id prefix', async () => {
      let t = 1000
      await reopen({ now: () => t })
      const a = await store.enqueue('c', { body: 1 })
      t = 2000
      const b = await store.enqueue('c', { body: 2 })
      const c = await store.enqueue('d', { body: 3 })
      expect((await store.list()).map((m) => m.id)).toEqual([c.id, b.id, a.id])
      expect((await store.list({ channel: 'c' })).map((m) => m.id)).toEqual([b.id, a.id])
      expect((await store.list({ since: 1500, order: 'asc' })).map((m) => m.id)).toEqual([b.id, c.id])
      expect((await store.list({ until: 2000 })).map((m) => m.id)).toEqual([a.id])
      await store.claim('c', 1)
      expect((await store.list({ status: 'in-flight' })).map((m) => m.id)).toEqual([a.id])
      expect((await store.get(a.id.slice(0, 20)))!.message.id).toBe(a.id)
    })

    it('pages through a list by the last seq of each page, in either order, with every filter', async () => {
      const sent: string[] = []
      for (let i = 0; i < 7; i++) sent.push((await store.enqueue(i % 2 ? 'other' : 'c', { body: i })).id)
      const pages = async (order: 'asc' | 'desc') => {
        const out: string[][] = []
        let after: number | undefined
        for (;;) {
          const page = await store.list({ channel: 'c', order, limit: 2, ...(after !== undefined ? { after } : {}) })
          if (page.length === 0) return out
          out.push(page.map((m) => m.id))
          after = page.at(-1)!.seq
        }
      }
      const mine = sent.filter((_, i) => i % 2 === 0)
      expect(await pages('desc')).toEqual([[mine[3], mine[2]], [mine[1], mine[0]]])
      expect(await pages('asc')).toEqual([[mine[0], mine[1]], [mine[2], mine[3]]])
    })

    it('lists by search key: every value indexed with its message, by name and value, with or without the channel', async () => {
      const keys = (mrn: string, ...accessions: string[]) => ({ searchKeys: { mrn: [mrn], ...(accessions.length ? { accession: accessions } : {}) } })
      const a = await store.enqueue('c', { body: 1 }, keys('203713', 'A1', 'A2'))
      const b = await store.enqueue('c', { body: 2 }, keys('555'))
      const c = await store.enqueue('c', { body: 3, dedupeKey: 'k' }, keys('203713'))
      const dup = await store.enqueue('c', { body: 4, dedupeKey: 'k' }, keys('203713', 'A9'))
      const d = await store.enqueue('d', { body: 5 }, keys('203713'))
      const e = await store.enqueue('c', { body: 6 }, { error: 'bad order key', ...keys('203713') })
      expect(dup).toEqual({ id: c.id, duplicate: true })
      const ids = async (filter: Parameters<MessageStore['list']>[0]) => (await store.list(filter)).map((m) => m.id)
      const mrn = { name: 'mrn', value: '203713' }
      expect(await ids({ key: mrn })).toEqual([e.id, d.id, c.id, a.id])
      expect(await ids({ key: mrn, channel: 'c', order: 'asc' })).toEqual([a.id, c.id, e.id])
      expect(await ids({ key: mrn, channel: 'c', status: 'error' })).toEqual([e.id])
      expect(await ids({ key: mrn, limit: 2 })).toEqual([e.id, d.id])
      const [, second] = await store.list({ key: mrn, limit: 2 })
      expect(await ids({ key: mrn, limit: 2, after: second!.seq })).toEqual([c.id, a.id])
      expect(await ids({ key: mrn, channel: 'c', order: 'asc', after: (await store.list({ key: mrn, channel: 'c', order: 'asc', limit: 1 }))[0]!.seq })).toEqual([c.id, e.id])
      expect(await ids({ key: { name: 'accession', value: 'A2' } })).toEqual([a.id])
      expect(await ids({ key: { name: 'accession', value: 'A9' } })).toEqual([])
      expect(await ids({ key: { name: 'mrn', value: 'A1' } })).toEqual([])
      expect(await ids({ key: { name: 'mrn', value: '555' }, channel: 'd' })).toEqual([])
      expect((await store.list({ key: { name: 'mrn', value: '555' } }))[0]).toMatchObject({ id: b.id, channel: 'c', body: 2, status: 'queued' })
    })

    it('forgets a purged message\'s search keys', async () => {
      let t = 1000
      await reopen({ now: () => t })
      const old = await store.enqueue('c', { body: 1 }, { searchKeys: { mrn: ['42'] } })
      await store.claim('c', 1)
      await store.complete(old.id, 'delivered')
      t = 5000
      const kept = await store.enqueue('c', { body: 2 }, { searchKeys: { mrn: ['42'] } })
      expect(await store.purge({ before: 3000 })).toBe(1)
      expect((await store.list({ key: { name: 'mrn', value: '42' } })).map((m) => m.id)).toEqual([kept.id])
    })

    it('re-reads pending counts and the queue after a reader resubmits', async () => {
      const { id } = await store.enqueue('c', { body: 1 })
      await store.claim('c', 1)
      await store.complete(id, 'error', [], 'x')
      expect(store.pending('c')).toBe(0)
      const other = await factory.open({ owner: false })
      expect(await other.resubmit({ status: 'error', channel: 'c' })).toEqual([id])
      await other.close()
      expect(store.pending('c')).toBe(0)
      await store.refreshPending('c')
      expect(store.pending('c')).toBe(1)
      expect((await store.claim('c', 5)).map((m) => m.id)).toEqual([id])
    })

    it('purges finished messages last updated before a time, with their history; never unfinished ones', async () => {
      let t = 1000
      await reopen({ now: () => t })
      const ids = []
      for (const [ch, key] of [['c', 'k-a'], ['c', 'k-b'], ['c', 'k-c'], ['c', 'k-d'], ['c', 'k-e'], ['d', 'k-f']] as const) ids.push((await store.enqueue(ch, { body: key, dedupeKey: key })).id)
      const [a, b, c, d, e, f] = ids as [string, string, string, string, string, string]
      await store.claim('c', 3)
      await store.claim('d', 1)
      t = 2000
      await store.complete(a, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: delivered(2000) }])
      await store.complete(b, 'error', [{ destination: 'api', part: 0, status: 'error', attempt: { startedAt: 2000, endedAt: 2001, outcome: 'permanent' } }], 'api: 400')
      await store.complete(f, 'delivered')
      t = 5000
      await store.complete(c, 'filtered')
      await store.claim('c', 1) // d in flight; e stays queued
      // What a purge would delete, counted per channel and status beforehand.
      expect(await store.countPurgeable({ before: 3000 })).toEqual([
        { channel: 'c', status: 'delivered', count: 1 }, { channel: 'c', status: 'error', count: 1 }, { channel: 'd', status: 'delivered', count: 1 },
      ])
      expect(await store.countPurgeable({ before: 3000, channel: 'c', statuses: ['delivered', 'filtered'] })).toEqual([{ channel: 'c', status: 'delivered', count: 1 }])
      expect(await store.countPurgeable({ channel: 'c', statuses: ['filtered'] })).toEqual([{ channel: 'c', status: 'filtered', count: 1 }])
      expect(await store.countPurgeable({ before: 1500 })).toEqual([])
      expect(await store.purge({ before: 3000 })).toBe(3)
      expect(await store.get(a)).toBeUndefined()
      expect(await store.get(b)).toBeUndefined()
      expect(await store.get(f)).toBeUndefined()
      expect((await store.list({ order: 'asc' })).map((m) => [m.id, m.status])).toEqual([[c, 'filtered'], [d, 'in-flight'], [e, 'queued']])
      expect(await store.purge({ before: 10_000, channel: 'd' })).toBe(0)
      expect(await store.purge({ before: 10_000, channel: 'c' })).toBe(1)
      expect((await store.list()).map((m) => m.id).sort()).toEqual([d, e].sort())
      expect(store.pending('c')).toBe(2)
      // The dedupe key of a purged message is accepted again.
      expect((await store.enqueue('c', { body: 'again', dedupeKey: 'k-a' })).duplicate).toBe(false)
      expect((await store.enqueue('c', { body: 'again', dedupeKey: 'k-e' })).duplicate).toBe(true)
    })

    it('purges by status, keeping the newest finished messages of a channel, a limited batch at a time', async () => {
      let t = 1000
      await reopen({ now: () => t })
      const ids: string[] = []
      for (let i = 0; i < 8; i++) ids.push((await store.enqueue('c', { body: i })).id)
      const other = (await store.enqueue('o', { body: 'other' })).id
      await store.claim('c', 8)
      await store.claim('o', 1)
      // c: 0-2 delivered, 3 error, 4 filtered, 5 delivered (newer), 6 in flight, 7 queued again; o: delivered.
      for (const [i, status] of [[0, 'delivered'], [1, 'delivered'], [2, 'delivered'], [3, 'error'], [4, 'filtered']] as const) await store.complete(ids[i]!, status)
      await store.complete(other, 'delivered')
      t = 9000
      await store.complete(ids[5]!, 'delivered')
      await store.release([ids[7]!])
      const left = async () => (await store.list({ order: 'asc' })).map((m) => ids.indexOf(m.id))

      expect(await store.purge({ channel: 'c', keepNewest: 10 })).toBe(0)
      expect(await store.purge({ channel: 'c', statuses: ['error'], before: 500 })).toBe(0)
      // The newest 4 finished of c are 2, 3, 4, 5: 0 and 1 go, one per call with limit 1.
      expect(await store.purge({ channel: 'c', keepNewest: 4, limit: 1 })).toBe(1)
      expect(await left()).toEqual([1, 2, 3, 4, 5, 6, 7, -1])
      expect(await store.purge({ channel: 'c', keepNewest: 4, limit: 1 })).toBe(1)
      expect(await store.purge({ channel: 'c', keepNewest: 4 })).toBe(0)
      // Errors only, whatever their age; then the other statuses older than 5000.
      expect(await store.purge({ channel: 'c', statuses: ['error'] })).toBe(1)
      expect(await store.purge({ channel: 'c', statuses: ['delivered', 'filtered'], before: 5000 })).toBe(2)
      expect(await left()).toEqual([5, 6, 7, -1])
      expect(await store.purge({ channel: 'c', keepNewest: 0 })).toBe(1)
      expect(await left()).toEqual([6, 7, -1])
    })

    it('keeps component state across reopen', async () => {
      expect(await store.getState('c', 'source', 'cursor')).toBeUndefined()
      await store.setState('c', 'source', 'cursor', { page: 3 })
      await reopen()
      expect(await store.getState('c', 'source', 'cursor')).toEqual({ page: 3 })
    })

    it('swaps component state only when it still holds what the caller read (absent: undefined)', async () => {
      expect(await store.swapState('c', 'op', 'paused', { d: ['x'] }, { d: ['y'] })).toBe(false)
      expect(await store.getState('c', 'op', 'paused')).toBeUndefined()
      expect(await store.swapState('c', 'op', 'paused', undefined, { d: ['x'] })).toBe(true)
      expect(await store.swapState('c', 'op', 'paused', undefined, { d: ['y'] })).toBe(false)
      const read = await store.getState('c', 'op', 'paused')
      expect(await store.swapState('c', 'op', 'paused', read, { d: ['x', 'y'] })).toBe(true)
      // A second writer that read the same value before the first swapped: its swap fails.
      expect(await store.swapState('c', 'op', 'paused', read, { d: ['x', 'z'] })).toBe(false)
      await reopen()
      expect(await store.getState('c', 'op', 'paused')).toEqual({ d: ['x', 'y'] })
      expect(await store.swapState('c', 'op', 'paused', { d: ['x', 'y'] }, null)).toBe(true)
      expect(await store.swapState('c', 'op', 'paused', null, { d: [] })).toBe(true)
    })

    it('refuses a body JSON cannot write (a BigInt, a cycle) with ERR_STORE, without counting it as pending', async () => {
      const cyclic: Record<string, unknown> = { a: 1 }
      cyclic.self = cyclic
      await expect(store.enqueue('c', { body: { n: 10n } })).rejects.toMatchObject({ code: 'ERR_STORE', message: expect.stringContaining('not JSON') })
      await expect(store.enqueue('c', { body: cyclic })).rejects.toMatchObject({ code: 'ERR_STORE' })
      expect(store.pending('c')).toBe(0)
      await store.enqueue('c', { body: { n: 10 } })
      expect(store.pending('c')).toBe(1)
    })

    it('rejects operations after close with ERR_STORE', async () => {
      await store.close()
      const err = await store.enqueue('c', { body: 1 }).catch((e) => e)
      expect([err.code, err.message]).toEqual(['ERR_STORE', 'message store is closed'])
      const claimErr = await store.claim('c', 1).catch((e) => e)
      expect(claimErr.code).toBe('ERR_STORE')
      store = await factory.open()
    })

    it('claims follow arrival order through any mix of enqueues, claims, releases and completions (model check)', async () => {
      type Step = { kind: 'enqueue'; n: number } | { kind: 'claim'; n: number } | { kind: 'release'; pick: number } | { kind: 'complete'; pick: number }
      const step = fc.oneof(
        fc.record({ kind: fc.constant('enqueue' as const), n: fc.integer({ min: 1, max: 4 }) }),
        fc.record({ kind: fc.constant('claim' as const), n: fc.integer({ min: 1, max: 5 }) }),
        fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
        fc.record({ kind: fc.constant('complete' as const), pick: fc.nat() }),
      )
      let run = 0
      await fc.assert(fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), async (steps: Step[]) => {
        const channel = `m${run++}`
        const queued: number[] = [] // the model: bodies queued, in arrival order (a released one goes back to its place)
        const inFlight = new Map<number, string>()
        let next = 0
        for (const s of steps) {
          if (s.kind === 'enqueue') {
            const bodies = Array.from({ length: s.n }, () => next++)
            await Promise.all(bodies.map((b) => store.enqueue(channel, { body: b })))
            queued.push(...bodies)
          } else if (s.kind === 'claim') {
            const got = await store.claim(channel, s.n)
            const want = queued.splice(0, s.n)
            expect(got.map((m) => m.body)).toEqual(want)
            for (const m of got) inFlight.set(m.body as number, m.id)
          } else if (inFlight.size > 0) {
            const body = [...inFlight.keys()][s.pick % inFlight.size]!
            const id = inFlight.get(body)!
            inFlight.delete(body)
            if (s.kind === 'release') {
              await store.release([id])
              queued.push(body)
              queued.sort((x, y) => x - y)
            } else await store.complete(id, 'delivered')
          }
          expect(store.pending(channel)).toBe(queued.length + inFlight.size)
        }
      }), { numRuns: 40 })
    })
  })
}
