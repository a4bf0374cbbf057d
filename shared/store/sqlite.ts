import { mkdirSync, existsSync, linkSync, readFileSync, renameSync, statSync, writeFileSync, unlinkSync } from 'node:fs'
import { join, resolve } from 'node:path'
import DatabaseCtor, { type Database } from 'better-sqlite3'
import type { EmitResult, MessageInput } from '../component.ts'
import { WeirError } from '../errors.ts'
import type { Logger } from '../log/index.ts'
import { migrate } from './migrations.ts'
import { newMessageId } from './id.ts'
import {
  MESSAGE_STATUSES,
  type AttemptRecord, type ChannelStats, type ClaimedMessage, type DeliveryRecord, type DeliveryUpdate, type ListFilter,
  type MessageDetail, type MessageStatus, type MessageStore, type PurgeTarget, type ResubmitTarget, type StoredMessage,
} from './types.ts'

export class StoreError extends WeirError {
  override code = 'ERR_STORE' as const
}

export interface SqliteStoreOptions {
  /** Directory holding `weir.db` (one database per data directory). Default `./data`. */
  dataDir?: string
  /**
   * `FULL` (default): a commit survives power loss. `NORMAL`: in WAL mode a commit survives a
   * process crash but the last transactions may roll back on power loss.
   */
  synchronous?: 'FULL' | 'NORMAL'
  /**
   * Group-commit delay (ms; default 2, which halves the commits under load; 0 commits every event-loop turn): while writes stream in, a
   * small batch waits up to this long (and at most a few event-loop turns) for the writes that are
   * about to follow, so they share one commit. Durability is unchanged: a write resolves only after
   * its commit. An isolated write (nothing committed within the delay before it) is never delayed.
   */
  commitDelayMs?: number
  /**
   * Open as the engine that works the queues (default true): takes the data directory's lock and
   * returns messages a crashed run left claimed to the queue. The `weir messages` commands pass
   * false so they can read and resubmit beside a running engine.
   */
  owner?: boolean
  /** Create the data directory and database when missing (default true). */
  create?: boolean
  now?: () => number
  /** Told how many messages an unclean stop left claimed (returned to the queue on open). */
  log?: Pick<Logger, 'warn'>
}

/** The SQLite store, with what tests and operators may want to check on its connection. */
export interface SqliteMessageStore extends MessageStore {
  /** `synchronous` as SQLite reports it (2 = FULL, 1 = NORMAL), the journal mode, and the group commits made so far. */
  diagnostics(): { synchronous: number; journalMode: string; commits: number }
}

const DB_FILE = 'weir.db'
const PURGE_BATCH = 1000
const LOCK_FILE = 'weir.lock'
/** A batch this large commits at once, without waiting for the commit delay. */
const COMMIT_BATCH = 64
/** Most event-loop turns a batch waits for company (the delay is also bounded by `commitDelayMs`). */
const COMMIT_DELAY_TURNS = 2

interface MessageRow {
  seq: number
  id: string
  channel: string
  status: MessageStatus
  body: string
  content_type: string
  attributes: string
  dedupe_key: string | null
  received_at: number
  updated_at: number
  error: string | null
}

interface WriteOp {
  run: () => unknown
  resolve: (v: any) => void
  reject: (e: unknown) => void
}

function rowToMessage(r: MessageRow): StoredMessage {
  return {
    id: r.id,
    seq: r.seq,
    channel: r.channel,
    status: r.status,
    body: JSON.parse(r.body),
    contentType: r.content_type,
    attributes: JSON.parse(r.attributes),
    receivedAt: r.received_at,
    updatedAt: r.updated_at,
    ...(r.dedupe_key !== null ? { dedupeKey: r.dedupe_key } : {}),
    ...(r.error !== null ? { error: r.error } : {}),
  }
}

function defined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === null || o[k] === undefined) delete o[k]
  return o
}

/** Lock files taken by stores open in this process (a same-pid lock not listed here is stale: a restarted container). */
const heldLocks = new Set<string>()

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function statMtime(file: string): number {
  try {
    return statSync(file).mtimeMs
  } catch {
    return 0
  }
}

function readPid(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim())
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

/**
 * Takes the data directory's lock: `weir.lock` created exclusively (`wx`), holding our pid. An
 * existing lock is taken over only when its process is dead; the stale file is first renamed
 * aside, so two processes breaking the same stale lock cannot both end up owning the directory.
 */
