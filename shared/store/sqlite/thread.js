// @ts-check
// The SQLite store's writer thread: it owns the engine's connection to weir.db, so no query and no
// commit (with synchronous=FULL, an fsync of the WAL) ever runs on the event loop.
//
// Group commit without timers: whatever operations the main thread posted while the previous
// transaction was committing are waiting on the port; they are drained synchronously and run in one
// transaction, each in its own savepoint, so a failing operation does not undo the others. Only then
// are the results posted back, so a result always means "committed".
//
// Plain JavaScript (type-checked through JSDoc): a thread started on a .ts entry would need a
// TypeScript loader of its own, which costs hundreds of milliseconds on every store open.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import { previewOf } from '../preview.js'
import { SEARCH_KEY_NAMES } from './key-names.js'

/** @typedef {[id: number, name: string, ...args: any[]]} Op */
/** @typedef {[id: number, ok: boolean, value: unknown]} Result */

/** Operations that only read: a batch made of these alone runs without a write transaction. */
const READS = new Set(['resubmitPreview', 'auditLog', 'get', 'list', 'listPlan', 'stats', 'channels', 'searchKeyNames', 'latestErrors', 'pendingCounts', 'oldestPending', 'countErrors', 'countPurgeable', 'getState', 'diagnostics', 'usage'])
/** The WAL file's own header, and each frame's before its page (the SQLite file format). */
const WAL_HEADER_BYTES = 32
const WAL_FRAME_HEADER_BYTES = 24
/** Operations that cannot run inside a transaction (VACUUM, a checkpoint): run on their own after the batch. */
const OUTSIDE = new Set(['reclaim'])
/** Free pages worth a VACUUM after a purge, in a database not yet switched to incremental vacuum: more than this share of the file. */
const VACUUM_FREE_SHARE = 0.25
/** `PRAGMA auto_vacuum` of a database that gives free pages back in steps (`incremental_vacuum`). */
const AUTO_VACUUM_INCREMENTAL = 2
/** How long a write waits for another process's lock on weir.db (ms). */
const BUSY_TIMEOUT_MS = 5000

const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort)
const { file, synchronous } = /** @type {{ file: string, synchronous: 'FULL' | 'NORMAL' }} */ (workerData)
const db = new Database(file)
db.pragma('journal_mode = WAL')
db.pragma(`synchronous = ${synchronous}`)
db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
db.pragma('foreign_keys = OFF')
// Deleted rows (a purge) are overwritten with zeros, not left readable in free pages.
db.pragma('secure_delete = ON')

const deliveriesJson = `(SELECT json_group_array(json_object('destination', d.destination, 'part', d.part, 'status', d.status,
    'attempts', d.attempts, 'budgetAttempts', d.budget_attempts, 'budgetSince', d.budget_since, 'firstAttemptAt', d.first_attempt_at, 'lastAttemptAt', d.last_attempt_at, 'nextAttemptAt', d.next_attempt_at,
    'lastError', d.last_error, 'responseStatus', d.response_status, 'responseExcerpt', d.response_excerpt))
  FROM (SELECT * FROM deliveries WHERE message_id = c.id ORDER BY part, destination) d)`

/** Clears the retry of a message's filters (see ops.recordFilterRetry): the message finished, or was resubmitted with a new budget. */
const NO_FILTER_RETRY = 'filter_attempts = NULL, filter_elapsed = NULL, filter_next_attempt_at = NULL'

