import type { Destination, Message } from '../../shared/component.ts'
import type { LoadedDestination } from '../../shared/config/types.ts'
import { redactedExcerpt } from '../../shared/http/excerpt.ts'
import { StoreError } from '../../shared/store/errors.ts'
import type { BudgetCharged, ClaimLease, ClaimStanding, DeliveryRecord, DeliveryUpdate } from '../../shared/store/types.ts'
import { backoffDelay } from './backoff.ts'
import type { CircuitBreaker } from './breaker.ts'
import { exhausted } from './budget.ts'
import type { PauseGate } from './pause.ts'
import { backoff, codeOf, logFailure, shutdownError, untilAborted, type FailureFacts, type RunContext } from './context.ts'
import { describeFailure } from '../../shared/failure.ts'
import { kindOf } from '../../shared/config/registry.ts'
import { originOf } from './contract.ts'
import { EXCERPT_MAX, classify, responseOf } from './failures.ts'

export interface DestinationSlot {
  loaded: LoadedDestination
  instance: Destination
  breaker: CircuitBreaker
  /** Paused by an operator: deliveries wait here (their messages hold their keys; the wait is not charged to the retry budget). */
  hold: PauseGate
}

/** A delivery's final update, with the reason when it ended in error (and what of it a log line may say). */
export type DeliveryOutcome = DeliveryUpdate & { error?: string; facts?: FailureFacts }

/** One delivery: a message part to one destination, retried per the destination's policy and breaker. */
export interface DeliveryJob {
  messageId: string
  part: Message
  partIndex: number
  slot: DestinationSlot
  /**
   * What earlier runs recorded of this delivery. When they scheduled a retry (it was released by a
   * stop or a crash meanwhile), the retry waits its turn and the budget goes on from what they
   * spent; a resubmission clears the schedule and starts a new budget (`budgetAttempts`).
   */
  earlier?: Pick<DeliveryRecord, 'attempts' | 'budgetAttempts' | 'budgetSince' | 'firstAttemptAt' | 'nextAttemptAt' | 'lastError'> | undefined
}

/**
 * The retry budget earlier runs spent on a delivery whose retry they scheduled: what they charged,
 * as they stored it with the schedule (`DeliveryUpdate.budget`: neither a breaker's probes and
 * pauses nor failures of the credential and the waits after them), by the scheduled retry (the time
 * the engine was down after it is not charged). Since a resubmission, only what was charged after
 * it; a record written before the runtime stored its budget counts every attempt since the first.
 * A message that crashes the engine at each attempt is not left to this budget (an attempt cut
 * short by a crash is not recorded): the store puts it in error after MAX_INTERRUPTIONS unclean
 * stops.
 */
function spentBefore(e: DeliveryJob['earlier']): { attempts: number; elapsedMs: number } {
  if (e?.nextAttemptAt === undefined) return { attempts: 0, elapsedMs: 0 }
  const since = e.budgetAttempts === undefined ? e.firstAttemptAt : e.budgetSince
  return {
    attempts: Math.max(0, e.attempts - (e.budgetAttempts ?? 0)),
    elapsedMs: since === undefined ? 0 : Math.max(0, e.nextAttemptAt - since),
  }
}

/**
 * The end of a delivery whose earlier runs left its budget spent (`why`, from `exhausted`): an
 * attempt cut off by a stop is recorded with no budget check, so a message cut off at every stop
 * would otherwise be attempted once per start, past `maxAttempts`. The destination is not called.
 * Checked only when the last attempt was cut off (see deliverWithRetry).
 */
function spentEarlier(job: DeliveryJob, why: string, attempts: number): DeliveryOutcome {
  const d = job.slot.loaded
  const last = job.earlier?.lastError
  return { destination: d.name, part: job.partIndex, status: 'error', error: `${d.name}: gave up after ${why}${last ? `: ${last}` : ''}`, facts: { destination: d.name, attempt: attempts } }
}