function acquireLock(dir: string): string {
  const file = join(dir, LOCK_FILE)
  const inUse = (pid: number | undefined) => {
    const who = pid !== undefined && Number.isInteger(pid) && pid > 0 ? `process ${pid}` : 'another process'
    const err = new StoreError(`data directory ${dir} is in use by ${who}; stop it or use another --data-dir`)
    err.userError = true
    return err
  }
  for (let i = 0; i < 5; i++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' })
      heldLocks.add(file)
      return file
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    const pid = readPid(file)
    if (pid === undefined) continue // released meanwhile
    const valid = Number.isInteger(pid) && pid > 0
    if (valid && (pid === process.pid ? heldLocks.has(file) : pidAlive(pid))) throw inUse(pid)
    // No pid yet: another process may be between its exclusive create and its write. Only an old one is stale.
    if (!valid && Date.now() - statMtime(file) < 5000) throw inUse(undefined)
    // Stale (dead process, or unreadable content): move it aside atomically, then check it was the one we judged.
    const aside = `${file}.${process.pid}.stale`
    try {
      renameSync(file, aside)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw e
    }
    const moved = readPid(aside)
    if (moved !== pid) {
      // Another process replaced the stale lock with its own between our read and the rename: put it back.
      try {
        linkSync(aside, file)
      } catch { /* a third process holds the lock now */ }
      unlinkSync(aside)
      throw inUse(moved)
    }
    unlinkSync(aside)
  }
  throw inUse(readPid(file))
}

/**
 * Opens (creating when needed) the message store of a data directory: `<dataDir>/weir.db`,
 * SQLite in WAL mode with `synchronous=FULL` unless told otherwise.
 *
 * Writes are group-committed: every write requested during one turn of the event loop (the
 * enqueues of requests that arrived together, a complete and the next claim) runs in a single
 * transaction, and all their promises resolve after that one commit. Each write runs in its own
 * savepoint, so one failing write does not undo the others.
 *
 * @example
 * const store = openSqliteStore({ dataDir: './data' })
 * const { id } = await store.enqueue('adt', { body: { mrn: '42' } })
 * const [m] = await store.claim('adt', 1)
 * await store.complete(m.id, 'delivered')
 */
