import type { EmitResult, Message, MessageInput } from '../component.ts'

/** Status of a whole message in the message log. */
export type MessageStatus = 'queued' | 'in-flight' | 'retrying' | 'delivered' | 'filtered' | 'error'

/** Status of one message (part) at one destination. */
export type DeliveryStatus = 'queued' | 'in-flight' | 'retrying' | 'delivered' | 'filtered' | 'error'

/** A message as the store holds it: the message plus its place in the queue. */
export interface StoredMessage extends Message {
  /** Monotonic position in the store; claim order. */
  readonly seq: number
  readonly status: MessageStatus
  readonly dedupeKey?: string
  readonly updatedAt: number
  /** Why the whole message is in error (a filter threw, a destination gave up). */
  readonly error?: string
  /** Of a filtered message, the filter that dropped it: `filters/2 "training" (match)` (its place in the channel, name and type). */
  readonly filteredBy?: string
  /** The message's order key (`options.orderBy`): messages with the same key are delivered in `seq` order. */
  readonly orderKey?: string
  /**
   * The retry of the message's filters that the runtime last scheduled (`recordFilterRetry`), kept
   * until the message finishes or is resubmitted: after a stop or a crash its filters go on from it.
   */
  readonly filterRetry?: FilterRetry
}

/** A message as `claim` returns it. */
export interface ClaimedMessage extends StoredMessage {
  /** The message's per-destination outcomes so far (empty for a message never attempted), read by the claim itself. */
  readonly deliveries: readonly DeliveryRecord[]
  /**
   * How many unclean stops (a crash, a SIGKILL, a lost lease) the message was under way at, when
   * any: it may be what stops the engine, so the runtime processes it alone. At MAX_INTERRUPTIONS
   * the store puts it in error instead of queueing it again.
   */
  readonly interruptions?: number
}

/**
 * How many unclean stops a message may be under way at: at the last, recovery puts it in error
 * (it is likely what kills the engine) instead of queueing it again for the next start.
 */
export const MAX_INTERRUPTIONS = 3

/** The log line of a message recovery gave up on (see MAX_INTERRUPTIONS). */
export const GAVE_UP_LOG = `message put in error: it was under way at ${MAX_INTERRUPTIONS} unclean stops of the engine and may be what stops it; resubmit it once the cause is found`

/** The error of a message recovery gave up on (see MAX_INTERRUPTIONS). */
export const INTERRUPTED_ERROR = `the engine stopped uncleanly (crash, kill or lost lease) ${MAX_INTERRUPTIONS} times while this message was under way; it may be what stops it, so it was not queued again. Find the cause (the log before each stop), then resubmit it`

/** A message the store put in error on its own, outside the runtime's processing of it. */
export interface StoreFailure {
  id: string
  channel: string
  /** `interrupted`: recovery gave up on it (see MAX_INTERRUPTIONS); `unreadable`: no key of the store keyring opens it. */
  cause: 'interrupted' | 'unreadable'
}

/** Outcome of one message part at one destination. */
export interface DeliveryRecord {
  destination: string
  /** Index of the part when a filter split the message; 0 otherwise. */
  part: number
  status: DeliveryStatus
  /** Every attempt ever made, resubmissions included (the attempt history is numbered from it). */
  attempts: number
  /**
   * The attempts the retry budget does not count: `maxAttempts` counts `attempts - budgetAttempts`.
   * A resubmission sets it to `attempts` (a new budget); each retry scheduled since sets it from
   * what the runtime charged (`DeliveryUpdate.budget`), so a breaker's probes and failures of the
   * credential are left out after a restart as before it. Absent: every attempt counts.
   */
  budgetAttempts?: number
  /**
   * Where `maxElapsedMs` counts from: `nextAttemptAt - budgetSince` is the time charged by the
   * scheduled retry. Each retry scheduled sets it from what the runtime charged (breaker pauses and
   * waits on a broken credential left out); after a resubmission, the next attempt's start until
   * then. Absent: the time from `firstAttemptAt` counts.
   */
  budgetSince?: number
  firstAttemptAt?: number
  lastAttemptAt?: number
  nextAttemptAt?: number
  lastError?: string
  responseStatus?: number
  responseExcerpt?: string
}