/**
 * Delivers until the destination takes the part, the failure is permanent, or the retry budget is
 * spent. Attempts made while the breaker is closed count against `maxAttempts`; time paused by the
 * breaker (or waiting for a retry carried over from an earlier run) does not count against
 * `maxElapsedMs`, so an outage pauses the channel instead of sending every message to error. A
 * failure of the credential (`classify`'s `credential`) is charged neither: the message waits for
 * the credential to be fixed, whatever `maxAttempts` and the breaker's threshold are. What
 * earlier runs charged before a stop or crash counts (`spentBefore`): a delivery they left with its
 * budget spent ends in error before any attempt (`spentEarlier`). Rejects with ERR_SHUTDOWN when
 * the channel stops meanwhile (the message goes back to the queue).
 */
export async function deliverWithRetry(rc: RunContext, job: DeliveryJob): Promise<DeliveryOutcome> {
  const { slot, partIndex } = job
  const d = slot.loaded
  const retryKey = `${job.part.id}:${d.name}`
  const started = rc.now()
  const notBefore = job.earlier?.nextAttemptAt
  const spent = spentBefore(job.earlier)
  let charged = spent.attempts
  /** Failures of the credential in this run: not charged, but they lengthen the backoff like any other. */
  let credentialFailures = 0
  let paused = 0
  /** The time charged to `maxElapsedMs` so far, this run's and the earlier runs'. */
  const elapsed = () => spent.elapsedMs + rc.now() - started - paused
  // Only after a cut-off: any other failure had its budget checked when it ended.
  const gone = job.earlier?.lastError === CUT_OFF ? exhausted(d.retry, charged, spent.elapsedMs, 0) : undefined
  if (gone) return spentEarlier(job, gone, charged)
  try {
    if (notBefore !== undefined && notBefore > rc.now()) {
      rc.retrying.add(retryKey)
      rc.log.debug({ message: job.messageId, destination: d.name, delayMs: notBefore - rc.now() }, 'waiting for the retry scheduled before the restart')
      const from = rc.now()
      // A backoff like any other: the message holds its key but not a place among `concurrency`.
      await backoff(rc, job.messageId, notBefore - from)
      paused += rc.now() - from // the wait carried over from the earlier run is not this run's elapsed budget
    }
    for (;;) {
      const waitStart = rc.now()
      await slot.hold.wait(rc.stopping)
      const { probe } = await slot.breaker.acquire(rc.stopping)
      // No attempt on a claim this engine cannot vouch for: another engine may have taken it over.
      const held = claimHeld(rc, job.messageId)
      if (held !== true) {
        try {
          if (!(await held)) throw claimLost(job.messageId)
        } catch (e) {
          slot.breaker.abandon(probe)
          throw e
        }
      }
      paused += rc.now() - waitStart
      rc.retrying.delete(retryKey)
      const startedAt = rc.now()
      const outcome = await attempt(rc, job, startedAt, probe, () => ({ charged, elapsedMs: elapsed() }))
      if (outcome.done) return outcome.done
      const { failure, error, attemptRecord, facts } = outcome
      // A failure of the credential is not the message's: like a probe and an open breaker's pause,
      // it spends none of the budget, neither an attempt nor the time until the next one.
      const owed = !probe && failure.credential !== true
      if (owed) charged++
      else if (failure.credential) {
        credentialFailures++
        paused += rc.now() - startedAt
      }
      const delay = backoffDelay(Math.max(1, charged + credentialFailures), d.retry, rc.random, failure.retryAfterMs)
      const why = failure.credential ? undefined : exhausted(d.retry, charged, elapsed(), delay)
      if (why) {
        return { destination: d.name, part: partIndex, status: 'error', attempt: { ...attemptRecord, outcome: 'retryable' }, error: `${d.name}: gave up after ${why}: ${error}`, facts }
      }
      rc.retrying.add(retryKey)
      // Read once: the budget stored and the wait below must agree, though the breaker may change while the record is written.
      const closed = slot.breaker.state === 'closed'
      // The budget by the retry: the backoff is charged as the wait below charges it (an open breaker's pause is not).
      const budget = { charged, elapsedMs: elapsed() + (owed && closed ? delay : 0) }
      await rc.store.recordDelivery(job.messageId, { destination: d.name, part: partIndex, status: 'retrying', nextAttemptAt: attemptRecord.endedAt + delay, budget, attempt: { ...attemptRecord, outcome: 'retryable' } })
      logFailure(rc, 'debug', 'delivery failed; retrying', { message: job.messageId, destination: d.name, attempt: charged, delayMs: delay }, error, facts)
      // An open breaker's pause (never shorter than this failure's Retry-After) replaces the backoff.
      if (closed) {
        const from = rc.now()
        await backoff(rc, job.messageId, delay)
        if (failure.credential) paused += rc.now() - from
      }
    }
  } catch (e) {
    if (rc.stopping.aborted) throw shutdownError(rc.name)
    throw e
  } finally {
    rc.retrying.delete(retryKey)
  }
}