export function openSqliteStore(options: SqliteStoreOptions = {}): SqliteMessageStore {
  const dir = resolve(options.dataDir ?? 'data')
  const now = options.now ?? Date.now
  const owner = options.owner ?? true
  if (!existsSync(join(dir, DB_FILE))) {
    if (options.create === false) {
      const err = new StoreError(`no message store in ${dir}`)
      err.userError = true
      throw err
    }
    mkdirSync(dir, { recursive: true })
  }
  const lockFile = owner ? acquireLock(dir) : undefined
  let db: Database
  try {
    db = new DatabaseCtor(join(dir, DB_FILE))
    db.pragma('journal_mode = WAL')
    db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`)
    db.pragma('busy_timeout = 5000')
    db.pragma('foreign_keys = OFF')
    migrate(db, { allowMigration: owner })
  } catch (e) {
    if (lockFile) {
      heldLocks.delete(lockFile)
      try { unlinkSync(lockFile) } catch { /* already gone */ }
    }
    if (e instanceof StoreError) throw e
    throw new StoreError(`cannot open the message store in ${dir}: ${(e as Error).message}`, { cause: e })
  }

  const s = {
    // The content row is written once; status changes touch only the small message_status row.
    insertContent: db.prepare(`INSERT INTO message_content (id, channel, body, content_type, attributes, dedupe_key, received_at)
      VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING`),
    insertStatus: db.prepare(`INSERT INTO message_status (seq, channel, status, updated_at) VALUES (?, ?, 'queued', ?)`),
    byDedupe: db.prepare('SELECT id FROM message_content WHERE channel = ? AND dedupe_key = ?').pluck(),
    // Claiming reads the next queued messages with their content, then marks exactly those in flight (same transaction).
    claimable: db.prepare(`SELECT s.seq, c.id, s.channel, s.status, c.body, c.content_type, c.attributes, c.dedupe_key, c.received_at, s.updated_at, s.error
      FROM message_status s JOIN message_content c ON c.seq = s.seq WHERE s.channel = ? AND s.status = 'queued' ORDER BY s.seq LIMIT ?`),
    claim: db.prepare(`UPDATE message_status SET status = 'in-flight', updated_at = ?
      WHERE seq IN (SELECT seq FROM message_status WHERE channel = ? AND status = 'queued' ORDER BY seq LIMIT ?)`),
    setStatus: db.prepare(`UPDATE message_status SET status = ?, updated_at = ?, error = ?
      WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status IN ('queued', 'in-flight', 'retrying') RETURNING channel`).pluck(),
    toRetrying: db.prepare(`UPDATE message_status SET status = 'retrying', updated_at = ? WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status = 'in-flight'`),
    upsertDelivery: db.prepare(`INSERT INTO deliveries (message_id, destination, part, status, attempts, first_attempt_at, last_attempt_at, next_attempt_at, last_error, response_status, response_excerpt)
      VALUES (@id, @destination, @part, @status, @inc, @started, @started, @next, @error, @responseStatus, @excerpt)
      ON CONFLICT (message_id, destination, part) DO UPDATE SET
        status = excluded.status,
        attempts = attempts + excluded.attempts,
        first_attempt_at = coalesce(first_attempt_at, excluded.first_attempt_at),
        last_attempt_at = coalesce(excluded.last_attempt_at, last_attempt_at),
        next_attempt_at = excluded.next_attempt_at,
        last_error = CASE WHEN excluded.attempts > 0 THEN excluded.last_error ELSE last_error END,
        response_status = CASE WHEN excluded.attempts > 0 THEN excluded.response_status ELSE response_status END,
        response_excerpt = CASE WHEN excluded.attempts > 0 THEN excluded.response_excerpt ELSE response_excerpt END
      RETURNING attempts`).pluck(),
    insertAttempt: db.prepare(`INSERT INTO attempts (message_id, destination, part, attempt, started_at, ended_at, outcome, response_status, error, excerpt)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    release: db.prepare(`UPDATE message_status SET status = 'queued', updated_at = ? WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status IN ('in-flight', 'retrying')`),
    // next_attempt_at is kept: a retry scheduled before a stop or crash still waits its turn after a restart.
    releaseDeliveries: db.prepare(`UPDATE deliveries SET status = 'queued' WHERE message_id = ? AND status IN ('in-flight', 'retrying')`),
    releaseAll: db.prepare(`UPDATE message_status SET status = 'queued', updated_at = ? WHERE status IN ('in-flight', 'retrying') RETURNING seq`).pluck(),
    idOfSeq: db.prepare('SELECT id FROM message_content WHERE seq = ?').pluck(),
    getRow: db.prepare('SELECT * FROM messages WHERE id = ?'),
    getByPrefix: db.prepare('SELECT * FROM messages WHERE id LIKE ? LIMIT 2'),
    deliveries: db.prepare('SELECT * FROM deliveries WHERE message_id = ? ORDER BY part, destination'),
    attempts: db.prepare('SELECT * FROM attempts WHERE message_id = ? ORDER BY started_at, rowid'),
    resubmitMessage: db.prepare(`UPDATE message_status SET status = 'queued', error = NULL, updated_at = ?
      WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status IN ('delivered', 'filtered', 'error') RETURNING channel`).pluck(),
    openDeliveries: db.prepare(`SELECT count(*) FROM deliveries WHERE message_id = ? AND status != 'delivered'`).pluck(),
    requeueOpen: db.prepare(`UPDATE deliveries SET status = 'queued', next_attempt_at = NULL WHERE message_id = ? AND status != 'delivered'`),
    requeueAll: db.prepare(`UPDATE deliveries SET status = 'queued', next_attempt_at = NULL WHERE message_id = ?`),
    purgeIds: db.prepare(`SELECT id FROM messages WHERE status IN ('delivered', 'filtered', 'error') AND updated_at < ? ORDER BY seq LIMIT ?`).pluck(),
    purgeIdsOfChannel: db.prepare(`SELECT id FROM messages WHERE channel = ? AND status IN ('delivered', 'filtered', 'error') AND updated_at < ? ORDER BY seq LIMIT ?`).pluck(),
    deleteStatus: db.prepare(`DELETE FROM message_status WHERE seq = ? AND status IN ('delivered', 'filtered', 'error')`),
    deleteContent: db.prepare('DELETE FROM message_content WHERE seq = ?'),
    seqOf: db.prepare('SELECT seq FROM message_content WHERE id = ?').pluck(),
    deleteDeliveries: db.prepare('DELETE FROM deliveries WHERE message_id = ?'),
    deleteAttempts: db.prepare('DELETE FROM attempts WHERE message_id = ?'),
    pendingCount: db.prepare(`SELECT count(*) FROM message_status WHERE channel = ? AND status IN ('queued', 'in-flight', 'retrying')`).pluck(),
    statsAll: db.prepare('SELECT status, count(*) AS n FROM message_status GROUP BY status'),
    statsOf: db.prepare('SELECT status, count(*) AS n FROM message_status WHERE channel = ? GROUP BY status'),
    getState: db.prepare('SELECT value FROM component_state WHERE channel = ? AND component = ? AND key = ?').pluck(),
    setState: db.prepare(`INSERT INTO component_state (channel, component, key, value, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (channel, component, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`),
  }

  // Pending counts per channel, read from the database on first use (an indexed count) and then
  // kept in memory: every emit checks it for backpressure. `unwritten` are enqueues not yet run.
  const pending = new Map<string, number>()
  const unwritten = new Map<string, number>()
  const pendingOf = (channel: string): number => {
    let n = pending.get(channel)
    if (n === undefined) pending.set(channel, (n = (s.pendingCount.get(channel) as number) + (unwritten.get(channel) ?? 0)))
    return n
  }
  const bump = (channel: string, by: number) => pending.set(channel, Math.max(0, pendingOf(channel) + by))
  const refreshPending = (channel?: string) => {
    for (const ch of channel ? [channel] : [...pending.keys()]) pending.delete(ch)
  }

  if (owner) {
    // Crash recovery: whatever a previous run had claimed but not finished goes back to the queue.
    const released = db.transaction(() => {
      const seqs = s.releaseAll.all(now()) as number[]
      for (const seq of seqs) s.releaseDeliveries.run(s.idOfSeq.get(seq))
      return seqs.length
    }).immediate()
    if (released > 0) options.log?.warn({ dataDir: dir, released }, 'unclean stop detected: messages that were in flight are queued again')
  }

  // Group commit.
  let commits = 0
  let queue: WriteOp[] = []
  let scheduled = false
  let closed = false
  // Commit delay (PostgreSQL's commit_delay, counted in event-loop turns): while writes stream in
  // (the previous commit ended less than `commitDelayMs` before this batch began), a small batch
  // waits a few more turns (I/O polled in between) for the writes that are about to follow, so they
  // share one commit and its fsync. Every write still resolves only after its commit.
  const commitDelayMs = options.commitDelayMs ?? 2
  let batchStart = 0
  let deferrals = 0
  let lastCommitEnd = -Infinity
  const savepoint = db.transaction((fn: () => unknown) => fn())
  // One transaction for the batch, a savepoint per write: a failing write does not undo the others.
  const runAll = db.transaction((ops: WriteOp[]) => ops.map((op) => {
    try {
      return { ok: true, value: savepoint(op.run) }
    } catch (e) {
      return { ok: false, value: e }
    }
  }))
  const flush = (force = false) => {
    scheduled = false
    if (queue.length === 0) return
    if (!force && commitDelayMs > 0 && queue.length < COMMIT_BATCH && deferrals < COMMIT_DELAY_TURNS
      && batchStart - lastCommitEnd < commitDelayMs && performance.now() - batchStart < commitDelayMs) {
      deferrals++
      scheduled = true
      setImmediate(flush)
      return
    }
    deferrals = 0
    const batch = queue
    queue = []
    let outcome: Array<{ ok: boolean; value: unknown }>
    try {
      outcome = runAll.immediate(batch)
      commits++
      lastCommitEnd = performance.now()
    } catch (e) {
      refreshPending()
      const err = new StoreError(`message store write failed: ${(e as Error).message}`, { cause: e })
      err.retryable = true
      for (const op of batch) op.reject(err)
      return
    }
    batch.forEach((op, i) => {
      const r = outcome[i]!
      if (r.ok) op.resolve(r.value)
      else op.reject(r.value instanceof WeirError ? r.value : new StoreError(`message store write failed: ${(r.value as Error).message}`, { cause: r.value }))
    })
  }
  const write = <T>(run: () => T): Promise<T> => {
    if (closed) return Promise.reject(new StoreError('message store is closed'))
    return new Promise<T>((resolve, reject) => {
      if (queue.length === 0) batchStart = performance.now()
      queue.push({ run, resolve, reject })
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    })
  }
  const read = <T>(fn: () => T): Promise<T> => {
    if (closed) return Promise.reject(new StoreError('message store is closed'))
    try {
      return Promise.resolve(fn())
    } catch (e) {
      return Promise.reject(new StoreError(`message store read failed: ${(e as Error).message}`, { cause: e }))
    }
  }

  const applyUpdate = (id: string, u: DeliveryUpdate) => {
    const a = u.attempt
    const attempts = s.upsertDelivery.get({
      id, destination: u.destination, part: u.part, status: u.status,
      inc: a ? 1 : 0,
      started: a?.startedAt ?? null,
      next: u.nextAttemptAt ?? null,
      error: a?.error ?? null,
      responseStatus: a?.responseStatus ?? null,
      excerpt: a?.excerpt ?? null,
    }) as number
    if (a) s.insertAttempt.run(id, u.destination, u.part, attempts, a.startedAt, a.endedAt, a.outcome, a.responseStatus ?? null, a.error ?? null, a.excerpt ?? null)
  }

  const deliveriesOf = (id: string): DeliveryRecord[] => (s.deliveries.all(id) as any[]).map((d): DeliveryRecord => defined({
    destination: d.destination, part: d.part, status: d.status, attempts: d.attempts,
    firstAttemptAt: d.first_attempt_at, lastAttemptAt: d.last_attempt_at, nextAttemptAt: d.next_attempt_at,
    lastError: d.last_error, responseStatus: d.response_status, responseExcerpt: d.response_excerpt,
  }))

  const finish = (id: string, status: MessageStatus, error: string | null) => {
    const channel = s.setStatus.get(status, now(), error, id) as string | undefined
    if (channel !== undefined) bump(channel, -1)
  }

  const store: SqliteMessageStore = {
    diagnostics() {
      if (closed) throw new StoreError('message store is closed')
      return {
        synchronous: db.pragma('synchronous', { simple: true }) as number,
        journalMode: db.pragma('journal_mode', { simple: true }) as string,
        commits,
      }
    },

    enqueue(channel: string, input: MessageInput): Promise<EmitResult> {
      if (closed) return Promise.reject(new StoreError('message store is closed'))
      const t = now()
      const id = newMessageId(t)
      const contentType = input.contentType ?? (typeof input.body === 'string' ? 'text/plain' : 'application/json')
      const body = JSON.stringify(input.body ?? null)
      const attributes = JSON.stringify(input.attributes ?? {})
      bump(channel, 1)
      unwritten.set(channel, (unwritten.get(channel) ?? 0) + 1)
      let ran = false
      return write(() => {
        ran = true
        unwritten.set(channel, unwritten.get(channel)! - 1)
        const r = s.insertContent.run(id, channel, body, contentType, attributes, input.dedupeKey ?? null, t)
        if (r.changes === 1) {
          s.insertStatus.run(r.lastInsertRowid, channel, t)
          return { id, duplicate: false }
        }
        bump(channel, -1)
        return { id: s.byDedupe.get(channel, input.dedupeKey) as string, duplicate: true }
      }).catch((e) => {
        if (!ran) unwritten.set(channel, unwritten.get(channel)! - 1)
        refreshPending(channel)
        throw e
      })
    },

    claim(channel, limit) {
      return write(() => {
        const rows = s.claimable.all(channel, limit) as MessageRow[]
        if (rows.length === 0) return []
        const t = now()
        s.claim.run(t, channel, limit)
        return rows.map((r): ClaimedMessage => {
          r.status = 'in-flight'
          r.updated_at = t
          return { ...rowToMessage(r), deliveries: deliveriesOf(r.id) }
        })
      })
    },

    recordDelivery(id, update) {
      return write(() => {
        applyUpdate(id, update)
        if (update.status === 'retrying') s.toRetrying.run(now(), id)
      })
    },

    complete(id, status, updates = [], error) {
      return write(() => {
        for (const u of updates) applyUpdate(id, u)
        finish(id, status, error ?? null)
      })
    },

    fail(id, error) {
      return write(() => finish(id, 'error', error))
    },

    release(ids) {
      if (ids.length === 0) return Promise.resolve()
      return write(() => {
        const t = now()
        for (const id of ids) {
          s.release.run(t, id)
          s.releaseDeliveries.run(id)
        }
      })
    },

    resubmit(target: ResubmitTarget) {
      return write(() => {
        let ids: string[] = target.ids ? [...target.ids] : []
        if (target.status) {
          const where = ['status = ?']
          const params: unknown[] = [target.status]
          if (target.channel) {
            where.push('channel = ?')
            params.push(target.channel)
          }
          ids = ids.concat(db.prepare(`SELECT id FROM messages WHERE ${where.join(' AND ')} ORDER BY seq`).pluck().all(...params) as string[])
        }
        const done: string[] = []
        const t = now()
        for (const id of new Set(ids)) {
          const channel = s.resubmitMessage.get(t, id) as string | undefined
          if (channel === undefined) continue
          // Destinations that already have the message are not sent it again, unless nothing is left to send.
          if ((s.openDeliveries.get(id) as number) > 0) s.requeueOpen.run(id)
          else s.requeueAll.run(id)
          bump(channel, 1)
          done.push(id)
        }
        return done
      })
    },

    async purge(target: PurgeTarget) {
      // In batches, each its own commit, so an engine running beside is never blocked for long.
      let purged = 0
      for (;;) {
        const n = await write(() => {
          const ids = (target.channel
            ? s.purgeIdsOfChannel.all(target.channel, target.before, PURGE_BATCH)
            : s.purgeIds.all(target.before, PURGE_BATCH)) as string[]
          let deleted = 0
          for (const id of ids) {
            const seq = s.seqOf.get(id) as number | undefined
            if (seq === undefined || s.deleteStatus.run(seq).changes === 0) continue
            s.deleteContent.run(seq)
            s.deleteDeliveries.run(id)
            s.deleteAttempts.run(id)
            deleted++
          }
          return { selected: ids.length, deleted }
        })
        purged += n.deleted
        if (n.selected < PURGE_BATCH) return purged
      }
    },

    get(id) {
      return read((): MessageDetail | undefined => {
        let row = s.getRow.get(id) as MessageRow | undefined
        if (!row && id.length >= 6) {
          const rows = s.getByPrefix.all(`${id.replace(/[%_]/g, '')}%`) as MessageRow[]
          if (rows.length === 1) row = rows[0]
        }
        if (!row) return undefined
        const deliveries = deliveriesOf(row.id)
        const attempts = (s.attempts.all(row.id) as any[]).map((a): AttemptRecord => defined({
          destination: a.destination, part: a.part, attempt: a.attempt, startedAt: a.started_at, endedAt: a.ended_at,
          outcome: a.outcome, responseStatus: a.response_status, error: a.error, excerpt: a.excerpt,
        }))
        return { message: rowToMessage(row), deliveries, attempts }
      })
    },

    list(filter: ListFilter = {}) {
      return read(() => {
        const where: string[] = []
        const params: unknown[] = []
        if (filter.channel) { where.push('channel = ?'); params.push(filter.channel) }
        if (filter.status) { where.push('status = ?'); params.push(filter.status) }
        if (filter.since !== undefined) { where.push('received_at >= ?'); params.push(filter.since) }
        const sql = `SELECT * FROM messages ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq ${filter.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`
        params.push(filter.limit ?? 100)
        return (db.prepare(sql).all(...params) as MessageRow[]).map(rowToMessage)
      })
    },

    stats(channel) {
      return read(() => {
        const out = Object.fromEntries(MESSAGE_STATUSES.map((st) => [st, 0])) as ChannelStats
        const rows = (channel ? s.statsOf.all(channel) : s.statsAll.all()) as { status: MessageStatus; n: number }[]
        for (const r of rows) out[r.status] = r.n
        return out
      })
    },

    pending(channel) {
      return closed ? 0 : pendingOf(channel)
    },

    refreshPending(channel) {
      refreshPending(channel)
    },

    getState<T>(channel: string, component: string, key: string) {
      return read(() => {
        const v = s.getState.get(channel, component, key) as string | undefined
        return v === undefined ? undefined : (JSON.parse(v) as T)
      })
    },

    setState(channel, component, key, value) {
      const json = JSON.stringify(value ?? null)
      return write(() => {
        s.setState.run(channel, component, key, json, now())
      })
    },

    async close() {
      if (closed) return
      flush(true)
      closed = true
      db.close()
      if (lockFile) {
        heldLocks.delete(lockFile)
        try {
          if (readFileSync(lockFile, 'utf8').trim() === String(process.pid)) unlinkSync(lockFile)
        } catch { /* already gone */ }
      }
    },
  }
  return store
}
