import { previewOf } from '../preview.js'
import { readFileSync } from 'node:fs'
import type { EmitResult, MessageInput } from '../../component.ts'
import type { Logger } from '../../log/index.ts'
import { StoreError } from '../errors.ts'
import { newMessageId } from '../id.ts'
import { ChannelQueues } from '../queues.ts'
import { attemptOf, countByStatus, defined, deliveryOf, jsonOf, rowToMessage, type MessageRow } from '../rows.ts'
import {

  GAVE_UP_LOG, MESSAGE_STATUSES, type ChannelStats, type ClaimOptions, type ClaimedMessage, type DeliveryRecord, type DeliveryUpdate, type EnqueueOptions, type FilterRetry,
  type ClaimLease, type Leadership, type ListFilter, type LatestError, type MessageDetail, type MessageStatus, type MessageStore, type PurgeTarget, type PurgeableCount, type ResubmitTarget, type ResubmitPreview, type AuditEntry, type StoredMessage, type StoreFailure,
} from '../types.ts'
import { StoreFailures } from '../failures.ts'
import { previewedSet, refuseChanged } from '../previewed.ts'
import { DB_TIMEOUTS, openDb, type Db, type DbTimeouts } from './db.ts'
import { clusterStatus, EngineLease, type DefinitionConflictError, type DefinitionOutline, type EngineStatus } from './engines.ts'
import { GroupCommit, type CommitPacing } from './group-commit.ts'
import { HeldClaims, RECONCILE } from './held.ts'
import { migrate } from './migrations.ts'
import { batchApplier } from './operations.ts'

export interface PostgresStoreOptions {
  /** `postgres://user[:password]@host:port/database[?sslmode=require|verify-full]`. The password may also come from `PGPASSWORD` or `passwordFile`. */
  url: string
  /** A file holding the password (its first line). */
  passwordFile?: string
  /** Join the cluster as an engine that claims messages (default true); `weir messages` and `weir cluster status` pass false. */
  owner?: boolean
  /** Lease of this engine's claims and leaderships, renewed every third of it. Default 15,000 ms. */
  leaseMs?: number
  /** Connections in the pool. Default 8. */
  poolSize?: number
  version?: string
  now?: () => number
  log?: Pick<Logger, 'warn' | 'info' | 'error'>
  /** Under load, how long a write transaction may wait for more writes to share its commit (ms), and how many it waits for. Default: no wait (`weir run` passes `--commit-delay-ms`). */
  commitPacing?: CommitPacing
  /** Statement, idle-in-transaction and keepalive timeouts of every connection (default `DB_TIMEOUTS`; tests shorten them). */
  timeouts?: Partial<DbTimeouts>
  /** Renew the lease on a timer (default true); false: only `heartbeat()` renews it (tests that stall an engine). */
  heartbeatTimer?: boolean
  /**
   * The fingerprint of the definition of each channel this engine runs, by name (`weir run` passes
   * them, see engine/definition-fingerprint.ts): the store refuses to open (ERR_STORE) when a live
   * engine runs one of these channels with another definition.
   */
  definitions?: Readonly<Record<string, string>>
  /**
   * The outline of each of those definitions (`weir run` passes them, see `channelDefinition` in
   * engine/definition-fingerprint.ts): a refusal then names where a definition differs.
   */
  outlines?: Readonly<Record<string, DefinitionOutline>>
  /**
   * Told once when this engine's lease ran out (it was frozen or cut off longer than the lease) and
   * it may not rejoin, as a live engine now runs one of its channels with another definition
   * (ERR_STORE, its `conflicts` naming them). The refusal is final: the engine no longer heartbeats,
   * claims or leads; stop its channels and close the store. Without it, the refusal is logged at error level.
   */
  onRefused?: (e: DefinitionConflictError) => void
}