/** Where this engine's claim on message `id` stands (see `ClaimLease`); `held` on a store not shared by a cluster. */
export const claimStanding = (rc: RunContext, id: string): ClaimStanding => rc.store.leadership?.claims?.standing(id) ?? 'held'

/**
 * Whether this engine can vouch for its claim on message `id` (see `ClaimLease`): true while the
 * claim is held, false once another engine took it over (this engine's lease ran out while it was
 * frozen, starved or cut off from the database). Answers at once, with no promise, when the standing
 * is known (always, on a store not shared by a cluster), so a caller awaits only what is not `true`:
 * `if (held !== true && !(await held))`. While unsure it waits for the heartbeat's answer; rejects
 * with ERR_SHUTDOWN if the channel stops first.
 */
export function claimHeld(rc: RunContext, id: string): boolean | Promise<boolean> {
  const claims = rc.store.leadership?.claims
  if (!claims) return true
  const standing = claims.standing(id)
  return standing === 'unsure' ? heartbeatAnswer(rc, claims, id) : standing === 'held'
}

/** Waits for heartbeats until the claim on message `id` is no longer unsure (see claimHeld). */
async function heartbeatAnswer(rc: RunContext, claims: ClaimLease, id: string): Promise<boolean> {
  for (;;) {
    if (rc.stopping.aborted) throw shutdownError(rc.name)
    rc.log.debug({ message: id }, 'this engine\'s lease was not confirmed recently enough to vouch for its claim: waiting for the heartbeat before starting')
    const next = claims.renewal()
    const cancel = () => next.cancel()
    rc.stopping.addEventListener('abort', cancel, { once: true })
    await next.settled.finally(() => rc.stopping.removeEventListener('abort', cancel))
    const standing = claims.standing(id)
    if (standing !== 'unsure') return standing === 'held'
  }
}

/** The failure of a delivery whose claim another engine took over: its message is dropped here, nothing written for it. */
const claimLost = (id: string) => new StoreError(`message ${id}: another engine took this engine's claim over (its lease ran out); left to that engine`)

/** Destinations already warned that their deliver() resolved to something else than a `DeliveryResult`. */
const warnedResults = new WeakSet<DestinationSlot>()

/**
 * What of deliver()'s result the attempt records: its `status` (a number), `excerpt` and `note` (strings).
 * Anything else (`'ok'`, a status as a string) is no reason to doubt the delivery, which went
 * through: the message stays delivered, and the destination's author is warned once.
 */
function deliveryResult(rc: RunContext, slot: DestinationSlot, result: unknown): { status?: number; excerpt?: string; note?: string } {
  if (result === undefined || result === null) return {}
  const r = result as { status?: unknown; excerpt?: unknown; note?: unknown }
  const fields = typeof result === 'object' && !Array.isArray(result)
    ? (['status', 'excerpt', 'note'] as const).filter((k) => r[k] !== undefined && typeof r[k] !== (k === 'status' ? 'number' : 'string'))
    : undefined
  if (fields?.length !== 0 && !warnedResults.has(slot)) {
    warnedResults.add(slot)
    const got = fields ? `an object whose ${fields.map((k) => `${k} is ${kindOf(r[k])}`).join(' and ')}` : kindOf(result)
    rc.log.warn({ destination: slot.loaded.name }, `destinations/${slot.loaded.name}: deliver() resolved to ${got}; expected undefined or { status?, excerpt?, note? }`)
  }
  if (!fields) return {}
  return {
    ...(typeof r.status === 'number' ? { status: r.status } : {}),
    ...(typeof r.excerpt === 'string' ? { excerpt: r.excerpt } : {}),
    ...(typeof r.note === 'string' ? { note: r.note } : {}),
  }
}

