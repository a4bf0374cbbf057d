import type { Filter, Message } from '../../shared/component.ts'
import type { RetryPolicy } from '../../shared/config/types.ts'
import type { ClaimedMessage, DeliveryRecord, StoredMessage } from '../../shared/store/types.ts'
import { backoffDelay } from './backoff.ts'
import { exhausted } from './budget.ts'
import { backoff, codeOf, logFailure, shutdownError, untilAborted, type FailureFacts, type RunContext } from './context.ts'
import { deliverWithRetry, type DeliveryOutcome, type DestinationSlot } from './delivery.ts'
import { describeFailure } from '../../shared/failure.ts'
import { filterOutput, originOf } from './contract.ts'
import { classify } from './failures.ts'

/** How a message left the channel; in error, with the reason and what of it a log line may say (`facts`, one per failed filter or delivery). */
export type Ending = { status: 'delivered' | 'filtered' } | { status: 'error'; error: string; facts: FailureFacts[] }

export interface Pipeline {
  filters: readonly Filter[]
  destinations: readonly DestinationSlot[]
  /** Retry budget of filters: the first destination's policy (filters feed it), or the schema defaults. */
  filterRetry: RetryPolicy
}

const toMessage = (m: StoredMessage): Message => ({ id: m.id, channel: m.channel, body: m.body, contentType: m.contentType, attributes: m.attributes, receivedAt: m.receivedAt })

/**
 * Takes one claimed message through the filters and to every destination, and records how it
 * ended. Destinations that already have it (an earlier run delivered there) are skipped. Rejects
 * only when the message must go back to the queue (the channel is stopping, the store failed).
 */
export async function processMessage(rc: RunContext, p: Pipeline, m: ClaimedMessage): Promise<Ending> {
  const parts = await runFilters(rc, p, m)
  if ('reason' in parts) {
    await rc.store.fail(m.id, parts.reason)
    return { status: 'error', error: parts.reason, facts: [parts.facts] }
  }
  if ('droppedBy' in parts) {
    await rc.store.complete(m.id, 'filtered', p.destinations.map((s) => ({ destination: s.loaded.name, part: 0, status: 'filtered' })), filterLabel(p.filters, parts.droppedBy))
    return { status: 'filtered' }
  }
  const finals = await deliverParts(rc, p, m, parts)
  const failed = finals.filter((f) => f.status === 'error')
  const error = failed.length ? failed.map((f) => f.error!).join('; ') : undefined
  await rc.store.complete(m.id, error ? 'error' : 'delivered', finals.map(({ error: _e, facts: _f, ...u }) => u), error)
  return error ? { status: 'error', error, facts: failed.map((f) => f.facts ?? { destination: f.destination }) } : { status: 'delivered' }
}

/** The filter that dropped a message (returned none of it), as the message log keeps it: `filters/2 "training" (match)`. */
function filterLabel(filters: readonly Filter[], index: number): string {
  const origin = originOf(filters[index]!)
  return `filters/${index}${origin?.name !== undefined ? ` "${origin.name}"` : ''}${origin ? ` (${origin.type})` : ''}`
}

/** A message no filter kept a part of: which one returned none (the last part dropped, for a split one). */
interface Dropped { droppedBy: number }

/**
 * Runs the filters in order; returns the message's parts (several: split) or the filter that dropped it, or the
 * reason it goes to error (and what of it a log line may say). A retryable failure (per `classify`) runs the filters again after the
 * backoff of `filterRetry`, holding the message's key meanwhile, until its budget (attempts and
 * elapsed time, decided as for a destination) is spent. Each retry is stored with the budget it
 * charged (`recordFilterRetry`), so that after a stop or a crash the filters go on from it: the
 * retry scheduled waits its turn, and the attempts and time charged before count (the time the
 * engine was down does not). An attempt cut short by a crash is not charged: the message was in
 * flight, so the store counts it as under way at an unclean stop (MAX_INTERRUPTIONS), as before.
 * Filters that pass after a retry clear what was stored; finishing the message clears it too.
 */
async function runFilters(rc: RunContext, p: Pipeline, m: ClaimedMessage): Promise<Message[] | Dropped | { reason: string; facts: FailureFacts }> {
  const spent = m.filterRetry ?? { charged: 0, elapsedMs: 0, nextAttemptAt: 0 }
  await waitScheduled(rc, m.id, spent.nextAttemptAt)
  const started = rc.now()
  for (let attempt = spent.charged + 1; ; attempt++) {
    const r = await filterOnce(p.filters, toMessage(m), rc.aborting)
    if (Array.isArray(r)) {
      // Passed after retries: the budget is spent no more (a later run of the filters, after a crash during delivery, starts afresh).
      if (attempt > 1) await rc.store.recordFilterRetry(m.id, null)
      return r
    }
    if ('droppedBy' in r) return r
    // Cut off by the stop (or failed because of it): back to the queue, never to error, no retry logged.
    if (rc.aborting.aborted) throw shutdownError(rc.name)
    const origin = originOf(p.filters[r.index]!)
    // The filter's place, and its name when the channel file gives it one: `filters/1 "normalize"`.
    const at = `filters/${r.index}${origin?.name !== undefined ? ` "${origin.name}"` : ''}`
    if ('wrong' in r) return { reason: `${at}${origin ? ` (${origin.type})` : ''}: ${r.wrong}`, facts: { filter: r.index, attempt } }
    const described = describeFailure(r.error, origin?.dir)
    const reason = `${at}: ${described}`
    const facts = { code: codeOf(r.error), filter: r.index, attempt }
    const failure = classify(r.error)
    if (!failure.retryable) return { reason, facts }
    const delayMs = backoffDelay(attempt, p.filterRetry, rc.random, failure.retryAfterMs)
    const now = rc.now()
    /** The time charged to `maxElapsedMs`: the earlier runs' by the retry they scheduled, and this run's since. */
    const elapsedMs = spent.elapsedMs + now - started
    const why = exhausted(p.filterRetry, attempt, elapsedMs, delayMs)
    if (why) return { reason: `${at}: gave up after ${why}: ${described}`, facts }
    logFailure(rc, 'warn', 'filter failed; retrying', { message: m.id, attempt, delayMs }, reason, facts)
    await rc.store.recordFilterRetry(m.id, { charged: attempt, elapsedMs: elapsedMs + delayMs, nextAttemptAt: now + delayMs })
    await backoff(rc, m.id, delayMs)
  }
}