/** One delivery attempt, kept as history for `weir messages show`. */
export interface AttemptRecord {
  destination: string
  part: number
  /** Ordinal of the attempt for this destination and part, from 1. */
  attempt: number
  startedAt: number
  endedAt: number
  outcome: 'delivered' | 'retryable' | 'permanent'
  responseStatus?: number
  error?: string
  excerpt?: string
}

/** What the runtime writes after one attempt (or the final outcome) at one destination. */
export interface DeliveryUpdate {
  destination: string
  part: number
  status: DeliveryStatus
  /** The attempt just made, appended to the history and counted; omitted for status-only updates. */
  attempt?: Omit<AttemptRecord, 'destination' | 'part' | 'attempt'>
  nextAttemptAt?: number
  /**
   * With a retry scheduled (`nextAttemptAt`): the retry budget charged so far, kept so that a
   * restart goes on from it (the store sets `budgetAttempts` to the attempts after this update less
   * `charged`, `budgetSince` to `nextAttemptAt - elapsedMs`); omitted, they are left as they are
   * (but for the first attempt after a resubmission, which sets `budgetSince`).
   */
  budget?: BudgetCharged
}

/**
 * What a delivery's retry budget was charged: `charged` attempts of `maxAttempts` (not a breaker's
 * probes nor failures of the credential), `elapsedMs` of `maxElapsedMs` by the next attempt.
 */
export interface BudgetCharged { charged: number; elapsedMs: number }

/**
 * A retry of a message's filters, scheduled after a filter failed retryably: the retry budget charged
 * by the next attempt (`charged` attempts of `maxAttempts`; `elapsedMs` of `maxElapsedMs`, from the
 * first attempt to the next, the time the engine was down not counted) and when that attempt is due.
 */
export interface FilterRetry extends BudgetCharged { nextAttemptAt: number }

/** A message's latest failed attempt, as `latestErrors` gives it. */
export interface LatestError { id: string; destination: string; error: string }

export interface MessageDetail {
  message: StoredMessage
  deliveries: DeliveryRecord[]
  attempts: AttemptRecord[]
}

export interface ListFilter {
  channel?: string
  status?: MessageStatus
  /** Received at or after (epoch ms). */
  since?: number
  /** Received before (epoch ms, exclusive). */
  until?: number
  /**
   * Paging: only messages after this `seq` in the list's order (older than it when newest first,
   * newer when oldest first). Pass the last message's `seq` of one page to get the next.
   */
  after?: number
  /** Default 100. */
  limit?: number
  /** Newest first (default) or oldest first. */
  order?: 'desc' | 'asc'
  /** Only messages with this search key value (`options.searchKeys`): an index lookup. */
  key?: { name: string; value: string }
}

export type ChannelStats = Record<MessageStatus, number>

/** The statuses of a finished message, the only ones a purge touches. */
export type FinishedStatus = 'delivered' | 'filtered' | 'error'

/** Which finished messages a purge deletes: those matching every condition given. */
export interface PurgeTarget {
  /** Finished (last updated) before this time, epoch ms; omitted: whatever their age. */
  before?: number
  channel?: string
  /** Only messages in these statuses (default: every finished status). */
  statuses?: readonly FinishedStatus[]
  /** Keeps the newest (by arrival) this many finished messages of `channel` (of the store without one), whatever their status. */
  keepNewest?: number
  /** Deletes at most this many in this call (one batch: a background task's share); default all. */
  limit?: number
}

/** Finished messages of one channel in one status that a purge would delete (see `countPurgeable`). */
export interface PurgeableCount { channel: string; status: FinishedStatus; count: number }

