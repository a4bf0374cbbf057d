import { existsSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import DatabaseCtor from 'better-sqlite3'
import type { EmitResult, MessageInput } from '../../component.ts'
import type { Logger } from '../../log/index.ts'
import { createOwnerOnlyFile, secureDataDir, tightenFile } from '../data-dir.ts'
import { StoreError } from '../errors.ts'
import { newMessageId } from '../id.ts'
import {
  GAVE_UP_LOG, INTERRUPTED_ERROR, MAX_INTERRUPTIONS,
  type ChannelStats, type ClaimedMessage, type FinishedStatus, type DeliveryRecord, type DeliveryUpdate, type EnqueueOptions, type FilterRetry, type ListFilter,
  type LatestError, type MessageDetail, type MessageStatus, type MessageStore, type PurgeTarget, type PurgeableCount, type ResubmitTarget, type ResubmitPreview, type AuditEntry, type StoredMessage, type StoreFailure,
} from '../types.ts'
import { StoreFailures } from '../failures.ts'
import { previewedSet, refuseChanged } from '../previewed.ts'
import { acquireLock, releaseLock } from './lock.ts'
import { migrate, useIncrementalVacuum } from './migrations.ts'
import { ChannelQueues } from '../queues.ts'
import { attemptOf, countByStatus, defined, deliveryOf, jsonOf, rowToMessage, type MessageRow } from '../rows.ts'
import { WriterClient } from './writer.ts'

export interface SqliteStoreOptions {
  /** Directory holding `weir.db` (one database per data directory). Default `./data`. */
  dataDir?: string
  /**
   * `FULL` (default): a commit survives power loss. `NORMAL`: in WAL mode a commit survives a
   * process crash but the last transactions may roll back on power loss.
   */
  synchronous?: 'FULL' | 'NORMAL'
  /**
   * Open as the engine that works the queues (default true): takes the data directory's lock and
   * returns messages a crashed run left claimed to the queue. The `weir messages` commands pass
   * false so they can read and resubmit beside a running engine.
   */
  owner?: boolean
  /** Create the data directory and database when missing (default true). */
  create?: boolean
  /**
   * Refuse (ERR_STORE) an existing data directory group or others may read, as `weir run` and
   * `weir messages` do (default false). A directory the store creates is mode 0700, its files 0600.
   */
  refuseOpenDataDir?: boolean
  /** The command-line flag that accepts an open data directory, named in the refusal (`weir run`'s `--allow-open-data-dir`). */
  acceptOpenDataDirFlag?: string
  now?: () => number
  /** Told how many messages an unclean stop left claimed (returned to the queue on open). */
  log?: Pick<Logger, 'warn' | 'error'>
}

/** The SQLite store, with what tests and operators may want to check on its connection. */
export interface SqliteMessageStore extends MessageStore {
  /** `synchronous` as SQLite reports it (2 = FULL, 1 = NORMAL), the journal mode, and the group commits made so far. */
  diagnostics(): Promise<{ synchronous: number; journalMode: string; commits: number }>
  /** How SQLite would run `list(filter)` (the details of EXPLAIN QUERY PLAN), to check that a search by key is an index lookup. */
  explainList(filter: ListFilter): Promise<string[]>
}

const DB_FILE = 'weir.db'
/** Messages deleted per transaction by a purge. */
const PURGE_BATCH = 1000
/** Free pages given back to the file system per step after a purge batch (4 MB of 4 KB pages). */
const VACUUM_STEP_PAGES = 1024
const FINISHED: readonly FinishedStatus[] = ['delivered', 'filtered', 'error']
/**
 * How long a message claimed from memory may stay `queued` in the database before it is marked
 * in flight there. Most deliveries finish sooner and are never marked (one write fewer per
 * message); this process's own reads mark first, so only another process reading beside the
 * engine (`weir messages`) can see such a message as queued, for at most this long.
 */
const MARK_IN_FLIGHT_AFTER_MS = 100

/** A purge target as the writer thread takes it: every condition present, null when absent. */
function purgeSpec(target: PurgeTarget) {
  return { before: target.before ?? null, channel: target.channel ?? null, statuses: target.statuses ?? FINISHED, keepNewest: target.keepNewest ?? null }
}






/**
 * Prepares the database on the main thread before the writer thread takes it over: creates the
 * directory, takes the lock (owner), migrates, returns a crashed run's claims to the queue, and
 * reads the pending counts the queues start from.
 */
function prepare(dir: string, options: SqliteStoreOptions, t: number) {
  const create = options.create ?? true
  const file = join(dir, DB_FILE)
  const present = secureDataDir(dir, { create, refuseOpen: options.refuseOpenDataDir ?? false, ...(options.acceptOpenDataDirFlag ? { acceptOpenFlag: options.acceptOpenDataDirFlag } : {}) }) && existsSync(file)
  if (!present && !create) throw new StoreError(`no message store in ${dir}`, { missing: true })
  createOwnerOnlyFile(file)
  for (const suffix of ['-wal', '-shm']) tightenFile(file + suffix)
  const owner = options.owner ?? true
  const lock = owner ? acquireLock(dir) : undefined
  const lockFile = lock?.file
  try {
    const db = new DatabaseCtor(file)
    try {
      db.pragma('journal_mode = WAL')
      db.pragma('busy_timeout = 5000')
      migrate(db, { allowMigration: owner })
      if (owner) useIncrementalVacuum(db)
      const { released, gaveUp } = owner ? recoverClaims(db, t) : { released: 0, gaveUp: [] }
      const pending = db.prepare(`SELECT channel, count(*) FROM message_status WHERE status IN ('queued', 'in-flight', 'retrying') GROUP BY channel`).raw().all() as Array<[string, number]>
      // A dead owner's lock tells of an unclean stop even when no claim of its was marked in flight yet.
      return { lockFile, released, gaveUp, unclean: released > 0 || gaveUp.length > 0 || lock?.stale === true, pending }
    } finally {
      db.close()
    }
  } catch (e) {
    if (lockFile) releaseLock(lockFile)
    if (e instanceof StoreError) throw e
    throw new StoreError(`cannot open the message store in ${dir}: ${(e as Error).message}`, { cause: e })
  }
}

/**
 * Crash recovery: whatever a previous run had claimed but not finished goes back to the queue
 * (retry times are kept). A message that was in flight (not waiting out a retry) counts one more
 * interruption; at MAX_INTERRUPTIONS it goes to error instead (returned in `gaveUp`).
 */
function recoverClaims(db: InstanceType<typeof DatabaseCtor>, t: number): { released: number; gaveUp: Array<{ id: string; channel: string }> } {
  return db.transaction(() => {
    db.prepare(`UPDATE message_status SET interrupted = interrupted + 1 WHERE status = 'in-flight'`).run()
    const gaveUp = db.prepare(`UPDATE message_status SET status = 'error', error = ?, updated_at = ?, filter_attempts = NULL, filter_elapsed = NULL, filter_next_attempt_at = NULL
      WHERE status = 'in-flight' AND interrupted >= ?
      RETURNING (SELECT id FROM message_content c WHERE c.seq = message_status.seq) AS id, channel`).all(INTERRUPTED_ERROR, t, MAX_INTERRUPTIONS) as Array<{ id: string; channel: string }>
    const closeDeliveries = db.prepare(`UPDATE deliveries SET status = 'error' WHERE message_id = ? AND status IN ('in-flight', 'retrying')`)
    for (const m of gaveUp) closeDeliveries.run(m.id)
    const seqs = db.prepare(`UPDATE message_status SET status = 'queued', updated_at = ? WHERE status IN ('in-flight', 'retrying') RETURNING seq`).pluck().all(t) as number[]
    const releaseDeliveries = db.prepare(`UPDATE deliveries SET status = 'queued'
      WHERE message_id = (SELECT id FROM message_content WHERE seq = ?) AND status IN ('in-flight', 'retrying')`)
    for (const seq of seqs) releaseDeliveries.run(seq)
    return { released: seqs.length, gaveUp }
  }).immediate()
}

/**
 * Opens (creating when needed) the message store of a data directory: `<dataDir>/weir.db`,
 * SQLite in WAL mode with `synchronous=FULL` unless told otherwise.
 *
 * Every query and commit runs on a writer thread of its own (so fsync never blocks the event
 * loop), group-committed: the operations asked for while the previous transaction committed share
 * the next one, and each promise resolves after its commit. Messages this process enqueued are
 * claimed from memory; only a backlog (after a restart, a release or a resubmission) is read back.
 *
 * @example
 * const store = openSqliteStore({ dataDir: './data' })
 * const { id } = await store.enqueue('adt', { body: { mrn: '42' } })
 * const [m] = await store.claim('adt', 1)
 * await store.complete(m.id, 'delivered')
 * await store.close()
 */
export function openSqliteStore(options: SqliteStoreOptions = {}): SqliteMessageStore {
  const dir = resolve(options.dataDir ?? 'data')
  const now = options.now ?? Date.now
  const { lockFile, released, gaveUp, unclean, pending } = prepare(dir, options, now())
  // A message claimed within MARK_IN_FLIGHT_AFTER_MS of the stop was still recorded as queued: it is
  // delivered again although `released` does not count it.
  if (unclean) {
    options.log?.warn({ dataDir: dir, released }, released > 0
      ? 'unclean stop detected: messages that were in flight are queued again'
      : `unclean stop detected: no message was recorded in flight (one claimed within ${MARK_IN_FLIGHT_AFTER_MS} ms of the stop was still recorded as queued and is delivered again)`)
  }
  const failures = new StoreFailures()
  for (const m of gaveUp) {
    options.log?.error({ message: m.id, channel: m.channel }, GAVE_UP_LOG)
    failures.add({ ...m, cause: 'interrupted' })
  }
  const file = join(dir, DB_FILE)
  return new SqliteStore(file, new WriterClient(file, options.synchronous ?? 'FULL'), new ChannelQueues(pending), now, lockFile, failures)
}

class SqliteStore implements SqliteMessageStore {
  /** The channel of each message claimed by this process and not yet finished. */
  private readonly claimed = new Map<string, string>()
  /** The seq of each message claimed from memory and still `queued` in the database (see MARK_IN_FLIGHT_AFTER_MS). */
  private readonly unmarked = new Map<string, number>()
  private markTimer: NodeJS.Timeout | undefined = undefined
  private closed = false

  constructor(private readonly file: string, private readonly writer: WriterClient, private readonly queues: ChannelQueues, private readonly now: () => number, private readonly lockFile: string | undefined, private readonly failures: StoreFailures) {}

  watchFailures(channel: string, listener: (f: StoreFailure) => void): () => void {
    return this.failures.watch(channel, listener)
  }

  diagnostics() {
    return this.writer.call<{ synchronous: number; journalMode: string; commits: number }>('diagnostics', [])
  }

  explainList(filter: ListFilter): Promise<string[]> {
    return this.writer.call<string[]>('listPlan', [filter])
  }

  enqueue(channel: string, input: MessageInput, opts: EnqueueOptions = {}): Promise<EmitResult> {
    if (this.closed) return Promise.reject(new StoreError('message store is closed'))
    const t = this.now()
    const id = newMessageId(t)
    const contentType = input.contentType ?? (typeof input.body === 'string' ? 'text/plain' : 'application/json')
    const attributes = input.attributes ?? {}
    const error = opts.error ?? null
    let body: string, attributesJson: string
    try {
      [body, attributesJson] = jsonOf(input)
    } catch (e) {
      return Promise.reject(e)
    }
    if (error === null) this.queues.accepted(channel)
    const args = [channel, id, body, contentType, attributesJson, input.dedupeKey ?? null, t, opts.orderKey ?? null, error, opts.searchKeys ?? null, input.dedupeWindowMs ?? null, opts.clearDedupeKey ?? null]
    return this.writer.call('enqueue', args, ([seq, duplicateOf]: [number, string | null]): EmitResult => {
      if (error !== null) return duplicateOf === null ? { id, duplicate: false } : { id: duplicateOf, duplicate: true }
      if (duplicateOf !== null) {
        this.queues.written(channel, { counted: false })
        return { id: duplicateOf, duplicate: true }
      }
      const message: ClaimedMessage = {
        id, seq, channel, status: 'queued', body: input.body ?? null, contentType, attributes, receivedAt: t, updatedAt: t, deliveries: [],
        ...(input.dedupeKey !== undefined ? { dedupeKey: input.dedupeKey } : {}),
        ...(opts.orderKey !== undefined ? { orderKey: opts.orderKey } : {}),
      }
      this.queues.written(channel, { message, counted: true })
      return { id, duplicate: false }
    }).catch((e) => {
      if (error === null) this.queues.written(channel, { counted: false })
      throw e
    })
  }

  claim(channel: string, limit: number): Promise<ClaimedMessage[]> {
    if (this.closed) return Promise.reject(new StoreError('message store is closed'))
    const t = this.now()
    const q = this.queues.of(channel)
    if (!q.backlog) {
      const got = q.hot.splice(0, limit).map((m): ClaimedMessage => ({ ...m, status: 'in-flight', updatedAt: t }))
      for (const m of got) {
        this.claimed.set(m.id, channel)
        this.unmarked.set(m.id, m.seq)
      }
      if (got.length > 0) this.markTimer ??= setTimeout(this.markInFlight, MARK_IN_FLIGHT_AFTER_MS).unref()
      return Promise.resolve(got)
    }
    const generation = q.generation
    // Claimed messages still 'queued' in the database would take the places of the next ones in the query.
    this.markInFlight()
    // A message this process claimed from memory is still 'queued' in the database if its mark was
    // lost (the batch carrying it failed: busy, disk full); it is under way here, so it is skipped,
    // not handed out a second time (this claim marks it in flight after all).
    return this.writer.call('claim', [channel, limit, t], (rows: Array<MessageRow & { deliveries: string; interrupted: number }>) => {
      if (rows.length < limit) this.queues.drained(channel, generation)
      return rows.filter((r) => !this.claimed.has(r.id)).map((r): ClaimedMessage => {
        this.claimed.set(r.id, channel)
        const deliveries = (JSON.parse(r.deliveries) as object[]).map((d) => defined(d) as DeliveryRecord)
        return { ...rowToMessage({ ...r, status: 'in-flight', updated_at: t, error: null }), deliveries, ...(r.interrupted ? { interruptions: r.interrupted } : {}) }
      })
    })
  }

  recordDelivery(id: string, update: DeliveryUpdate): Promise<void> {
    if (update.status === 'retrying') this.unmarked.delete(id) // its status becomes 'retrying' from 'queued' as from 'in-flight'
    return this.writer.call('recordDelivery', [id, update, this.now()])
  }

  recordFilterRetry(id: string, retry: FilterRetry | null): Promise<void> {
    return this.writer.call('recordFilterRetry', [id, retry])
  }

  complete(id: string, status: 'delivered' | 'filtered' | 'error', updates: DeliveryUpdate[] = [], error?: string): Promise<void> {
    this.unmarked.delete(id)
    return this.writer.call('complete', [id, status, updates, error ?? null, this.now()], (channel: string | null) => this.finished(id, channel))
  }

  fail(id: string, error: string): Promise<void> {
    return this.complete(id, 'error', [], error)
  }

  release(ids: string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve()
    for (const id of ids) this.unmarked.delete(id)
    // Claims must see the released messages before anything queued after them: read the database from now on.
    for (const ch of new Set(ids.map((id) => this.claimed.get(id)))) if (ch !== undefined) this.queues.toDatabase(ch)
    return this.writer.call('release', [ids, this.now()], (channels: string[]) => {
      for (const ch of new Set(channels)) this.queues.toDatabase(ch)
      for (const id of ids) this.claimed.delete(id)
    })
  }

  async resubmit(target: ResubmitTarget): Promise<string[]> {
    const previewed = previewedSet(target)
    const [name, args] = previewed ? ['resubmitAsPreviewed', [previewed.ids, previewed.stamps, previewed.all]] : ['resubmit', [target]]
    const done = await this.writer.call(name, [...args, this.now()], (rows: Array<[string, string]>) => {
      for (const [, channel] of rows) this.queues.requeued(channel)
      return rows.map(([id]) => id)
    })
    refuseChanged(previewed, done.length)
    return done
  }

  async purge(target: PurgeTarget): Promise<number> {
    // In batches, each its own commit and each followed by a step of space given back, so an engine
    // running beside is never blocked for long.
    const spec = purgeSpec(target)
    const max = target.limit ?? Infinity
    let purged = 0
    while (purged < max) {
      const limit = Math.min(PURGE_BATCH, max - purged)
      const n = await this.writer.call<{ selected: number; deleted: number }>('purgeBatch', [spec, limit])
      purged += n.deleted
      if (n.deleted > 0) await this.reclaim()
      if (n.selected < limit) break
    }
    return purged
  }

  /** Gives the free pages back in steps (the purged rows are already zeroed: secure_delete), and truncates the WAL. */
  private async reclaim(): Promise<void> {
    // Bounded: a step that gives nothing back ends it.
    for (let left = Infinity; ;) {
      const { free } = await this.writer.call<{ free: number }>('reclaim', [VACUUM_STEP_PAGES])
      if (free === 0 || free >= left) return
      left = free
    }
  }

  resubmitPreview(ids: readonly string[]): Promise<ResubmitPreview> {
    return this.writer.call('resubmitPreview', [[...new Set(ids)]])
  }

  audit(entry: AuditEntry): Promise<void> {
    return this.writer.call('audit', [entry])
  }

  auditLog(options: { limit?: number; before?: number } = {}): Promise<AuditEntry[]> {
    return this.writer.call('auditLog', [options.before ?? Number.MAX_SAFE_INTEGER, options.limit ?? 100])
  }

  get(id: string): Promise<MessageDetail | undefined> {
    this.markInFlight()
    return this.writer.call('get', [id], (r: { row: MessageRow; deliveries: unknown[]; attempts: unknown[] } | null) =>
      r === null ? undefined : { message: rowToMessage(r.row), deliveries: r.deliveries.map(deliveryOf), attempts: r.attempts.map(attemptOf) })
  }

  list(filter: ListFilter = {}): Promise<StoredMessage[]> {
    this.markInFlight()
    return this.writer.call('list', [filter], (rows: MessageRow[]) => rows.map(rowToMessage))
  }

  stats(channel?: string): Promise<ChannelStats> {
    this.markInFlight()
    return this.writer.call('stats', [channel ?? null], (rows: Array<{ status: MessageStatus; n: number }>) => {
      return countByStatus(rows)
    })
  }

  channels(): Promise<string[]> {
    this.markInFlight()
    return this.writer.call('channels', [])
  }

  latestErrors(ids: readonly string[]): Promise<LatestError[]> {
    this.markInFlight()
    return this.writer.call('latestErrors', [ids])
  }

  searchKeyNames(): Promise<string[]> {
    this.markInFlight()
    return this.writer.call('searchKeyNames', [])
  }

  pending(channel: string): number {
    return this.closed ? 0 : this.queues.of(channel).pending
  }

  /**
   * The bytes the store's data takes (what `maxStoreBytes` bounds): the database's pages in use,
   * plus the WAL file beyond its working size (the frames up to the automatic checkpoint, which the
   * file keeps between checkpoints however little it holds; beyond it when a reader holds a
   * checkpoint back). Free pages of the database, left by deleted messages, are reused and not counted.
   */
  async size(): Promise<number> {
    if (this.closed) throw new StoreError('message store is closed')
    const [usage, wal] = await Promise.all([
      this.writer.call<{ used: number; walAllowance: number }>('usage', []),
      stat(this.file + '-wal').then((s) => s.size, () => 0),
    ])
    return usage.used + Math.max(0, wal - usage.walAllowance)
  }

  oldestPending(channel?: string): Promise<Record<string, number>> {
    return this.writer.call('oldestPending', [channel ?? null], (rows: Array<{ channel: string; at: number }>) => Object.fromEntries(rows.map((r) => [r.channel, r.at])))
  }

  countErrors(channel: string, since: number): Promise<number> {
    return this.writer.call('countErrors', [channel, since])
  }

  countPurgeable(target: Pick<PurgeTarget, 'before' | 'channel' | 'statuses'>): Promise<PurgeableCount[]> {
    const { before, channel, statuses } = purgeSpec(target)
    return this.writer.call('countPurgeable', [{ before, channel, statuses }])
  }

  refreshPending(channel?: string): Promise<void> {
    const channels = channel ? [channel] : this.queues.channels()
    for (const ch of channels) this.queues.toDatabase(ch)
    return this.writer.call('pendingCounts', [channel ?? null], (rows: Array<{ channel: string; n: number }>) => this.queues.recountAll(channels, rows))
  }

  getState<T = unknown>(channel: string, component: string, key: string): Promise<T | undefined> {
    return this.writer.call('getState', [channel, component, key], (v: string | null) => (v === null ? undefined : (JSON.parse(v) as T)))
  }

  setState(channel: string, component: string, key: string, value: unknown): Promise<void> {
    return this.writer.call('setState', [channel, component, key, JSON.stringify(value ?? null), this.now()])
  }

  /** Compared as the JSON text `setState` wrote, on the writer thread: no other write runs between the comparison and the swap. */
  swapState(channel: string, component: string, key: string, expected: unknown, value: unknown): Promise<boolean> {
    return this.writer.call('swapState', [channel, component, key, expected === undefined ? null : JSON.stringify(expected), JSON.stringify(value ?? null), this.now()])
  }

  async close(): Promise<void> {
    if (this.closed) return
    // Messages still claimed (a stop that outlived its grace period) show as in flight, and the next open reports them.
    this.markInFlight()
    this.closed = true
    await this.writer.close()
    if (this.lockFile) releaseLock(this.lockFile)
  }

  /** Marks in flight, in the database, the messages claimed from memory and not finished since; before any read of statuses. */
  private readonly markInFlight = (): void => {
    clearTimeout(this.markTimer)
    this.markTimer = undefined
    if (this.unmarked.size === 0) return
    this.writer.send('markInFlight', [[...this.unmarked.values()], this.now()])
    this.unmarked.clear()
  }

  private finished(id: string, channel: string | null): void {
    if (channel !== null) this.queues.finished(channel)
    this.claimed.delete(id)
  }
}