/** The PostgreSQL store, with its cluster membership. */
export interface PostgresMessageStore extends MessageStore {
  /** This engine's id in the cluster (changes if its lease was lost and it rejoined). */
  readonly engineId: string | undefined
  /** The connection pool, shared with the cluster's OAuth token state (shared/store/postgres/oauth-state.ts). */
  readonly pool: Db
  /**
   * The small pool of the lease renewals (this engine's, its leaderships', and the OAuth token
   * leases' of shared/store/postgres/oauth-state.ts), apart from message traffic; undefined when the
   * store was not opened as an engine (`owner: false`).
   */
  readonly renewals: Db | undefined
  /** Renews the lease and sweeps expired engines now (tests; the heartbeat does it on its own). */
  heartbeat(): Promise<void>
  cluster(): Promise<EngineStatus[]>
  diagnostics(): Promise<{ commits: number }>
  /** How PostgreSQL would run `list(filter)` (EXPLAIN), to check that a search by key is an index lookup. */
  explainList(filter: ListFilter): Promise<string[]>
  /** Ends the store like a killed engine: no claim released, no heartbeat, the row left to expire. */
  abandon(): Promise<void>
}

/**
 * `select` per channel over the unfinished messages (matching `where`, which starts with AND), read
 * through the two partial indexes that hold them: queued, and claimed (in flight or retrying).
 * PostgreSQL uses a partial index only where the query names its statuses literally.
 */
const unfinished = (select: string, where = '') => `SELECT channel, ${select} FROM weir_messages WHERE status = 'queued' ${where} GROUP BY channel
  UNION ALL SELECT channel, ${select} FROM weir_messages WHERE status IN ('in-flight', 'retrying') ${where} GROUP BY channel`
/** Unfinished messages per channel: of the channel `$1`, or of every channel when `$1` is null. */
export const PENDING_COUNTS = `SELECT channel, sum(n)::int AS n FROM (${unfinished('count(*) AS n', 'AND ($1::text IS NULL OR channel = $1)')}) s GROUP BY channel`
/** The search key names in use: a loose index scan of weir_message_keys' primary key (name first), one probe per name, never a pass over every value. */
export const SEARCH_KEY_NAMES = `WITH RECURSIVE k AS (
    (SELECT name FROM weir_message_keys ORDER BY name LIMIT 1)
    UNION ALL SELECT (SELECT name FROM weir_message_keys WHERE name > k.name ORDER BY name LIMIT 1) FROM k WHERE k.name IS NOT NULL
  ) SELECT name FROM k WHERE name IS NOT NULL`

/**
 * The messages of channel `$1` in error since `$2` (epoch ms): a range of weir_messages_errors
 * (channel, updated_at, partial over status 'error'), read from the index alone.
 */
export const COUNT_ERRORS = `SELECT count(*)::int AS n FROM weir_messages WHERE channel = $1 AND status = 'error' AND updated_at >= $2::bigint`
/** Messages deleted per transaction by a purge. */
const PURGE_BATCH = 1000
/** What a purge would delete, per channel and status (`countPurgeable`): the conditions of `purgeBatch`. */
const COUNT_PURGEABLE = `SELECT channel, status, count(*)::int AS count FROM weir_messages
  WHERE status = ANY($3::text[]) AND ($1::bigint IS NULL OR updated_at < $1) AND ($2::text IS NULL OR channel = $2)
  GROUP BY channel, status ORDER BY channel, status`

/**
 * The SQL of a `list` (each message with its body): with a search key, an index lookup in weir_message_keys (by name, value and,
 * when given, channel) joined to the messages found.
 */
function listQuery(filter: ListFilter): { sql: string; params: unknown[] } {
  const params: unknown[] = []
  const p = (v: unknown, type: string) => `$${params.push(v)}::${type}`
  // With a search key, the key's own columns pick and order the rows (its index holds them).
  const k = filter.key ? 'k.' : 'm.'
  const where: string[] = []
  if (filter.key) where.push(`k.name = ${p(filter.key.name, 'text')}`, `k.value = ${p(filter.key.value, 'text')}`)
  if (filter.channel !== undefined) where.push(`${k}channel = ${p(filter.channel, 'text')}`)
  // A known status is written into the SQL, not passed as a parameter: PostgreSQL can then use the partial index that holds it.
  if (filter.status !== undefined) where.push(`m.status = ${(MESSAGE_STATUSES as readonly string[]).includes(filter.status) ? `'${filter.status}'` : p(filter.status, 'text')}`)
  if (filter.since !== undefined) where.push(`m.received_at >= ${p(filter.since, 'bigint')}`)
  if (filter.until !== undefined) where.push(`m.received_at < ${p(filter.until, 'bigint')}`)
  if (filter.after !== undefined) where.push(`${k}seq ${filter.order === 'asc' ? '>' : '<'} ${p(filter.after, 'bigint')}`)
  const from = `${filter.key ? 'weir_message_keys k JOIN weir_messages m ON m.seq = k.seq' : 'weir_messages m'} JOIN weir_message_bodies b ON b.seq = m.seq`
  const sql = `SELECT m.*, b.body FROM ${from} ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY ${k}seq ${filter.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ${p(filter.limit ?? 100, 'int')}`
  return { sql, params }
}