export interface ResubmitTarget {
  ids?: string[]
  status?: MessageStatus
  channel?: string
  /**
   * Instead of `ids` and `status`: the messages of a confirmed preview, each with the `updatedAt` it
   * had then. The resubmit's own write transaction checks them (a row lock, or SQLite's one writer):
   * unless every one is still finished and unchanged since, it queues none and fails with a
   * `StoreError` whose `conflict` is set. So two confirmations of one preview at the same instant
   * (two processes, two engines of a cluster), which both passed their own check, resubmit once.
   */
  asPreviewed?: ReadonlyArray<Pick<StoredMessage, 'id' | 'updatedAt'>>
  /**
   * With `asPreviewed`, what a message changed since the preview does: `refuse` (the default) the
   * whole resubmit, as above; `skip` it, queueing the others still as previewed (the later batches
   * of a large set, once its first batch has decided which confirmation resubmits it).
   */
  changed?: 'refuse' | 'skip'
}

/** What `resubmit` would do to a set of messages, shown before an operator confirms it. */
export interface ResubmitPreview {
  /** Messages that would be queued again (finished ones; queued and in-flight ones are left alone). */
  messages: number
  /** Per destination, how many of them it would be sent again. */
  destinations: Record<string, number>
  /** Of those messages, how many went through no destination yet (a filter stopped them): every destination would get them. */
  undelivered: number
}

/** One operator action, as the audit log keeps it. */
export interface AuditEntry {
  /** Epoch ms. */
  at: number
  /** Who: the admin token's or session's name, the bearer token's subject, or the command line's user. */
  actor: string
  /** What: `pause`, `resume`, `resubmit`, `purge`… */
  action: string
  /** On what: a channel, `channel/destination`, message ids, a filter. */
  target: string
  /** How many messages it touched (0 for a pause). */
  count: number
}

/** How a message is stored besides its content. */
export interface EnqueueOptions {
  /** The order key computed from the message as received (`options.orderBy`). */
  orderKey?: string
  /** The message's search key values (`options.searchKeys`) by name, indexed in the same transaction as the message. */
  searchKeys?: Record<string, string[]>
  /** Store the message in error at once with this reason (its order key could not be computed): kept in the log, never delivered. */
  error?: string
  /**
   * The dedupe key in clear, when the message's `dedupeKey` is its keyed hash (`options.encryptContent`):
   * a message stored under either is a duplicate, so one stored before encryption was switched on is
   * still recognised. Only looked up (within `dedupeWindowMs` like the key itself), never stored.
   */
  clearDedupeKey?: string
}

/** How claims keep order among engines sharing one store (a single engine's store may ignore it: the runtime orders what it claims). */
export interface ClaimOptions {
  /** `key`: per order key (`options.orderBy`); `channel`: the whole channel (`concurrency: 1`); `none` (default). */
  order?: 'key' | 'channel' | 'none'
}

/** Named leaderships held under an engine's lease (a poller runs only where its leadership is held). */
export interface Leadership {
  /** Takes the leadership, or keeps it: true while this engine holds it. */
  lead(name: string): Promise<boolean>
  /** Takes or keeps each of `names` (as `lead` does each) in one round trip: those this engine holds now. */
  leadAll?(names: readonly string[]): Promise<Set<string>>
  resign(name: string): Promise<void>
  /** How long a leadership outlives its holder's last renewal (ms): a holder that could not renew for this long must stop. */
  readonly leaseMs: number
  /** The engine's claimed messages, held under the same lease: whether it can still vouch for each (see `ClaimLease`). */
  readonly claims?: ClaimLease
}

/**
 * Where an engine's claim on a message stands: `held` (its lease, confirmed by a heartbeat, has a
 * safety margin left by the engine's own clock: it may start a delivery), `unsure` (not confirmed
 * recently enough: it was frozen, starved or cut off; wait for `ClaimLease.renewal`), `lost` (the
 * lease ran out and another engine took the claim over: drop the message, write nothing for it).
 */
export type ClaimStanding = 'held' | 'unsure' | 'lost'