type AttemptResult =
  | { done: DeliveryOutcome }
  | { done?: undefined; failure: ReturnType<typeof classify>; error: string; facts: FailureFacts; attemptRecord: { startedAt: number; endedAt: number; responseStatus?: number | undefined; error: string; excerpt?: string | undefined } }

/**
 * An attempt the engine's stop cut off (it outlived `shutdownTimeoutMs`): the destination may have
 * received the message, and will again after the restart, so the history says so. Recorded as
 * retrying now (the message goes back to the queue at once); counted against the retry budget, a
 * probe too: one attempt more than charged `before` it, and the time it took. A store that cannot
 * take it (it is what is failing) loses only this line of history.
 */
const CUT_OFF = 'cut off by the engine stopping (shutdownTimeoutMs): the destination may have received it; sent again after the restart'

async function recordInterrupted(rc: RunContext, job: DeliveryJob, startedAt: number, before: BudgetCharged): Promise<void> {
  const d = job.slot.loaded
  const endedAt = rc.now()
  rc.observer.attempt?.(rc.name, d.name, 'retryable', endedAt - startedAt)
  const budget = { charged: before.charged + 1, elapsedMs: before.elapsedMs }
  await rc.store.recordDelivery(job.messageId, { destination: d.name, part: job.partIndex, status: 'retrying', nextAttemptAt: endedAt, budget, attempt: { startedAt, endedAt, outcome: 'retryable', error: CUT_OFF } })
    .catch((e: unknown) => rc.log.debug({ message: job.messageId, err: e }, 'could not record the attempt cut off by the stop'))
}

/** An attempt at the destination, with the breaker told how it went; `budget` tells what the retry budget was charged before it, as of now. */
async function attempt(rc: RunContext, job: DeliveryJob, startedAt: number, probe: boolean, budget: () => BudgetCharged): Promise<AttemptResult> {
  const { slot, partIndex } = job
  const d = slot.loaded
  try {
    // A destination that ignores the signal is cut off at the deadline all the same (see untilAborted).
    const result = deliveryResult(rc, slot, await untilAborted(rc.aborting, slot.instance.deliver(job.part, { signal: rc.aborting, idempotencyKey: `${job.part.id}:${d.name}` })))
    slot.breaker.success()
    rc.observer.attempt?.(rc.name, d.name, 'delivered', rc.now() - startedAt)
    return {
      done: {
        destination: d.name, part: partIndex, status: 'delivered',
        attempt: {
          startedAt, endedAt: rc.now(), outcome: 'delivered',
          ...(result.status !== undefined ? { responseStatus: result.status } : {}),
          ...(result.excerpt !== undefined ? { excerpt: redactedExcerpt(result.excerpt, EXCERPT_MAX) } : {}),
          // A delivered attempt with a note keeps it where a failed one keeps its error: the history shows it.
          ...(result.note !== undefined ? { error: describeFailure(new Error(result.note)) } : {}),
        },
      },
    }
  } catch (e) {
    if (rc.aborting.aborted) {
      slot.breaker.abandon(probe)
      await recordInterrupted(rc, job, startedAt, budget())
      throw shutdownError(rc.name)
    }
    const resp = responseOf(e)
    const error = describeFailure(e, originOf(slot.instance)?.dir)
    const attemptRecord = { startedAt, endedAt: rc.now(), responseStatus: resp.status, error, excerpt: resp.excerpt }
    const facts = { code: codeOf(e), destination: d.name, status: resp.status, attempt: budget().charged + 1 }
    const failure = classify(e)
    rc.observer.attempt?.(rc.name, d.name, failure.retryable ? 'retryable' : 'permanent', attemptRecord.endedAt - startedAt, { status: facts.status, code: facts.code })
    if (!failure.retryable) {
      slot.breaker.success() // the API answered; it is the message that is wrong
      return { done: { destination: d.name, part: partIndex, status: 'error', attempt: { ...attemptRecord, outcome: 'permanent' }, error: `${d.name}: ${error}`, facts } }
    }
    slot.breaker.failure(probe, failure.retryAfterMs)
    return { failure, error, attemptRecord, facts }
  }
}