/** Where an operation failed: a lost connection or an outage is worth retrying (503 to a sender); the message says which server. */
function storeError(e: unknown, url: URL): StoreError {
  if (e instanceof StoreError) return e
  const where = `${url.hostname}:${url.port || 5432}${url.pathname}`
  const message = (e as Error).message
  // node-postgres says "empty password returned by client" (or the SASL variant) when none was given.
  const hint = /password/i.test(message) ? ' (the password comes from the URL, PGPASSWORD or --store-password-file)' : ''
  return new StoreError(`PostgreSQL store at ${where}: ${message}${hint}`, { retryable: true, cause: e })
}

/** A connection pool to the store's database (the password from the URL, `PGPASSWORD` or `passwordFile`). */
export function connect(o: PostgresStoreOptions, url: URL): Db {
  const password = o.passwordFile ? readFileSync(o.passwordFile, 'utf8').split(/\r?\n/)[0] : undefined
  return openDb(o.url, {
    max: o.poolSize ?? 8, password, timeouts: o.timeouts,
    onError: (e) => o.log?.warn({ err: storeError(e, url) }, 'a PostgreSQL connection was lost; the pool opens a new one when needed'),
  })
}

/** Connections of the lease renewals (see `EngineLease`). */
const RENEWAL_POOL = 2

/**
 * The renewals' own pool, whose statements time out after a third of the lease (at least a second):
 * a renewal stuck on a dead connection is given up (after two thirds of a lease with the client's
 * grace) in time for the next heartbeat to renew on a fresh one before the lease runs out.
 */
function renewalPool(o: PostgresStoreOptions, url: URL, leaseMs: number): Db {
  const queryMs = Math.min(o.timeouts?.queryMs ?? DB_TIMEOUTS.queryMs, Math.max(1_000, Math.floor(leaseMs / 3)))
  return connect({ ...o, poolSize: RENEWAL_POOL, timeouts: { ...o.timeouts, queryMs } }, url)
}

/**
 * Opens the PostgreSQL store: several engines on several machines share one database, each
 * claiming with `FOR UPDATE SKIP LOCKED`, group-committing its writes, and holding its claims
 * under a lease that other engines take over when it dies. Migrates the schema first (under an
 * advisory lock) when opened as an engine.
 *
 * @example
 * const store = await openPostgresStore({ url: 'postgres://weir@127.0.0.1:5432/weir' })
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresMessageStore> {
  const url = new URL(options.url)
  const db = connect(options, url)
  const now = options.now ?? Date.now
  const owner = options.owner ?? true
  const leaseMs = options.leaseMs ?? 15_000
  const renewals = owner ? renewalPool(options, url, leaseMs) : undefined
  const failures = new StoreFailures()
  try {
    await migrate(db, { allowMigration: owner })
    let lease: EngineLease | undefined
    if (renewals) {
      lease = new EngineLease(db, renewals, {
        leaseMs, version: options.version ?? '0', now, timer: options.heartbeatTimer ?? true,
        ...(options.definitions ? { definitions: options.definitions } : {}),
        ...(options.outlines ? { outlines: options.outlines } : {}),
        onLost: (old, id) => options.log?.warn({ engine: old, rejoined: id }, 'this engine\'s lease ran out and its claims were taken over; it rejoined under a new id'),
        onRequeued: (n, engines) => options.log?.warn({ engines, requeued: n }, 'engines stopped heartbeating: their messages are queued again'),
        onGaveUp: (messages) => {
          for (const m of messages) {
            options.log?.error({ message: m.id, channel: m.channel }, GAVE_UP_LOG)
            failures.add({ ...m, cause: 'interrupted' })
          }
        },
        onError: (e) => options.log?.warn({ err: storeError(e, url) }, 'heartbeat failed; retrying'),
        onRefused: (e) => {
          if (options.onRefused) options.onRefused(e)
          else options.log?.error({ engine: lease?.id }, `${e.message}: this engine no longer heartbeats, claims or leads; stop it`)
        },
      })
      await lease.join()
    }
    const pending = await db.query<{ channel: string; n: number }>(PENDING_COUNTS, [null])
    return new PostgresStore(db, url, lease, new ChannelQueues(pending.map((r) => [r.channel, r.n])), now, options.commitPacing ?? NO_PACING, {
      renewals, failures,
      onRequeued: (n) => options.log?.warn({ engine: lease?.id, requeued: n }, 'a claim\'s outcome was unknown (its connection was lost): the messages in flight under this engine\'s id that it did not hold are queued again'),
    })
  } catch (e) {
    await Promise.all([db.end().catch(() => {}), renewals?.end().catch(() => {})])
    throw storeError(e, url)
  }
}

const NO_PACING: CommitPacing = { delayMs: 0, batch: 0 }
/**
 * The writes run again when their transaction's outcome is unknown (its COMMIT answer lost), also
 * alone (see `GroupCommit`): their second run finds what a first one that committed did, or (a
 * resubmission, a purge) returns its result once PostgreSQL tells that it committed. An enqueue
 * answered as failed although stored would have its sender resend it, stored and delivered twice.
 * A claim is left to fail (`HeldClaims` returns what it took).
 */