/**
 * An engine's hold on the messages it claimed from a store shared by a cluster. The engine asks
 * before it starts a message and before each delivery attempt: a claim whose lease it cannot vouch
 * for may be another engine's already, and delivering it again would repeat what that engine
 * delivered, out of order. A delivery already under way cannot be recalled; the store refuses what
 * it then writes for a claim that is no longer the engine's.
 */
export interface ClaimLease {
  /** Where the claim on message `id` stands now (synchronous: asked before every attempt). */
  standing(id: string): ClaimStanding
  /** Settles when the next heartbeat has its answer (renewed, failed, or the lease found lost); `cancel` stops waiting. */
  renewal(): { settled: Promise<void>; cancel(): void }
}

/**
 * The durable message store behind every channel: a queue per channel, the message log and the
 * components' persistent state. The runtime knows only this interface, so a server-backed store
 * (several engines on one database) can replace the embedded SQLite one; every implementation
 * passes the conformance suite in test/store/conformance.ts.
 *
 * Every write resolves only once it is durable (committed with the configured sync level).
 * Claims belong to the process that made them: a store opened as the queue's owner after a crash
 * returns whatever the dead process had claimed to the queue.
 */
export interface MessageStore {
  /** Stores a new queued message. A repeated `dedupeKey` in the same channel writes nothing and returns the first message's id with `duplicate: true`. */
  enqueue(channel: string, input: MessageInput, options?: EnqueueOptions): Promise<EmitResult>
  /** Marks up to `limit` queued messages of `channel` in-flight, oldest first (by `seq`), and returns them in that order with their delivery records. */
  claim(channel: string, limit: number, options?: ClaimOptions): Promise<ClaimedMessage[]>
  /** Records an attempt or status change at one destination; also moves the message to `retrying` when the update says so. */
  recordDelivery(id: string, update: DeliveryUpdate): Promise<void>
  /**
   * Stores the retry of a claimed message's filters (one failed retryably), in place of the one
   * stored before, so that after a stop or a crash the runtime waits for `nextAttemptAt` and goes on
   * with the budget charged. The message stays in flight; finishing it or a resubmission clears it,
   * and so does `null` (its filters passed).
   */
  recordFilterRetry(id: string, retry: FilterRetry | null): Promise<void>
  /**
   * Finishes a claimed message: `delivered`, `filtered` or `error`, with the given final delivery
   * updates; `error`: why it is in error, or for `filtered` which filter dropped it (read back as
   * `filteredBy`, kept where the reason of an error is).
   */
  complete(id: string, status: 'delivered' | 'filtered' | 'error', updates?: DeliveryUpdate[], error?: string): Promise<void>
  /** Puts a message in error as a whole (a filter threw, the message cannot be processed). */
  fail(id: string, error: string): Promise<void>
  /** Returns claimed messages to the queue (graceful stop, or a worker that gives up its claim). Keeps per-destination outcomes. */
  release(ids: string[]): Promise<void>
  /**
   * Queues messages again; destinations that already got a message are skipped unless none is left
   * to deliver. Returns the ids requeued. Each one requeued gets a later `updatedAt` than it had,
   * whatever the clock, so a preview pinned to it (`asPreviewed`) is good for one resubmit.
   */
  resubmit(target: ResubmitTarget): Promise<string[]>
  /** What `resubmit({ ids })` would do, without doing it: for the preview an operator confirms. */
  resubmitPreview(ids: readonly string[]): Promise<ResubmitPreview>
  /** Appends to the audit log of operator actions (kept until purged with the messages' retention is not implied: it is never purged by retention). */
  audit(entry: AuditEntry): Promise<void>
  /** The audit log, newest first. */
  auditLog(options?: { limit?: number; before?: number }): Promise<AuditEntry[]>
  /**
   * Deletes the finished messages (delivered, filtered, error) `target` names, oldest first, with
   * their deliveries and attempt history, in batches each committed on its own so deliveries go on
   * between them; returns how many. Queued and in-flight messages are never touched. A purged
   * message's dedupe key is forgotten: the same key is accepted again as new. An embedded store
   * gives the freed space back to the file system and leaves no copy of the purged content in its files.
   */
  purge(target: PurgeTarget): Promise<number>
  /**
   * How many finished messages a purge of `target` would delete now, per channel and status (none
   * listed with no message): one query on the messages' statuses, no body read. What `weir messages
   * purge` previews.
   */
  countPurgeable(target: Pick<PurgeTarget, 'before' | 'channel' | 'statuses'>): Promise<PurgeableCount[]>
  get(id: string): Promise<MessageDetail | undefined>
  list(filter?: ListFilter): Promise<StoredMessage[]>
  /** Counts by status, for one channel or all. */
  stats(channel?: string): Promise<ChannelStats>
  /** The channels with at least one message in the log, sorted by name (for "no such channel; channels there: …"). Optional: a store without it is not asked. */
  channels?(): Promise<string[]>
  /**
   * The search key names (`options.searchKeys`) that at least one message in the log, of any
   * channel, is stored with, sorted (for "no message has search key …; search keys there: …").
   * Optional: a store without it is not asked.
   */
  searchKeyNames?(): Promise<string[]>
  /**
   * For each of `ids` that has a failed attempt, the destination and error of its latest one (the
   * delivery with the latest attempt that recorded an error): one read for a page of messages.
   * Optional: a store without it is not asked.
   */
  latestErrors?(ids: readonly string[]): Promise<LatestError[]>
  /** Messages of `channel` not yet finished (queued, in-flight, retrying), including enqueues not yet committed. Synchronous: checked on every emit. */
  pending(channel: string): number
  /** The bytes the store's data takes (SQLite: the database's pages in use, and its WAL beyond its working size; PostgreSQL: the database), for limits and metrics. */
  size(): Promise<number>
  /** When the oldest unfinished (queued, in-flight, retrying) message of each channel was received (epoch ms), for one channel or all; channels with none are absent. */
  oldestPending(channel?: string): Promise<Record<string, number>>
  /**
   * How many messages of `channel` are in error and went to error at or after `since` (epoch ms,
   * their last status change), whichever engine put them there: for the `messages-failing` alert.
   * A resubmitted message no longer counts (until it goes to error again). One indexed query.
   * Optional: a store without it is counted from what the running engine sees.
   */
  countErrors?(channel: string, since: number): Promise<number>
  /** Re-reads `pending` counts (of one channel or all) and the queue itself, after another process resubmitted messages. */
  refreshPending(channel?: string): Promise<void>
  /** Leaderships under the engine's lease, for sources that must run on one engine at a time (stores shared by a cluster only). */
  readonly leadership?: Leadership
  /**
   * Tells `listener` of each message of `channel` the store puts in error on its own (recovery gave
   * up on it, or no key opens it), so that the running channel counts it: first those it did before
   * anyone listened (a store gives up on a crashed run's messages as it opens), then as it does them.
   * Each is told once: to the listeners of the moment, or kept for the next one. Returns the
   * unsubscribe. Optional: a store without it puts no message in error on its own.
   */
  watchFailures?(channel: string, listener: (f: StoreFailure) => void): () => void
  getState<T = unknown>(channel: string, component: string, key: string): Promise<T | undefined>
  setState(channel: string, component: string, key: string, value: unknown): Promise<void>
  /**
   * Sets a state to `value` only if it still is `expected` (as `getState` returned it; `undefined`:
   * absent), in one statement: false when another writer (another engine of a cluster) changed it
   * first. For a change that depends on the value before it: read, change, swap, and read again on false.
   */
  swapState(channel: string, component: string, key: string, expected: unknown, value: unknown): Promise<boolean>
  close(): Promise<void>
}

export const MESSAGE_STATUSES: readonly MessageStatus[] = ['queued', 'in-flight', 'retrying', 'delivered', 'filtered', 'error']