/**
 * Waits for the filters' retry an earlier run scheduled (due at `at`) before a stop or a crash: a
 * backoff like any other (the message holds its key, not a place among `concurrency`), and not
 * charged again, as the stored budget runs to it already.
 */
async function waitScheduled(rc: RunContext, id: string, at: number): Promise<void> {
  const ms = at - rc.now()
  if (ms <= 0) return
  rc.log.debug({ message: id, delayMs: ms }, 'waiting for the filters\' retry scheduled before the restart')
  await backoff(rc, id, ms)
}

/**
 * One pass through the filters: the parts, the filter after which none is left (`droppedBy`), or the filter that threw (`error`) or returned what is not
 * a message, null or an array of messages (`wrong`, a permanent failure: see `filterOutput`). A
 * filter still running when `aborting` fires (the end of `shutdownTimeoutMs`) is cut off: filters
 * get no signal, and one that never settles must not keep its message in flight past the stop.
 */
async function filterOnce(filters: readonly Filter[], first: Message, aborting: AbortSignal): Promise<Message[] | Dropped | { index: number; error: unknown } | { index: number; wrong: string }> {
  let parts = [first]
  for (const [index, f] of filters.entries()) {
    const out: Message[] = []
    for (const part of parts) {
      let r: unknown
      try {
        r = await untilAborted(aborting, f.process(part))
      } catch (error) {
        return { index, error }
      }
      const got = filterOutput(r, part)
      if (!Array.isArray(got)) return { index, wrong: got.wrong }
      out.push(...got)
    }
    if (out.length === 0) return { droppedBy: index }
    parts = out
  }
  return parts
}

/**
 * Delivers every part to every destination (destinations in parallel, a destination's parts in
 * order). With several deliveries per message, each success is recorded at once so a crash does
 * not resend it, and each delivery given up on at once so the message log shows it; the final
 * outcomes are returned for `complete`.
 */
async function deliverParts(rc: RunContext, p: Pipeline, m: ClaimedMessage, filtered: Message[]): Promise<DeliveryOutcome[]> {
  const done = new Set(m.deliveries.filter((x) => x.status === 'delivered').map((x) => `${x.destination}/${x.part}`))
  const earlier = new Map(m.deliveries.filter((x: DeliveryRecord) => x.status !== 'delivered').map((x) => [`${x.destination}/${x.part}`, x]))
  // A split message's parts get ids of their own, stable as long as the filters are deterministic.
  const parts = filtered.map((part, i) => ({ ...part, id: filtered.length > 1 ? `${m.id}.${i}` : m.id, channel: rc.name }))
  const recordEach = parts.length * p.destinations.length > 1
  // The message waits out a backoff as a whole only once every destination still delivering it waits.
  let running = p.destinations.length
  if (running > 1) rc.backingOff.running(m.id, running)
  const settled = await Promise.allSettled(p.destinations.map(async (slot) => {
    const finals: DeliveryOutcome[] = []
    try {
      for (const [i, part] of parts.entries()) {
        const key = `${slot.loaded.name}/${i}`
        if (done.has(key)) continue
        const r = await deliverWithRetry(rc, { messageId: m.id, part, partIndex: i, slot, earlier: earlier.get(key) })
        if (!recordEach) finals.push(r)
        else if (r.status === 'delivered') await rc.store.recordDelivery(m.id, r)
        else {
          // Given up: said at once, not only once the other destinations are done (one may wait for a
          // broken credential for hours); `complete` then sets the status again, without the attempt.
          const { error: _e, facts: _f, ...update } = r
          await rc.store.recordDelivery(m.id, update)
          const { attempt: _a, ...settled } = r
          finals.push(settled)
        }
      }
    } finally {
      if (p.destinations.length > 1) rc.backingOff.running(m.id, --running)
    }
    return finals
  }))
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  const finals = settled.flatMap((r) => (r.status === 'fulfilled' ? r.value : []))
  if (failed) {
    // Keep what did get through (so a restart does not resend it), then let the message be released.
    for (const { error: _e, ...u } of finals.filter((f) => f.status === 'delivered')) await rc.store.recordDelivery(m.id, u).catch(() => {})
    throw failed.reason
  }
  return finals
}