const RERUN_ALONE: ReadonlySet<string> = new Set(['enqueue', 'complete', 'delivery', 'filterRetry', 'release', 'setState', 'resubmit', 'purge'])
/** How long after a failed reconciliation (see `HeldClaims`) the store tries again when no write comes to do it. */
const RECONCILE_RETRY_MS = 1_000

class PostgresStore implements PostgresMessageStore {
  private readonly writes: GroupCommit
  private readonly held: HeldClaims
  private readonly claimLease: ClaimLease | undefined
  private leaderships: Leadership | undefined
  private reconcileTimer: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    private readonly db: Db, private readonly url: URL, private readonly lease: EngineLease | undefined, private readonly queues: ChannelQueues, private readonly now: () => number, pacing: CommitPacing,
    private readonly more: { renewals: Db | undefined; failures: StoreFailures; onRequeued(n: number): void },
  ) {
    const owner = () => this.lease?.id ?? ''
    this.held = new HeldClaims({ owner, now, schedule: () => this.scheduleReconcile(), onRequeued: (n) => more.onRequeued(n) })
    this.writes = new GroupCommit(db, this.held.wrap(batchApplier(owner)), (e) => storeError(e, url), pacing, RERUN_ALONE)
    this.claimLease = lease && {
      // Refused as it rejoined, this engine's claims are another's or soon will be (the sweep).
      standing: (id) => (!this.held.holds(id) || lease.refused ? 'lost' : lease.vouched() ? 'held' : 'unsure'),
      renewal: () => lease.renewal(),
    }
  }

  /** A reconciliation is due: the next write does it first; if none comes, this one does. */
  private scheduleReconcile(): void {
    if (this.closed || this.reconcileTimer) return
    this.reconcileTimer = setTimeout(() => {
      this.reconcileTimer = undefined
      this.write<void>(RECONCILE, []).catch(() => {})
    }, RECONCILE_RETRY_MS)
    this.reconcileTimer.unref()
  }

  get engineId() {
    return this.lease?.id
  }

  get pool() {
    return this.db
  }

  get renewals() {
    return this.more.renewals
  }

  watchFailures(channel: string, listener: (f: StoreFailure) => void): () => void {
    return this.more.failures.watch(channel, listener)
  }

  private write<T>(kind: string, args: unknown[]): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError('message store is closed'))
    return this.writes.submit<T>(kind, args)
  }

  private read<T>(q: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError('message store is closed'))
    return q().catch((e) => { throw storeError(e, this.url) })
  }

  async enqueue(channel: string, input: MessageInput, opts: EnqueueOptions = {}): Promise<EmitResult> {
    const t = this.now()
    const id = newMessageId(t)
    const contentType = input.contentType ?? (typeof input.body === 'string' ? 'text/plain' : 'application/json')
    const error = opts.error ?? null
    if (this.closed) throw new StoreError('message store is closed')
    const [body, attributes] = jsonOf(input)
    if (error === null) this.queues.accepted(channel)
    try {
      const [, duplicateOf] = await this.write<[number, string | null]>('enqueue', [
        channel, id, body, contentType, attributes, input.dedupeKey ?? null, t, opts.orderKey ?? null, error, opts.searchKeys ?? null, input.dedupeWindowMs ?? null,
        opts.clearDedupeKey ?? null,
      ])
      if (error === null) this.queues.written(channel, { counted: duplicateOf === null })
      return duplicateOf === null ? { id, duplicate: false } : { id: duplicateOf, duplicate: true }
    } catch (e) {
      if (error === null) this.queues.written(channel, { counted: false })
      throw e
    }
  }

  resubmitPreview(ids: readonly string[]): Promise<ResubmitPreview> {
    return this.read(async () => {
      const rows = await this.db.query<{ id: string; destination: string | null; status: string | null }>(`SELECT m.id, d.destination, d.status
        FROM weir_messages m LEFT JOIN weir_deliveries d ON d.message_id = m.id
        WHERE m.id = ANY($1::text[]) AND m.status IN ('delivered', 'filtered', 'error')`, [[...new Set(ids)]])
      const byId = new Map<string, Array<{ destination: string; status: string }>>()
      for (const r of rows) {
        const ds = byId.get(r.id) ?? []
        if (r.destination !== null) ds.push({ destination: r.destination, status: r.status! })
        byId.set(r.id, ds)
      }
      return previewOf([...byId])
    })
  }

  audit(entry: AuditEntry): Promise<void> {
    return this.read(async () => {
      await this.db.sql`INSERT INTO weir_audit_log (at, actor, action, target, count) VALUES (${entry.at}, ${entry.actor}, ${entry.action}, ${entry.target}, ${entry.count})`
    })
  }

  auditLog(options: { limit?: number; before?: number } = {}): Promise<AuditEntry[]> {
    return this.read(() => this.db.sql<AuditEntry>`SELECT at, actor, action, target, count FROM weir_audit_log
      WHERE at < ${options.before ?? Number.MAX_SAFE_INTEGER} ORDER BY at DESC, seq DESC LIMIT ${options.limit ?? 100}`)
  }

  async claim(channel: string, limit: number, options: ClaimOptions = {}): Promise<ClaimedMessage[]> {
    // Refused as it rejoined, this engine is no member of the cluster: it takes nothing while its owner stops it.
    if (this.lease?.refused) return []
    const rows = await this.write<Array<MessageRow & { deliveries: string; interrupted: number }>>('claim', [channel, limit, this.now(), options.order ?? 'none'])
    return rows.map((r) => ({
      ...rowToMessage(r), deliveries: (JSON.parse(r.deliveries) as object[]).map((d) => defined(d) as DeliveryRecord),
      ...(r.interrupted ? { interruptions: r.interrupted } : {}),
    }))
  }

  recordDelivery(id: string, update: DeliveryUpdate): Promise<void> {
    return this.write<void>('delivery', [id, update, this.now()])
  }

  recordFilterRetry(id: string, retry: FilterRetry | null): Promise<void> {
    return this.write<void>('filterRetry', [id, retry])
  }

  async complete(id: string, status: 'delivered' | 'filtered' | 'error', updates: DeliveryUpdate[] = [], error?: string): Promise<void> {
    const channel = await this.write<string | null>('complete', [id, status, updates, error ?? null, this.now()])
    if (channel !== null) this.queues.finished(channel)
  }

  fail(id: string, error: string): Promise<void> {
    return this.complete(id, 'error', [], error)
  }

  async release(ids: string[]): Promise<void> {
    if (ids.length === 0) return
    await this.write<string[]>('release', [ids, this.now()])
  }

  async resubmit(target: ResubmitTarget): Promise<string[]> {
    // Checked before the write: a mistaken target fails alone, not the group commit it would join.
    const previewed = previewedSet(target)
    const done = await this.write<Array<[string, string]>>('resubmit', [target, this.now()])
    for (const [, channel] of done) this.queues.requeued(channel)
    refuseChanged(previewed, done.length)
    return done.map(([id]) => id)
  }

  /** Deletes in batches, each its own transaction; PostgreSQL's autovacuum gives the space back. */
  async purge(target: PurgeTarget): Promise<number> {
    const max = target.limit ?? Infinity
    let purged = 0
    while (purged < max) {
      const limit = Math.min(PURGE_BATCH, max - purged)
      const n = await this.write<number>('purge', [target, limit])
      purged += n
      if (n < limit) break
    }
    return purged
  }

  get(id: string): Promise<MessageDetail | undefined> {
    return this.read(async () => {
      let [row] = await this.db.sql<MessageRow>`SELECT m.*, b.body FROM weir_messages m JOIN weir_message_bodies b ON b.seq = m.seq WHERE m.id = ${id}`
      if (!row && id.length >= 6) {
        const rows = await this.db.sql<MessageRow>`SELECT m.*, b.body FROM weir_messages m JOIN weir_message_bodies b ON b.seq = m.seq WHERE m.id LIKE ${`${id.replace(/[%_\\]/g, '')}%`} LIMIT 2`
        if (rows.length === 1) row = rows[0]
      }
      if (!row) return undefined
      const [deliveries, attempts] = await Promise.all([
        this.db.sql`SELECT * FROM weir_deliveries WHERE message_id = ${row.id} ORDER BY part, destination`,
        this.db.sql`SELECT * FROM weir_attempts WHERE message_id = ${row.id} ORDER BY started_at, attempt`,
      ])
      return { message: rowToMessage(row), deliveries: deliveries.map(deliveryOf), attempts: attempts.map(attemptOf) }
    })
  }

  list(filter: ListFilter = {}): Promise<StoredMessage[]> {
    return this.read(async () => {
      const { sql, params } = listQuery(filter)
      return (await this.db.query<MessageRow>(sql, params)).map(rowToMessage)
    })
  }

  explainList(filter: ListFilter): Promise<string[]> {
    return this.read(async () => {
      const { sql, params } = listQuery(filter)
      return (await this.db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params)).map((r) => r['QUERY PLAN'])
    })
  }

  stats(channel?: string): Promise<ChannelStats> {
    return this.read(async () => {
      const rows = await this.db.sql<{ status: MessageStatus; n: number }>`SELECT status, count(*)::int AS n FROM weir_messages
        WHERE ${channel ?? null}::text IS NULL OR channel = ${channel ?? null} GROUP BY status`
      return countByStatus(rows)
    })
  }

  channels(): Promise<string[]> {
    // A loose index scan: one index probe per channel, not a pass over every message.
    return this.read(async () => (await this.db.query<{ channel: string }>(`WITH RECURSIVE c AS (
        (SELECT channel FROM weir_messages ORDER BY channel LIMIT 1)
        UNION ALL SELECT (SELECT channel FROM weir_messages WHERE channel > c.channel ORDER BY channel LIMIT 1) FROM c WHERE c.channel IS NOT NULL
      ) SELECT channel FROM c WHERE channel IS NOT NULL`)).map((r) => r.channel))
  }

  latestErrors(ids: readonly string[]): Promise<LatestError[]> {
    return this.read(() => this.db.query<LatestError>(`SELECT DISTINCT ON (message_id) message_id AS id, destination, last_error AS error
      FROM weir_deliveries WHERE message_id = ANY($1::text[]) AND last_error IS NOT NULL ORDER BY message_id, last_attempt_at DESC NULLS LAST`, [ids]))
  }

  searchKeyNames(): Promise<string[]> {
    return this.read(async () => (await this.db.query<{ name: string }>(SEARCH_KEY_NAMES)).map((r) => r.name))
  }

  pending(channel: string): number {
    return this.closed ? 0 : this.queues.of(channel).pending
  }

  size(): Promise<number> {
    return this.read(async () => (await this.db.query<{ n: number }>('SELECT pg_database_size(current_database()) AS n'))[0]!.n)
  }

  oldestPending(channel?: string): Promise<Record<string, number>> {
    return this.read(async () => {
      const rows = await this.db.query<{ channel: string; at: number }>(`SELECT s.channel, min(m.received_at) AS at
        FROM (${unfinished('min(seq) AS seq', 'AND ($1::text IS NULL OR channel = $1)')}) s JOIN weir_messages m ON m.seq = s.seq GROUP BY s.channel`, [channel ?? null])
      return Object.fromEntries(rows.map((r) => [r.channel, r.at]))
    })
  }

  countErrors(channel: string, since: number): Promise<number> {
    return this.read(async () => (await this.db.query<{ n: number }>(COUNT_ERRORS, [channel, since]))[0]!.n)
  }

  countPurgeable(target: Pick<PurgeTarget, 'before' | 'channel' | 'statuses'>): Promise<PurgeableCount[]> {
    return this.read(() => this.db.query<PurgeableCount>(COUNT_PURGEABLE, [target.before ?? null, target.channel ?? null, target.statuses ?? ['delivered', 'filtered', 'error']]))
  }

  refreshPending(channel?: string): Promise<void> {
    const channels = channel ? [channel] : this.queues.channels()
    return this.read(async () => {
      const rows = await this.db.query<{ channel: string; n: number }>(PENDING_COUNTS, [channel ?? null])
      this.queues.recountAll(channels, rows)
    })
  }

  getState<T = unknown>(channel: string, component: string, key: string): Promise<T | undefined> {
    return this.read(async () => {
      const [row] = await this.db.sql<{ value: string }>`SELECT value FROM weir_state WHERE channel = ${channel} AND component = ${component} AND key = ${key}`
      return row ? (JSON.parse(row.value) as T) : undefined
    })
  }

  setState(channel: string, component: string, key: string, value: unknown): Promise<void> {
    return this.write<void>('setState', [channel, component, key, JSON.stringify(value ?? null), this.now()])
  }

  /**
   * One statement of its own, outside the group commit: under PostgreSQL's row lock, a swap that
   * waited for another engine's re-checks the value that engine committed, so one of the two fails.
   */
  swapState(channel: string, component: string, key: string, expected: unknown, value: unknown): Promise<boolean> {
    const [next, t] = [JSON.stringify(value ?? null), this.now()]
    return this.read(async () => {
      const rows = expected === undefined
        ? await this.db.sql`INSERT INTO weir_state (channel, component, key, value, updated_at) VALUES (${channel}, ${component}, ${key}, ${next}, ${t})
            ON CONFLICT (channel, component, key) DO NOTHING RETURNING 1`
        : await this.db.sql`UPDATE weir_state SET value = ${next}, updated_at = ${t}
            WHERE channel = ${channel} AND component = ${component} AND key = ${key} AND value = ${JSON.stringify(expected)} RETURNING 1`
      return rows.length === 1
    })
  }

  get leadership(): Leadership | undefined {
    const lease = this.lease
    if (!lease) return undefined
    // Kept: the runtime asks for `claims` before every delivery attempt.
    return this.leaderships ??= {
      lead: (name) => this.read(() => lease.lead(name)),
      leadAll: (names) => this.read(() => lease.leadAll(names)),
      resign: (name) => lease.resign(name).catch(() => {}),
      leaseMs: lease.leaseMs,
      ...(this.claimLease ? { claims: this.claimLease } : {}),
    }
  }

  heartbeat(): Promise<void> {
    return this.lease?.beat() ?? Promise.resolve()
  }

  cluster(): Promise<EngineStatus[]> {
    return this.read(() => clusterStatus(this.db))
  }

  async diagnostics(): Promise<{ commits: number }> {
    return { commits: this.writes.commits }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.reconcileTimer)
    await this.writes.idle()
    const failed = await this.lease?.leave().then(() => undefined, (e: unknown) => e ?? new Error('unknown error'))
    await Promise.all([this.db.end(), this.more.renewals?.end()])
    if (failed !== undefined && this.lease) {
      throw new StoreError(`could not leave the cluster (${storeError(failed, this.url).message}): this engine's row stays until its lease runs out, ${this.lease.leaseMs} ms after its last heartbeat; a peer then queues its messages again`, { cause: failed })
    }
  }

  async abandon(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.reconcileTimer)
    this.lease?.abandon()
    await this.writes.idle()
    await Promise.all([this.db.end(), this.more.renewals?.end()])
  }
}