const s = {
  // The content row is written once; status changes touch only the small message_status row.
  insertContent: db.prepare(`INSERT INTO message_content (id, channel, body, content_type, attributes, dedupe_key, received_at, order_key)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING`),
  insertStatus: db.prepare('INSERT INTO message_status (seq, channel, status, updated_at, error) VALUES (?, ?, ?, ?, ?)'),
  insertKey: db.prepare('INSERT OR IGNORE INTO message_keys (name, value, channel, seq) VALUES (?, ?, ?, ?)'),
  byDedupe: db.prepare('SELECT id FROM message_content WHERE channel = ? AND dedupe_key = ?').pluck(),
  // A dedupe key whose window has passed moves to the new message: the old one keeps its content, without the key.
  expireDedupe: db.prepare('UPDATE message_content SET dedupe_key = NULL WHERE channel = ? AND dedupe_key = ? AND received_at <= ?'),
  // One query: the next queued messages with their content and their per-destination outcomes so far.
  claimable: db.prepare(`SELECT s.seq, c.id, s.channel, c.body, c.content_type, c.attributes, c.dedupe_key, c.received_at, c.order_key, s.interrupted,
      s.filter_attempts, s.filter_elapsed, s.filter_next_attempt_at,
      ${deliveriesJson} AS deliveries
    FROM message_status s JOIN message_content c ON c.seq = s.seq WHERE s.channel = ? AND s.status = 'queued' ORDER BY s.seq LIMIT ?`),
  claim: db.prepare(`UPDATE message_status SET status = 'in-flight', updated_at = ?
    WHERE seq IN (SELECT seq FROM message_status WHERE channel = ? AND status = 'queued' ORDER BY seq LIMIT ?)`),
  markInFlight: db.prepare(`UPDATE message_status SET status = 'in-flight', updated_at = ? WHERE seq = ? AND status = 'queued'`),
  // A finished message's filters retry no more: the retry they had scheduled is cleared.
  setStatus: db.prepare(`UPDATE message_status SET status = ?, updated_at = ?, error = ?, ${NO_FILTER_RETRY}
    WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status IN ('queued', 'in-flight', 'retrying') RETURNING channel`).pluck(),
  // A message claimed from memory may still be 'queued' here: its in-flight mark waits (see open.ts).
  toRetrying: db.prepare(`UPDATE message_status SET status = 'retrying', updated_at = ? WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status IN ('queued', 'in-flight')`),
  // The status stays: a message whose filters wait for their retry is in flight (or still 'queued' here, as above).
  filterRetry: db.prepare(`UPDATE message_status SET filter_attempts = ?, filter_elapsed = ?, filter_next_attempt_at = ?
    WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status IN ('queued', 'in-flight', 'retrying')`),
  // A delivered attempt stays in the delivery's row (last_ended_at set) instead of a row in attempts;
  // the trigger of migration 6 moves it there if another attempt follows.
  // A retry scheduled with the budget charged (@charged, @elapsed) stores it (see DeliveryUpdate.budget);
  // otherwise the budget columns stay, but for the first attempt after a resubmission (budget_since).
  upsertDelivery: db.prepare(`INSERT INTO deliveries (message_id, destination, part, status, attempts, budget_attempts, budget_since, first_attempt_at, last_attempt_at, next_attempt_at, last_error, response_status, response_excerpt, last_ended_at)
    VALUES (@id, @destination, @part, @status, @inc, @inc - @charged, @next - @elapsed, @started, @started, @next, @error, @responseStatus, @excerpt, @ended)
    ON CONFLICT (message_id, destination, part) DO UPDATE SET
      status = excluded.status,
      attempts = attempts + excluded.attempts,
      first_attempt_at = coalesce(first_attempt_at, excluded.first_attempt_at),
      budget_attempts = CASE WHEN @charged IS NULL THEN budget_attempts ELSE attempts + excluded.attempts - @charged END,
      budget_since = CASE WHEN @charged IS NOT NULL THEN excluded.budget_since
        WHEN budget_attempts IS NULL THEN NULL ELSE coalesce(budget_since, excluded.first_attempt_at) END,
      last_attempt_at = coalesce(excluded.last_attempt_at, last_attempt_at),
      next_attempt_at = excluded.next_attempt_at,
      last_error = CASE WHEN excluded.attempts > 0 THEN excluded.last_error ELSE last_error END,
      response_status = CASE WHEN excluded.attempts > 0 THEN excluded.response_status ELSE response_status END,
      response_excerpt = CASE WHEN excluded.attempts > 0 THEN excluded.response_excerpt ELSE response_excerpt END,
      last_ended_at = CASE WHEN excluded.attempts > 0 THEN excluded.last_ended_at ELSE last_ended_at END
    RETURNING attempts`).pluck(),
  insertAttempt: db.prepare(`INSERT INTO attempts (message_id, destination, part, attempt, started_at, ended_at, outcome, response_status, error, excerpt)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
  release: db.prepare(`UPDATE message_status SET status = 'queued', updated_at = ? WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status IN ('queued', 'in-flight', 'retrying') RETURNING channel`).pluck(),
  // next_attempt_at is kept: a retry scheduled before a stop or crash still waits its turn after a restart.
  releaseDeliveries: db.prepare(`UPDATE deliveries SET status = 'queued' WHERE message_id = ? AND status IN ('in-flight', 'retrying')`),
  getRow: db.prepare('SELECT * FROM messages WHERE id = ?'),
  getByPrefix: db.prepare('SELECT * FROM messages WHERE id LIKE ? LIMIT 2'),
  deliveries: db.prepare('SELECT * FROM deliveries WHERE message_id = ? ORDER BY part, destination'),
  latestError: db.prepare(`SELECT destination, last_error AS error FROM deliveries WHERE message_id = ? AND last_error IS NOT NULL
    ORDER BY last_attempt_at DESC LIMIT 1`),
  attempts: db.prepare('SELECT * FROM attempts WHERE message_id = ? ORDER BY started_at, rowid'),
  // A later updated_at than the message had, whatever the clock: a preview pinned to it is good for one resubmit.
  resubmitMessage: db.prepare(`UPDATE message_status SET status = 'queued', error = NULL, interrupted = 0, ${NO_FILTER_RETRY}, updated_at = max(?, updated_at + 1)
    WHERE seq = (SELECT seq FROM message_content WHERE id = ?) AND status IN ('delivered', 'filtered', 'error') RETURNING channel`).pluck(),
  finishedAt: db.prepare(`SELECT s.updated_at FROM message_status s JOIN message_content c ON c.seq = s.seq
    WHERE c.id = ? AND s.status IN ('delivered', 'filtered', 'error')`).pluck(),
  openDeliveries: db.prepare(`SELECT count(*) FROM deliveries WHERE message_id = ? AND status != 'delivered'`).pluck(),
  // A resubmission starts a new retry budget (budget_since is set by the next attempt); attempts keeps counting for the history.
  requeueOpen: db.prepare(`UPDATE deliveries SET status = 'queued', next_attempt_at = NULL, budget_attempts = attempts, budget_since = NULL
    WHERE message_id = ? AND status != 'delivered'`),
  requeueAll: db.prepare(`UPDATE deliveries SET status = 'queued', next_attempt_at = NULL, budget_attempts = attempts, budget_since = NULL WHERE message_id = ?`),
  // Oldest first along the rowid; every condition left NULL holds.
  purgePick: db.prepare(`SELECT s.seq, c.id FROM message_status s JOIN message_content c ON c.seq = s.seq
    WHERE s.status IN (SELECT value FROM json_each(@statuses)) AND (@before IS NULL OR s.updated_at < @before)
      AND (@channel IS NULL OR s.channel = @channel) AND (@below IS NULL OR s.seq < @below)
    ORDER BY s.seq LIMIT @limit`),
  countPurgeable: db.prepare(`SELECT channel, status, count(*) AS count FROM message_status
    WHERE status IN (SELECT value FROM json_each(@statuses)) AND (@before IS NULL OR updated_at < @before) AND (@channel IS NULL OR channel = @channel)
    GROUP BY channel, status ORDER BY channel, status`),
  // The seq of the newest finished message to keep: everything older may go.
  keepFrom: db.prepare(`SELECT seq FROM message_status WHERE (@channel IS NULL OR channel = @channel) AND status IN ('delivered', 'filtered', 'error')
    ORDER BY seq DESC LIMIT 1 OFFSET @offset`).pluck(),
  deleteStatus: db.prepare(`DELETE FROM message_status WHERE seq = ? AND status IN ('delivered', 'filtered', 'error')`),
  deleteContent: db.prepare('DELETE FROM message_content WHERE seq = ?'),
  deleteKeys: db.prepare('DELETE FROM message_keys WHERE seq = ?'),
  deleteDeliveries: db.prepare('DELETE FROM deliveries WHERE message_id = ?'),
  deleteAttempts: db.prepare('DELETE FROM attempts WHERE message_id = ?'),
  pendingAll: db.prepare(`SELECT channel, count(*) AS n FROM message_status WHERE status IN ('queued', 'in-flight', 'retrying') GROUP BY channel`),
  pendingOf: db.prepare(`SELECT channel, count(*) AS n FROM message_status WHERE channel = ? AND status IN ('queued', 'in-flight', 'retrying') GROUP BY channel`),
  // The oldest unfinished message of a channel is its first by seq: a walk of message_status_queue per status.
  oldestAll: db.prepare(`SELECT s.channel AS channel, min(c.received_at) AS at FROM (SELECT channel, min(seq) AS seq FROM message_status
    WHERE status IN ('queued', 'in-flight', 'retrying') GROUP BY channel, status) s JOIN message_content c ON c.seq = s.seq GROUP BY s.channel`),
  oldestOf: db.prepare(`SELECT ? AS channel, min(c.received_at) AS at FROM message_content c WHERE c.seq IN (SELECT min(seq) FROM message_status
    WHERE channel = ? AND status IN ('queued', 'in-flight', 'retrying') GROUP BY status)`),
  // Through message_status_errors (channel, updated_at; partial: status 'error'): only the channel's errors since `since`, from the index alone.
  countErrors: db.prepare(`SELECT count(*) FROM message_status WHERE channel = ? AND status = 'error' AND updated_at >= ?`).pluck(),
  finishedStatus: db.prepare(`SELECT s.status FROM message_status s JOIN message_content c ON c.seq = s.seq
    WHERE c.id = ? AND s.status IN ('delivered', 'filtered', 'error')`).pluck(),
  deliveryStates: db.prepare('SELECT destination, status FROM deliveries WHERE message_id = ?'),
  insertAudit: db.prepare('INSERT INTO audit_log (at, actor, action, target, count) VALUES (?, ?, ?, ?, ?)'),
  auditLog: db.prepare('SELECT at, actor, action, target, count FROM audit_log WHERE at < ? ORDER BY at DESC, seq DESC LIMIT ?'),
  statsAll: db.prepare('SELECT status, count(*) AS n FROM message_status GROUP BY status'),
  statsOf: db.prepare('SELECT status, count(*) AS n FROM message_status WHERE channel = ? GROUP BY status'),
  channels: db.prepare('SELECT DISTINCT channel FROM message_status ORDER BY channel').pluck(),
  searchKeyNames: db.prepare(SEARCH_KEY_NAMES).pluck(),
  getState: db.prepare('SELECT value FROM component_state WHERE channel = ? AND component = ? AND key = ?').pluck(),
  setState: db.prepare(`INSERT INTO component_state (channel, component, key, value, updated_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (channel, component, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`),
  addState: db.prepare(`INSERT INTO component_state (channel, component, key, value, updated_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (channel, component, key) DO NOTHING`),
  swapState: db.prepare('UPDATE component_state SET value = ?, updated_at = ? WHERE channel = ? AND component = ? AND key = ? AND value = ?'),
}

let commits = 0

/**
 * @param {string} id
 * @param {any} u a DeliveryUpdate
 */
function applyUpdate(id, u) {
  const a = u.attempt
  // A delivered attempt is kept in the delivery's row alone (see upsertDelivery); `get` reads it back.
  const kept = a?.outcome === 'delivered' && a.error === undefined
  const attempts = s.upsertDelivery.get({
    id, destination: u.destination, part: u.part, status: u.status,
    inc: a ? 1 : 0,
    started: a?.startedAt ?? null,
    next: u.nextAttemptAt ?? null,
    charged: u.budget?.charged ?? null,
    elapsed: u.budget?.elapsedMs ?? null,
    error: a?.error ?? null,
    responseStatus: a?.responseStatus ?? null,
    excerpt: a?.excerpt ?? null,
    ended: kept ? a.endedAt : null,
  })
  if (a && !kept) s.insertAttempt.run(id, u.destination, u.part, attempts, a.startedAt, a.endedAt, a.outcome, a.responseStatus ?? null, a.error ?? null, a.excerpt ?? null)
}

/**
 * A message's attempt history: the rows of attempts, and the delivered attempts kept in their
 * delivery's row, in the order they started.
 * @param {string} id @param {any[]} deliveries rows of deliveries
 */
function attemptsOf(id, deliveries) {
  const rows = /** @type {any[]} */ (s.attempts.all(id))
  const kept = deliveries.filter((d) => d.last_ended_at !== null).map((d) => ({
    message_id: id, destination: d.destination, part: d.part, attempt: d.attempts, started_at: d.last_attempt_at, ended_at: d.last_ended_at,
    outcome: 'delivered', response_status: d.response_status, error: null, excerpt: d.response_excerpt,
  }))
  return kept.length === 0 ? rows : [...rows, ...kept].sort((x, y) => x.started_at - y.started_at)
}

/**
 * Queues the finished ones of `ids` again.
 * @param {string[]} ids @param {number} t @returns {Array<[id: string, channel: string]>}
 */
function requeue(ids, t) {
  /** @type {Array<[string, string]>} */
  const done = []
  for (const id of ids) {
    const channel = /** @type {string | undefined} */ (s.resubmitMessage.get(t, id))
    if (channel === undefined) continue
    // Destinations that already have the message are not sent it again, unless nothing is left to send.
    if (/** @type {number} */ (s.openDeliveries.get(id)) > 0) s.requeueOpen.run(id)
    else s.requeueAll.run(id)
    done.push([id, channel])
  }
  return done
}

/** The operations the main thread may post, by name. Every timestamp (`t`) comes from the main thread's clock. */
const ops = {
  /**
   * @param {string} channel @param {string} id @param {string} body @param {string} contentType @param {string} attributes
   * @param {string | null} dedupeKey @param {number} t @param {string | null} orderKey @param {string | null} error a message stored in error at once
   * @param {Record<string, string[]> | null} searchKeys @param {number | null} dedupeWindowMs
   * @param {string | null} clearDedupeKey the dedupe key in clear, looked up too when `dedupeKey` is its hash
   * @returns {[seq: number, duplicateOf: string | null]}
   */
  enqueue(channel, id, body, contentType, attributes, dedupeKey, t, orderKey, error, searchKeys, dedupeWindowMs, clearDedupeKey) {
    if (dedupeKey !== null && dedupeWindowMs !== null) s.expireDedupe.run(channel, dedupeKey, t - dedupeWindowMs)
    // A message stored under the key in clear (before encryption was switched on) is the first too.
    if (dedupeKey !== null && clearDedupeKey !== null) {
      if (dedupeWindowMs !== null) s.expireDedupe.run(channel, clearDedupeKey, t - dedupeWindowMs)
      const first = /** @type {string | undefined} */ (s.byDedupe.get(channel, clearDedupeKey))
      if (first !== undefined) return [0, first]
    }
    const r = s.insertContent.run(id, channel, body, contentType, attributes, dedupeKey, t, orderKey)
    if (r.changes === 1) {
      s.insertStatus.run(r.lastInsertRowid, channel, error === null ? 'queued' : 'error', t, error)
      for (const [name, values] of Object.entries(searchKeys ?? {})) for (const v of values) s.insertKey.run(name, v, channel, r.lastInsertRowid)
      return [Number(r.lastInsertRowid), null]
    }
    return [0, /** @type {string} */ (s.byDedupe.get(channel, dedupeKey))]
  },
  /** @param {string} channel @param {number} limit @param {number} t */
  claim(channel, limit, t) {
    const rows = s.claimable.all(channel, limit)
    if (rows.length > 0) s.claim.run(t, channel, limit)
    return rows
  },
  /** @param {number[]} seqs @param {number} t */
  markInFlight(seqs, t) {
    for (const seq of seqs) s.markInFlight.run(t, seq)
  },
  /** @param {string} id @param {any} update @param {number} t */
  recordDelivery(id, update, t) {
    applyUpdate(id, update)
    if (update.status === 'retrying') s.toRetrying.run(t, id)
  },
  /**
   * The retry of a message's filters, as the runtime scheduled it (a FilterRetry): the message stays in flight.
   * @param {string} id @param {{ charged: number, elapsedMs: number, nextAttemptAt: number }} retry
   */
  recordFilterRetry(id, retry) {
    s.filterRetry.run(retry?.charged ?? null, retry?.elapsedMs ?? null, retry?.nextAttemptAt ?? null, id)
  },
  /** @param {string} id @param {string} status @param {any[]} updates @param {string | null} error @param {number} t */
  complete(id, status, updates, error, t) {
    for (const u of updates) applyUpdate(id, u)
    return s.setStatus.get(status, t, error, id) ?? null
  },
  /** @param {string[]} ids @param {number} t @returns {string[]} the channel of each message returned to the queue */
  release(ids, t) {
    const channels = []
    for (const id of ids) {
      const channel = /** @type {string | undefined} */ (s.release.get(t, id))
      if (channel === undefined) continue
      s.releaseDeliveries.run(id)
      channels.push(channel)
    }
    return channels
  },
  /** @param {{ ids?: string[], status?: string, channel?: string }} target @param {number} t @returns {Array<[id: string, channel: string]>} */
  resubmit(target, t) {
    let ids = target.ids ? [...target.ids] : []
    if (target.status) {
      const where = ['status = ?']
      const params = [target.status]
      if (target.channel) {
        where.push('channel = ?')
        params.push(target.channel)
      }
      ids = ids.concat(/** @type {string[]} */ (db.prepare(`SELECT id FROM messages WHERE ${where.join(' AND ')} ORDER BY seq`).pluck().all(...params)))
    }
    return requeue([...new Set(ids)], t)
  },
  /**
   * Queues the messages of a confirmed preview still finished with the `updatedAt` previewed (`stamps`,
   * one per id): with `all`, none unless every one is. In the write transaction, which one writer
   * at a time holds, so of two confirmations of one preview the second finds the first's changes.
   * @param {string[]} ids @param {number[]} stamps @param {boolean} all @param {number} t
   * @returns {Array<[id: string, channel: string]>}
   */
  resubmitAsPreviewed(ids, stamps, all, t) {
    const unchanged = ids.filter((id, i) => s.finishedAt.get(id) === stamps[i])
    return all && unchanged.length < ids.length ? [] : requeue(unchanged, t)
  },
  /**
   * Deletes up to `limit` of the finished messages `target` names (a PurgeTarget), oldest first.
   * @param {{ before: number | null, channel: string | null, statuses: string[], keepNewest: number | null }} target @param {number} limit
   */
  purgeBatch(target, limit) {
    let below = null
    if (target.keepNewest !== null && target.keepNewest > 0) {
      below = s.keepFrom.get({ channel: target.channel, offset: target.keepNewest - 1 })
      if (below === undefined) return { selected: 0, deleted: 0 }
    }
    const rows = /** @type {Array<{ seq: number, id: string }>} */ (s.purgePick.all({
      statuses: JSON.stringify(target.statuses), before: target.before, channel: target.channel, below, limit,
    }))
    let deleted = 0
    for (const { seq, id } of rows) {
      if (s.deleteStatus.run(seq).changes === 0) continue
      s.deleteContent.run(seq)
      s.deleteKeys.run(seq)
      s.deleteDeliveries.run(id)
      s.deleteAttempts.run(id)
      deleted++
    }
    return { selected: rows.length, deleted }
  },
  /**
   * After a purge batch: gives up to `pages` free pages back to the file system (incremental vacuum;
   * a database not yet switched to it is rewritten by a VACUUM once a quarter of it is free), then
   * checkpoints the WAL into the file and truncates it, so no copy of a purged page stays in the WAL.
   * @param {number} pages
   * @returns {{ free: number, vacuumed: boolean, walTruncated: boolean }} `free`: the pages further steps would give back
   */
  reclaim(pages) {
    const free = () => /** @type {number} */ (db.pragma('freelist_count', { simple: true }))
    const incremental = db.pragma('auto_vacuum', { simple: true }) === AUTO_VACUUM_INCREMENTAL
    let vacuumed = false
    if (incremental) db.pragma(`incremental_vacuum(${Math.max(1, Math.floor(pages))})`)
    else if (free() > 0 && free() >= /** @type {number} */ (db.pragma('page_count', { simple: true })) * VACUUM_FREE_SHARE) {
      db.exec('VACUUM')
      vacuumed = true
    }
    // Without waiting: a TRUNCATE checkpoint waits (busy_timeout) for every reader of an older
    // snapshot (another process's `weir messages`, `weir backup`) and blocks writers meanwhile, on
    // this thread every delivery. One that finds a reader copies what it can; the next batch's truncates.
    db.pragma('busy_timeout = 0')
    /** @type {{ busy: number } | undefined} */
    let cp
    try {
      cp = /** @type {Array<{ busy: number }>} */ (db.pragma('wal_checkpoint(TRUNCATE)'))[0]
    } finally {
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    }
    return { free: incremental ? free() : 0, vacuumed, walTruncated: cp?.busy === 0 }
  },
  /** @param {string} id */
  get(id) {
    let row = s.getRow.get(id)
    if (!row && id.length >= 6) {
      const rows = s.getByPrefix.all(`${id.replace(/[%_]/g, '')}%`)
      if (rows.length === 1) row = rows[0]
    }
    if (!row) return null
    const key = /** @type {{ id: string }} */ (row).id
    const deliveries = /** @type {any[]} */ (s.deliveries.all(key))
    return { row, deliveries, attempts: attemptsOf(key, deliveries) }
  },
  /** @param {ListFilter} filter */
  list(filter) {
    const { sql, params } = listQuery(filter)
    return db.prepare(sql).all(...params)
  },
  /** The query plan of `list` (EXPLAIN QUERY PLAN), for tests. @param {ListFilter} filter @returns {string[]} */
  listPlan(filter) {
    const { sql, params } = listQuery(filter)
    return db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params).map((r) => /** @type {{ detail: string }} */ (r).detail)
  },
  /** @param {string[]} ids */
  resubmitPreview(ids) {
    return previewOf(ids.filter((id) => s.finishedStatus.get(id) !== undefined).map((id) => [id, /** @type {Array<{ destination: string, status: string }>} */ (s.deliveryStates.all(id))]))
  },
  /** @param {{ at: number, actor: string, action: string, target: string, count: number }} e */
  audit(e) {
    s.insertAudit.run(e.at, e.actor, e.action, e.target, e.count)
  },
  /** @param {number} before @param {number} limit */
  auditLog(before, limit) {
    return s.auditLog.all(before, limit)
  },
  /** @param {string | null} channel */
  stats(channel) {
    return channel === null ? s.statsAll.all() : s.statsOf.all(channel)
  },
  /** The channels with at least one message in the log, by name. */
  channels() {
    return s.channels.all()
  },
  /** The latest failed attempt of each message that has one: a primary key range per id. @param {string[]} ids */
  latestErrors(ids) {
    return ids.flatMap((id) => {
      const row = /** @type {{ destination: string, error: string } | undefined} */ (s.latestError.get(id))
      return row ? [{ id, ...row }] : []
    })
  },
  /** The search key names some message is stored with, by name. */
  searchKeyNames() {
    return s.searchKeyNames.all()
  },
  /** @param {string | null} channel */
  oldestPending(channel) {
    const rows = /** @type {Array<{ channel: string, at: number | null }>} */ (channel === null ? s.oldestAll.all() : s.oldestOf.all(channel, channel))
    return rows.filter((r) => r.at !== null)
  },
  /** @param {{ before: number | null, channel: string | null, statuses: string[] }} target */
  countPurgeable(target) {
    return s.countPurgeable.all({ statuses: JSON.stringify(target.statuses), before: target.before, channel: target.channel })
  },
  /** @param {string} channel @param {number} since */
  countErrors(channel, since) {
    return s.countErrors.get(channel, since)
  },
  /** @param {string | null} channel */
  pendingCounts(channel) {
    return channel === null ? s.pendingAll.all() : s.pendingOf.all(channel)
  },
  /** @param {string} channel @param {string} component @param {string} key */
  getState(channel, component, key) {
    return s.getState.get(channel, component, key) ?? null
  },
  /** @param {string} channel @param {string} component @param {string} key @param {string} value @param {number} t */
  setState(channel, component, key, value, t) {
    s.setState.run(channel, component, key, value, t)
  },
  /**
   * Sets the state only if it still holds `expected` (null: absent); true when it did.
   * @param {string} channel @param {string} component @param {string} key @param {string | null} expected @param {string} value @param {number} t
   */
  swapState(channel, component, key, expected, value, t) {
    const r = expected === null ? s.addState.run(channel, component, key, value, t) : s.swapState.run(value, t, channel, component, key, expected)
    return r.changes === 1
  },
  diagnostics() {
    return { synchronous: db.pragma('synchronous', { simple: true }), journalMode: db.pragma('journal_mode', { simple: true }), commits }
  },
  /**
   * What the store's data takes: the database's pages in use (free pages, left by deleted rows and
   * reused, not counted), and the WAL's working size (its frames up to the automatic checkpoint),
   * which the WAL file keeps between checkpoints whatever it holds.
   * @returns {{ used: number, walAllowance: number }}
   */
  usage() {
    const pageSize = /** @type {number} */ (db.pragma('page_size', { simple: true }))
    const pages = /** @type {number} */ (db.pragma('page_count', { simple: true }))
    const free = /** @type {number} */ (db.pragma('freelist_count', { simple: true }))
    const frames = /** @type {number} */ (db.pragma('wal_autocheckpoint', { simple: true }))
    return { used: (pages - free) * pageSize, walAllowance: WAL_HEADER_BYTES + frames * (WAL_FRAME_HEADER_BYTES + pageSize) }
  },
}

/** @typedef {{ channel?: string, status?: string, since?: number, until?: number, after?: number, limit?: number, order?: string, key?: { name: string, value: string } }} ListFilter */

/**
 * The SQL of a `list`: with a search key, an index lookup in message_keys (by name, value and, when
 * given, channel) joined to the messages found.
 * @param {ListFilter} filter
 */
function listQuery(filter) {
  const where = []
  const params = []
  const m = filter.key ? 'm.' : ''
  if (filter.key) { where.push('k.name = ?', 'k.value = ?'); params.push(filter.key.name, filter.key.value) }
  if (filter.channel) { where.push(filter.key ? 'k.channel = ?' : 'channel = ?'); params.push(filter.channel) }
  if (filter.status) { where.push(`${m}status = ?`); params.push(filter.status) }
  if (filter.since !== undefined) { where.push(`${m}received_at >= ?`); params.push(filter.since) }
  if (filter.until !== undefined) { where.push(`${m}received_at < ?`); params.push(filter.until) }
  if (filter.after !== undefined) { where.push(`${filter.key ? 'k.' : ''}seq ${filter.order === 'asc' ? '>' : '<'} ?`); params.push(filter.after) }
  const from = filter.key ? 'message_keys k JOIN messages m ON m.seq = k.seq' : 'messages'
  const sql = `SELECT ${m}* FROM ${from} ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY ${filter.key ? 'k.' : ''}seq ${filter.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`
  params.push(filter.limit ?? 100)
  return { sql, params }
}

/** @param {Op} op @returns {unknown} */
function apply(op) {
  const fn = /** @type {Record<string, (...a: any[]) => unknown>} */ (ops)[op[1]]
  if (!fn) throw new Error(`unknown store operation ${op[1]}`)
  return fn(...op.slice(2))
}

/** What the main thread learns of a failed operation: the message, and whether it only read. @param {unknown} e @param {Op} op */
const failure = (e, op) => ({ message: e instanceof Error ? e.message : String(e), read: READS.has(op[1]) })

/** Runs each operation with `run`, turning a failure into that operation's result. @param {Op[]} ops @param {(op: Op) => unknown} run */
const each = (ops, run) => ops.map((op) => {
  try {
    return /** @type {Result} */ ([op[0], true, run(op)])
  } catch (e) {
    return /** @type {Result} */ ([op[0], false, failure(e, op)])
  }
})

const savepoint = db.transaction((/** @type {Op} */ op) => apply(op))
const runBatch = db.transaction((/** @type {Op[]} */ batch) => each(batch, savepoint))

/** Runs every waiting operation in one transaction and posts the results once it has committed. */
function drain(/** @type {{ ops?: Op[], close?: boolean }} */ first) {
  /** @type {Op[]} */
  let batch = []
  let closing = false
  for (let m = first; ; ) {
    if (m.ops) batch.push(...m.ops)
    if (m.close) closing = true
    const next = receiveMessageOnPort(port)
    if (!next) break
    m = next.message
  }
  /** @type {Result[]} */
  const answered = []
  const outside = batch.filter((op) => OUTSIDE.has(op[1]))
  if (outside.length > 0) batch = batch.filter((op) => !OUTSIDE.has(op[1]))
  if (batch.length > 0) {
    /** @type {Result[]} */
    let results
    if (batch.every((op) => READS.has(op[1]))) results = each(batch, apply)
    else {
      try {
        results = runBatch.immediate(batch)
        commits++
      } catch (e) {
        // The transaction itself failed (busy, disk full): nothing in it was written.
        results = batch.map((op) => /** @type {Result} */ ([op[0], false, { ...failure(e, op), batch: true }]))
      }
    }
    answered.push(...results.filter((r) => r[0] !== 0))
  }
  if (outside.length > 0) answered.push(...each(outside, apply))
  // Exactly one answer per batch, even an empty one: the main thread posts its next batch on it.
  port.postMessage(answered)
  if (closing) {
    db.close()
    port.close()
  }
}

port.on('message', drain)
