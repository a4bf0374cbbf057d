import { setTimeout as sleep } from 'node:timers/promises'
import { StoreError } from '../errors.ts'
import { previewedSet } from '../previewed.ts'
import { INTERRUPTED_ERROR, MAX_INTERRUPTIONS, type DeliveryUpdate, type FilterRetry, type PurgeTarget, type ResubmitTarget } from '../types.ts'
import type { MessageRow } from '../rows.ts'
import type { Db, Queryable } from './db.ts'
import type { ApplyBatch, PendingOp } from './group-commit.ts'

/** How a channel's claims keep order across engines: per order key, the whole channel (`concurrency: 1`), or none. */
export type ClaimOrder = 'key' | 'channel' | 'none'

const UNFINISHED = `('queued', 'in-flight', 'retrying')`
const FINISHED = `('delivered', 'filtered', 'error')`


type Indexed = [op: PendingOp, index: number]
/** Adds a parameter and returns its placeholder with a cast (`$3::text[]`). */
type Param = (value: unknown, type: string) => string

/** An enqueue with a dedupe key. */
const hasDedupeKey = (op: PendingOp) => op.args[5] !== null
/** An enqueue whose dedupe key has a window (`dedupeWindowMs`): an older holder of the key may give it up first. */
const hasDedupeWindow = (op: PendingOp) => hasDedupeKey(op) && op.args[10] !== null
/** An enqueue whose dedupe key is a keyed hash, with the clear key looked up too (`clearDedupeKey`: stored before encryption). */
const hasClearKey = (op: PendingOp) => hasDedupeKey(op) && op.args[11] !== null
/** One delivery row: message, destination, part. */
const deliveryKey = (id: string, u: DeliveryUpdate) => `${id}\u0000${u.destination}\u0000${u.part}`

function parameters(): { params: unknown[]; p: Param } {
  const params: unknown[] = []
  return { params, p: (value, type) => `$${params.push(value)}::${type}` }
}

/**
 * The SQL of the store's writes, applied as one transaction per group commit. Operations of one kind
 * become one statement over arrays (a burst of 64 enqueues is one INSERT), in an order that keeps
 * each caller's view: enqueues first, then delivery outcomes, filters' retries, completions, releases, resubmissions
 * and state, and claims last, so a claim sees everything committed with it (their channels' claim
 * locks, though, are the batch's first: see `lockClaims`).
 *
 * The usual batch under load (enqueues, completions with their outcomes, one unordered claim) is one
 * statement instead: its parts are common table expressions of one INSERT … UPDATE, committed on
 * its own, so the batch costs one round trip instead of six. The claim in it sees the messages
 * committed before the batch, not those the batch enqueues (the next batch claims those).
 *
 * Every change to a claimed message is fenced by `owner`: an engine whose lease expired (and whose
 * claims another engine took over) can no longer record, complete or release them.
 *
 * An operation run again after its batch failed (`PendingOp.rerun`: the batch may have committed
 * all the same) runs in a transaction of its own, made to find what a first run that committed left:
 * an enqueue its own row (stored, with that row's seq: not a duplicate key, nor a duplicate of
 * itself), a delivery outcome its own attempt (not counted twice), a completion its own outcome
 * (its channel returned, so the message is counted finished once). A release or a state written
 * again changes nothing. Only the rerun pays for these look-ups. A resubmission or a purge cannot
 * tell its own work from the rows (its messages found queued already, the next batch deleted): its
 * rerun asks PostgreSQL whether the first run's transaction committed (see `firstRunCommitted`).
 */
export function batchApplier(owner: () => string): ApplyBatch {
  return async (db, ops) => {
    const me = owner()
    const of = (kind: string): Indexed[] => ops.flatMap((op, i) => (op.kind === kind ? [[op, i] as Indexed] : []))
    const rerun = ops.some((op) => op.rerun === true)
    const committed = rerun ? await firstRunCommitted(db, ops) : undefined
    if (committed) return committed
    if (!rerun && oneStatement(ops)) return applyAsOneStatement(db, me, ops.length, of)
    return db.transaction(async (tx) => {
      const results: unknown[] = new Array(ops.length)
      await lockClaims(tx, of('claim'))
      await enqueueAll(tx, of('enqueue'), results, rerun)
      await recordDeliveries(tx, me, [...of('delivery'), ...of('complete')].sort((a, b) => a[1] - b[1]), rerun)
      await recordFilterRetries(tx, me, of('filterRetry'))
      await completeAll(tx, me, of('complete'), results, rerun)
      for (const [op, i] of of('release')) results[i] = await release(tx, me, op.args[0], op.args[1])
      for (const [op, i] of of('resubmit')) results[i] = await resubmit(tx, op.args[0], op.args[1])
      for (const [op, i] of of('purge')) results[i] = await purgeBatch(tx, op.args[0], op.args[1])
      for (const [op] of of('setState')) await setState(tx, op.args)
      for (const [op, i] of of('claim')) results[i] = await claim(tx, me, op.args)
      if (ops.some((op) => TOLD_BY_OUTCOME.has(op.kind))) await keepTried(tx, ops, results)
      return results
    })
  }
}

/** The kinds whose rerun asks whether the first run committed (see `firstRunCommitted`). */
const TOLD_BY_OUTCOME: ReadonlySet<string> = new Set(['resubmit', 'purge'])
/** How long a rerun waits for a first run's transaction still in progress (its COMMIT under way) to end (ms). */
const OUTCOME_WAIT_MS = 5_000

/** Keeps, on each operation of `TOLD_BY_OUTCOME`'s kinds, its result and the transaction's id, just before COMMIT. */
async function keepTried(tx: Queryable, ops: readonly PendingOp[], results: unknown[]): Promise<void> {
  const [{ xid }] = (await tx.query<{ xid: number }>('SELECT txid_current() AS xid')) as [{ xid: number }]
  ops.forEach((op, i) => { if (TOLD_BY_OUTCOME.has(op.kind)) op.tried = { xid, result: results[i] } })
}

/**
 * The results of a rerun (one operation, see `GroupCommit`) whose first run reached COMMIT in a
 * transaction that committed after all (its answer lost): what that run returned. Undefined when
 * the transaction was rolled back, or never reached COMMIT: the operation runs again. A transaction
 * still in progress after `OUTCOME_WAIT_MS` fails the operation, its outcome unknown.
 */
async function firstRunCommitted(db: Db, ops: readonly PendingOp[]): Promise<unknown[] | undefined> {
  const [op] = ops
  if (ops.length !== 1 || !op!.tried) return undefined
  const { xid, result } = op!.tried
  op!.tried = undefined
  for (const deadline = Date.now() + OUTCOME_WAIT_MS; ; await sleep(50)) {
    const [{ status }] = (await db.query<{ status: string | null }>('SELECT txid_status($1::bigint) AS status', [xid])) as [{ status: string | null }]
    if (status === 'committed') return [result]
    if (status === 'aborted') return undefined
    if (status !== 'in progress' || Date.now() > deadline) {
      throw new StoreError(`whether the ${op!.kind} committed is unknown (its transaction ${xid} is ${status ?? 'too old to tell'}): look before running it again`)
    }
  }
}

/**
 * Whether a batch fits one statement: only enqueues (without a dedupe window or search keys),
 * completions (each delivery named once) and at most one unordered claim.
 */
function oneStatement(ops: readonly PendingOp[]): boolean {
  let claims = 0
  const deliveries = new Set<string>()
  for (const op of ops) {
    if (op.kind === 'enqueue') {
      if (hasDedupeWindow(op) || (op.args[9] && Object.keys(op.args[9]).length > 0)) return false
    } else if (op.kind === 'complete') {
      for (const u of op.args[2] as DeliveryUpdate[]) {
        const key = deliveryKey(op.args[0], u)
        if (deliveries.has(key)) return false
        deliveries.add(key)
      }
    } else if (op.kind === 'claim') {
      if (++claims > 1 || op.args[3] !== 'none') return false
    } else return false
  }
  return true
}

/** The columns of the one statement's rows (after `kind`), as `CLAIMED_COLUMNS` has them. */
const OUT_COLUMNS = [['id', 'text'], ['seq', 'bigint'], ['channel', 'text'], ['status', 'text'], ['body', 'text'], ['content_type', 'text'], ['attributes', 'text'], ['dedupe_key', 'text'],
  ['order_key', 'text'], ['received_at', 'bigint'], ['updated_at', 'bigint'], ['error', 'text'], ['interrupted', 'int'],
  ['filter_attempts', 'int'], ['filter_elapsed', 'bigint'], ['filter_next_attempt_at', 'bigint'], ['deliveries', 'text']] as const

type OutRow = MessageRow & { kind: 'enqueued' | 'prior' | 'completed' | 'claimed'; deliveries: unknown }

const dedupeOf = (channel: string, key: string | null) => `${channel}\u0000${key}`

async function applyAsOneStatement(db: Db, me: string, n: number, of: (kind: string) => Indexed[]): Promise<unknown[]> {
  const results: unknown[] = new Array(n)
  const { params, p } = parameters()
  const enqueues = of('enqueue')
  const completes = of('complete')
  const [claimOp] = of('claim')
  const ctes: string[] = []
  const outputs: string[] = []
  // UNION ALL takes its column names from the first SELECT: every branch names them all, NULL for those it lacks.
  const select = (kind: OutRow['kind'], from: string, ...present: string[]) =>
    `SELECT '${kind}' AS kind, ${OUT_COLUMNS.map(([c, type]) => (present.includes(c) ? c : `NULL::${type} AS ${c}`)).join(', ')} FROM ${from}`
  const keyed = enqueues.filter(([op]) => hasDedupeKey(op))
  if (enqueues.length > 0) {
    ctes.push(insertMessagesCtes(p, enqueues))
    outputs.push(select('enqueued', 'enq', 'id', 'seq'))
  }
  if (keyed.length > 0) {
    // A duplicate's first message: stored before this statement (`prior` sees the table as it was), or by it (among `enq`'s rows).
    ctes.push(`prior AS (${firstsSql(p, keyed)})`)
    outputs.push(select('prior', 'prior', 'id', 'channel', 'dedupe_key'))
  }
  const rows = deliveryRowsOf(completes)
  if (rows.length > 0) ctes.push(upsertDeliveriesCtes(p, me, rows))
  if (completes.length > 0) {
    ctes.push(`done AS (${completeSql(p, me, completes)})`)
    outputs.push(select('completed', 'done', 'id', 'channel'))
  }
  if (claimOp) {
    ctes.push(claimCtes(p, me, claimOp[0].args))
    outputs.push(select('claimed', 'claimed', ...OUT_COLUMNS.map(([c]) => c)))
  }
  // The text depends only on which parts are present, so each shape is parsed once per connection.
  const shape = `weir_batch_${enqueues.length > 0 ? 'e' : ''}${keyed.length > 0 ? 'p' : ''}${keyed.some(([op]) => hasClearKey(op)) ? 'f' : ''}${rows.length > 0 ? 'd' : ''}${completes.length > 0 ? 'c' : ''}${claimOp ? 'k' : ''}`
  const out = await db.prepared<OutRow>(shape, `WITH ${ctes.join(',\n')}\n${outputs.join('\nUNION ALL ')}`, params)
  const seqs = new Map<string, number>()
  const channels = new Map<string, string>()
  const firsts = new Map<string, string>()
  const claimed: OutRow[] = []
  for (const r of out) {
    if (r.kind === 'enqueued') seqs.set(r.id, Number(r.seq))
    else if (r.kind === 'prior') firsts.set(dedupeOf(r.channel, r.dedupe_key), r.id)
    else if (r.kind === 'completed') channels.set(r.id, r.channel)
    else claimed.push(r)
  }
  for (const [op] of keyed) {
    if (seqs.has(op.args[1])) firsts.set(dedupeOf(op.args[0], op.args[5]), op.args[1])
  }
  enqueueResults(enqueues, seqs, firsts, results)
  for (const [op, i] of completes) results[i] = channels.get(op.args[0]) ?? null
  if (claimOp) results[claimOp[1]] = claimed.sort((a, b) => Number(a.seq) - Number(b.seq))
  return results
}

/**
 * Common table expressions that insert the enqueued messages in the order asked (`enq`: their id
 * and seq; a duplicate, same channel and dedupe key, or a message stored under its clear key, is not
 * inserted) and their bodies. Without a dedupe key in the batch it is a plain INSERT (ON CONFLICT
 * costs a speculative insertion per row). A `rerun` does not insert a message whose id is stored
 * already either (its first run committed).
 */
function insertMessagesCtes(p: Param, ops: Indexed[], rerun = false): string {
  const col = (k: number, type: string) => p(ops.map(([op]) => op.args[k] ?? null), type)
  const ids = col(1, 'text[]')
  const bodies = col(2, 'text[]')
  const clear = ops.some(([op]) => hasClearKey(op))
  return `enq AS (
      INSERT INTO weir_messages (channel, id, content_type, attributes, dedupe_key, received_at, updated_at, order_key, error, status)
      SELECT channel, id, content_type, attributes, dedupe_key, t, t, order_key, error, CASE WHEN error IS NULL THEN 'queued' ELSE 'error' END
      FROM unnest(${col(0, 'text[]')}, ${ids}, ${col(3, 'text[]')}, ${col(4, 'text[]')}, ${col(5, 'text[]')}, ${col(6, 'bigint[]')}, ${col(7, 'text[]')}, ${col(8, 'text[]')}${clear ? `, ${clearKeys(p, ops)}` : ''}) WITH ORDINALITY
        AS i (channel, id, content_type, attributes, dedupe_key, t, order_key, error, ${clear ? 'clear_key, ' : ''}n)
      ${clear ? 'WHERE NOT EXISTS (SELECT 1 FROM weir_messages o WHERE o.channel = i.channel AND o.dedupe_key = i.clear_key)' : ''}
      ORDER BY n
      ${rerun ? 'ON CONFLICT DO NOTHING' : ops.some(([op]) => hasDedupeKey(op)) ? 'ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING' : ''}
      RETURNING id, seq
    ), enq_body AS (
      INSERT INTO weir_message_bodies (seq, body) SELECT enq.seq, b.body FROM enq JOIN unnest(${ids}, ${bodies}) AS b (id, body) ON b.id = enq.id
    )`
}

async function enqueueAll(tx: Queryable, ops: Indexed[], results: unknown[], rerun = false): Promise<void> {
  if (ops.length === 0) return
  // Dedupe keys whose window has passed move to the new message: the old one keeps its content, without the key.
  const windowed = ops.filter(([op]) => hasDedupeWindow(op)).flatMap(([op]) => (hasClearKey(op) ? [[op, op.args[5]], [op, op.args[11]]] : [[op, op.args[5]]]))
  if (windowed.length > 0) {
    // A rerun leaves the key of its own message (stored by a first run that committed) where it is.
    const params = [windowed.map(([op]) => op.args[0]), windowed.map(([, key]) => key), windowed.map(([op]) => op.args[6] - op.args[10])]
    await tx.query(`UPDATE weir_messages m SET dedupe_key = NULL FROM unnest($1::text[], $2::text[], $3::bigint[]${rerun ? ', $4::text[]' : ''}) AS d (channel, dedupe_key, until${rerun ? ', id' : ''})
      WHERE m.channel = d.channel AND m.dedupe_key = d.dedupe_key AND m.received_at <= d.until${rerun ? ' AND m.id <> d.id' : ''}`,
    rerun ? [...params, windowed.map(([op]) => op.args[1])] : params)
  }
  const insert = parameters()
  const inserted = await tx.query<{ id: string; seq: string }>(`WITH ${insertMessagesCtes(insert.p, ops, rerun)} SELECT id, seq FROM enq`, insert.params)
  const seqs = new Map(inserted.map((r) => [r.id, Number(r.seq)]))
  await insertSearchKeys(tx, ops, seqs)
  const missing = ops.filter(([op]) => !seqs.has(op.args[1]))
  if (rerun && missing.length > 0) {
    // Stored by a first run that committed (its answer lost): stored, with that row's seq.
    const own = await tx.query<{ id: string; seq: number }>('SELECT id, seq FROM weir_messages WHERE id = ANY($1::text[])', [missing.map(([op]) => op.args[1])])
    for (const r of own) seqs.set(r.id, Number(r.seq))
  }
  const dupes = rerun ? missing.filter(([op]) => !seqs.has(op.args[1])) : missing
  const firsts = new Map<string, string>()
  if (dupes.length > 0) {
    // In the same transaction, after the insert: it sees a first stored by this batch too.
    const { params, p } = parameters()
    const rows = await tx.query<{ channel: string; dedupe_key: string; id: string }>(firstsSql(p, dupes), params)
    for (const r of rows) firsts.set(dedupeOf(r.channel, r.dedupe_key), r.id)
  }
  enqueueResults(ops, seqs, firsts, results)
}

/** The clear dedupe keys of `ops`, as a parameter (null where an enqueue has none). */
const clearKeys = (p: Param, ops: Indexed[]) => p(ops.map(([op]) => (hasClearKey(op) ? op.args[11] : null)), 'text[]')

/**
 * The messages stored under the dedupe keys of `ops` (or their clear keys): `id` of the message,
 * with the `channel` and `dedupe_key` of the enqueue it is the first of.
 */
function firstsSql(p: Param, ops: Indexed[]): string {
  const clear = ops.some(([op]) => hasClearKey(op))
  return `SELECT m.id, d.channel, d.dedupe_key FROM weir_messages m
    JOIN unnest(${p(ops.map(([op]) => op.args[0]), 'text[]')}, ${p(ops.map(([op]) => op.args[5]), 'text[]')}${clear ? `, ${clearKeys(p, ops)}` : ''})
      AS d (channel, dedupe_key${clear ? ', clear_key' : ''})
      ON m.channel = d.channel AND m.dedupe_key ${clear ? 'IN (d.dedupe_key, d.clear_key)' : '= d.dedupe_key'}`
}

/** Each enqueue's result: `[seq, null]` when stored, `[0, id of the first]` for a duplicate (`firsts` by channel and dedupe key). */
function enqueueResults(ops: Indexed[], seqs: ReadonlyMap<string, number>, firsts: ReadonlyMap<string, string>, results: unknown[]): void {
  for (const [op, i] of ops) {
    const seq = seqs.get(op.args[1])
    results[i] = seq !== undefined ? [seq, null] : [0, firsts.get(dedupeOf(op.args[0], op.args[5])) ?? null]
  }
}
/** The search key values (`EnqueueOptions.searchKeys`) of the messages just inserted (duplicates have none). */
async function insertSearchKeys(tx: Queryable, ops: Indexed[], seqs: ReadonlyMap<string, number>): Promise<void> {
  const rows: Array<[string, string, string, number]> = []
  for (const [op] of ops) {
    const seq = seqs.get(op.args[1])
    if (seq === undefined || !op.args[9]) continue
    for (const [name, values] of Object.entries(op.args[9] as Record<string, string[]>)) for (const v of values) rows.push([name, v, op.args[0], seq])
  }
  if (rows.length === 0) return
  await tx.query(`INSERT INTO weir_message_keys (name, value, channel, seq)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) ON CONFLICT DO NOTHING`,
  [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), rows.map((r) => r[3])])
}

interface UpdateRow { id: string; u: DeliveryUpdate; retrying: boolean }

/** The delivery outcomes of `delivery` and `complete` operations, in the order given. */
function deliveryRowsOf(ops: Indexed[]): UpdateRow[] {
  const rows: UpdateRow[] = []
  for (const [op] of ops) {
    if (op.kind === 'delivery') rows.push({ id: op.args[0], u: op.args[1], retrying: op.args[1].status === 'retrying' })
    else for (const u of op.args[2] as DeliveryUpdate[]) rows.push({ id: op.args[0], u, retrying: false })
  }
  return rows
}

/**
 * Delivery outcomes of `delivery` and `complete` operations, in the order asked, as few upserts as
 * the repeated keys allow. A `rerun` skips an attempt already recorded (by a first run that committed).
 */
async function recordDeliveries(tx: Queryable, me: string, ops: Indexed[], rerun = false): Promise<void> {
  const rows = deliveryRowsOf(ops)
  // One upsert may not touch a row twice: a key seen again starts the next round.
  let round: UpdateRow[] = []
  const seen = new Set<string>()
  for (const r of rows) {
    const key = deliveryKey(r.id, r.u)
    if (seen.has(key)) {
      await upsertDeliveries(tx, me, round, rerun)
      round = []
      seen.clear()
    }
    seen.add(key)
    round.push(r)
  }
  await upsertDeliveries(tx, me, round, rerun)
  const retrying = rows.filter((r) => r.retrying).map((r) => r.id)
  if (retrying.length > 0) {
    await tx.query(`UPDATE weir_messages SET status = 'retrying', updated_at = $3 WHERE id = ANY($1::text[]) AND status = 'in-flight' AND owner = $2`,
      [retrying, me, ops[0]![0].args.at(-1)])
  }
}

async function upsertDeliveries(tx: Queryable, me: string, rows: UpdateRow[], rerun: boolean): Promise<void> {
  if (rows.length === 0) return
  const { params, p } = parameters()
  await tx.query(`WITH ${upsertDeliveriesCtes(p, me, rows, rerun)} SELECT 1`, params)
}

/**
 * Common table expressions that upsert delivery rows (only of messages this engine holds) and add
 * an attempt record for each outcome that was an attempt. The upsert is an UPDATE of the rows that
 * exist and an INSERT of the others, not INSERT … ON CONFLICT, which costs a speculative insertion
 * (one more WAL record) per row. Only the engine holding a message writes its rows; should two ever
 * insert one row at once, the second fails on the primary key and the group commit retries its
 * operations one by one, when the fencing by owner filters the stale one out. A retry scheduled with
 * the budget charged (`DeliveryUpdate.budget`) stores it in `budget_attempts` and `budget_since`.
 *
 * A `rerun` (see `batchApplier`) leaves out an outcome whose attempt is recorded already (the same
 * delivery, start and end): its first run committed it, and the outcome with it.
 */
function upsertDeliveriesCtes(p: Param, me: string, rows: UpdateRow[], rerun = false): string {
  const col = (f: (r: UpdateRow) => unknown, type: string) => p(rows.map((r) => f(r) ?? null), type)
  const sameRow = 'd.message_id = u.message_id AND d.destination = u.destination AND d.part = u.part'
  return `u AS (
      SELECT * FROM unnest(${col((r) => r.id, 'text[]')}, ${col((r) => r.u.destination, 'text[]')}, ${col((r) => r.u.part, 'int[]')}, ${col((r) => r.u.status, 'text[]')},
          ${col((r) => (r.u.attempt ? 1 : 0), 'int[]')}, ${col((r) => r.u.attempt?.startedAt, 'bigint[]')}, ${col((r) => r.u.attempt?.endedAt, 'bigint[]')}, ${col((r) => r.u.nextAttemptAt, 'bigint[]')},
          ${col((r) => r.u.attempt?.error, 'text[]')}, ${col((r) => r.u.attempt?.responseStatus, 'int[]')}, ${col((r) => r.u.attempt?.excerpt, 'text[]')}, ${col((r) => r.u.attempt?.outcome, 'text[]')},
          ${col((r) => r.u.budget?.charged, 'int[]')}, ${col((r) => r.u.budget?.elapsedMs, 'bigint[]')})
        AS u (message_id, destination, part, status, inc, started, ended, next, error, response_status, excerpt, outcome, charged, elapsed)
      WHERE EXISTS (SELECT 1 FROM weir_messages m WHERE m.id = u.message_id AND m.owner = ${p(me, 'text')})${rerun ? `
        AND NOT (u.inc = 1 AND EXISTS (SELECT 1 FROM weir_attempts a
          WHERE a.message_id = u.message_id AND a.destination = u.destination AND a.part = u.part AND a.started_at = u.started AND a.ended_at = u.ended))` : ''}
    ), upd AS (
      UPDATE weir_deliveries d SET
        status = u.status,
        attempts = d.attempts + u.inc,
        first_attempt_at = coalesce(d.first_attempt_at, u.started),
        budget_attempts = CASE WHEN u.charged IS NULL THEN d.budget_attempts ELSE d.attempts + u.inc - u.charged END,
        budget_since = CASE WHEN u.charged IS NOT NULL THEN u.next - u.elapsed
          WHEN d.budget_attempts IS NULL THEN NULL ELSE coalesce(d.budget_since, u.started) END,
        last_attempt_at = coalesce(u.started, d.last_attempt_at),
        next_attempt_at = u.next,
        last_error = CASE WHEN u.inc > 0 THEN u.error ELSE d.last_error END,
        response_status = CASE WHEN u.inc > 0 THEN u.response_status ELSE d.response_status END,
        response_excerpt = CASE WHEN u.inc > 0 THEN u.excerpt ELSE d.response_excerpt END
      FROM u WHERE ${sameRow}
      RETURNING d.message_id, d.destination, d.part, d.attempts
    ), ins AS (
      INSERT INTO weir_deliveries (message_id, destination, part, status, attempts, budget_attempts, budget_since, first_attempt_at, last_attempt_at, next_attempt_at, last_error, response_status, response_excerpt)
      SELECT message_id, destination, part, status, inc, inc - charged, next - elapsed, started, started, next, error, response_status, excerpt FROM u
      WHERE NOT EXISTS (SELECT 1 FROM weir_deliveries d WHERE ${sameRow})
      RETURNING message_id, destination, part, attempts
    ), up AS (
      SELECT * FROM upd UNION ALL SELECT * FROM ins
    ), attempt AS (
      INSERT INTO weir_attempts (message_id, destination, part, attempt, started_at, ended_at, outcome, response_status, error, excerpt)
      SELECT u.message_id, u.destination, u.part, up.attempts, u.started, u.ended, u.outcome, u.response_status, u.error, u.excerpt
      FROM u JOIN up USING (message_id, destination, part) WHERE u.inc = 1
    )`
}

/** Clears the retry of a message's filters (see `recordFilterRetries`): the message finished, or was resubmitted with a new budget. */
const NO_FILTER_RETRY = 'filter_attempts = NULL, filter_elapsed = NULL, filter_next_attempt_at = NULL'

/**
 * Stores the retries of filters the runtime scheduled (`recordFilterRetry`: the budget charged and
 * when the next attempt is due), fenced by owner like every change to a claimed message. The
 * message's status stays as it is (in flight).
 */
async function recordFilterRetries(tx: Queryable, me: string, ops: Indexed[]): Promise<void> {
  if (ops.length === 0) return
  // One row per message (an UPDATE joined to two would take either): the latest asked for.
  const latest = [...new Map(ops.map(([op]) => [op.args[0] as string, op.args[1] as FilterRetry | null]))]
  await tx.query(`UPDATE weir_messages m SET filter_attempts = f.charged, filter_elapsed = f.elapsed, filter_next_attempt_at = f.next
    FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[]) AS f (id, charged, elapsed, next)
    WHERE m.id = f.id AND m.owner = $5 AND m.status IN ${UNFINISHED}`,
  [latest.map(([id]) => id), latest.map(([, r]) => r?.charged ?? null), latest.map(([, r]) => r?.elapsedMs ?? null), latest.map(([, r]) => r?.nextAttemptAt ?? null), me])
}

/** UPDATE … RETURNING id, channel of the messages this engine held and now finishes. */
function completeSql(p: Param, me: string, ops: Indexed[]): string {
  return `UPDATE weir_messages m SET status = c.status, updated_at = c.t, error = c.error, owner = NULL, ${NO_FILTER_RETRY}
    FROM unnest(${p(ops.map(([o]) => o.args[0]), 'text[]')}, ${p(ops.map(([o]) => o.args[1]), 'text[]')}, ${p(ops.map(([o]) => o.args[3] ?? null), 'text[]')}, ${p(ops.map(([o]) => o.args[4]), 'bigint[]')}) AS c (id, status, error, t)
    WHERE m.id = c.id AND m.owner = ${p(me, 'text')} AND m.status IN ${UNFINISHED}
    RETURNING m.id, m.channel`
}

/**
 * Completes the messages of `ops`: each one's result is its channel, or null when this engine did
 * not hold it. A `rerun` whose message is finished already with this very outcome (status, error and
 * time: its first run committed) gets its channel too, so that it is counted finished once.
 */
async function completeAll(tx: Queryable, me: string, ops: Indexed[], results: unknown[], rerun = false): Promise<void> {
  if (ops.length === 0) return
  const { params, p } = parameters()
  const rows = await tx.query<{ id: string; channel: string }>(completeSql(p, me, ops), params)
  const channels = new Map(rows.map((r) => [r.id, r.channel]))
  const missing = ops.filter(([op]) => !channels.has(op.args[0]))
  if (rerun && missing.length > 0) {
    const own = await tx.query<{ id: string; channel: string }>(`SELECT m.id, m.channel FROM weir_messages m
      JOIN unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS c (id, status, error, t) ON m.id = c.id
      WHERE m.owner IS NULL AND m.status = c.status AND m.error IS NOT DISTINCT FROM c.error AND m.updated_at = c.t`,
    [missing.map(([o]) => o.args[0]), missing.map(([o]) => o.args[1]), missing.map(([o]) => o.args[3] ?? null), missing.map(([o]) => o.args[4])])
    for (const r of own) channels.set(r.id, r.channel)
  }
  for (const [op, i] of ops) results[i] = channels.get(op.args[0]) ?? null
}

async function release(tx: Queryable, me: string, ids: string[], t: number): Promise<string[]> {
  const rows = await tx.query<{ channel: string }>(`
    WITH r AS (
      UPDATE weir_messages SET status = 'queued', owner = NULL, updated_at = $3
      WHERE id = ANY($1::text[]) AND owner = $2 AND status IN ('in-flight', 'retrying') RETURNING id, channel
    ), d AS (
      UPDATE weir_deliveries SET status = 'queued' WHERE message_id IN (SELECT id FROM r) AND status IN ('in-flight', 'retrying')
    )
    SELECT channel FROM r`, [ids, me, t])
  return rows.map((r) => r.channel)
}

/**
 * The SET of a requeue after an engine stopped without releasing its claims: a message in flight
 * (not waiting out a retry) counts one more interruption, and at MAX_INTERRUPTIONS goes to error
 * instead of the queue. Old values on the right, as PostgreSQL evaluates them.
 */
const giveUp = `m.status = 'in-flight' AND m.interrupted + 1 >= ${MAX_INTERRUPTIONS}`
const REQUEUE_SET = `interrupted = m.interrupted + (m.status = 'in-flight')::int, owner = NULL,
  status = CASE WHEN ${giveUp} THEN 'error' ELSE 'queued' END,
  error = CASE WHEN ${giveUp} THEN '${INTERRUPTED_ERROR.replaceAll("'", "''")}' ELSE m.error END,
  ${['filter_attempts', 'filter_elapsed', 'filter_next_attempt_at'].map((c) => `${c} = CASE WHEN ${giveUp} THEN NULL ELSE m.${c} END`).join(', ')}`
/** Their deliveries follow them: back to the queue, or to error with a message given up on. */
const REQUEUE_DELIVERIES = `UPDATE weir_deliveries d SET status = CASE WHEN r.status = 'error' THEN 'error' ELSE 'queued' END
      FROM r WHERE d.message_id = r.id AND d.status IN ('in-flight', 'retrying')`

/** What a requeue did: how many went back to the queue, and those put in error (see REQUEUE_SET). */
export interface Requeued { n: number; gaveUp: Array<{ id: string; channel: string }> }

/** Returns the claims of `engines` (leaving, or whose lease ran out) to the queue, their delivered destinations kept. */
export async function requeueClaimsOf(tx: Queryable, engines: string[], t: number): Promise<Requeued> {
  const rows = await tx.query<Requeued>(`
    WITH r AS (
      UPDATE weir_messages m SET ${REQUEUE_SET}, updated_at = $2
      WHERE owner = ANY($1::text[]) AND status IN ('in-flight', 'retrying') RETURNING m.id, m.channel, m.status
    ), d AS (${REQUEUE_DELIVERIES})
    SELECT (count(*) FILTER (WHERE status = 'queued'))::int AS n, coalesce(json_agg(json_build_object('id', id, 'channel', channel)) FILTER (WHERE status = 'error'), '[]') AS "gaveUp" FROM r`, [engines, t])
  return rows[0]!
}

/**
 * Returns to the queue every claim whose engine has no row in `weir_engines` (their delivered
 * destinations kept): how many, and the engines they belonged to. A claim is picked as the
 * statement's snapshot shows it and updated only if its owner is still the same, so one that another
 * engine claimed meanwhile (under a row this snapshot does not show yet) stays that engine's.
 */
export async function requeueOrphanedClaims(tx: Queryable, t: number): Promise<Requeued & { owners: string[] }> {
  const rows = await tx.query<Requeued & { owners: string[] }>(`
    WITH orphaned AS (
      SELECT m.seq, m.owner FROM weir_messages m
      WHERE m.status IN ('in-flight', 'retrying') AND NOT EXISTS (SELECT 1 FROM weir_engines e WHERE e.id = m.owner)
    ), r AS (
      UPDATE weir_messages m SET ${REQUEUE_SET}, updated_at = $1 FROM orphaned o
      WHERE m.seq = o.seq AND m.owner IS NOT DISTINCT FROM o.owner AND m.status IN ('in-flight', 'retrying') RETURNING m.id, m.channel, m.status, o.owner
    ), d AS (${REQUEUE_DELIVERIES})
    SELECT (count(*) FILTER (WHERE status = 'queued'))::int AS n, coalesce(json_agg(json_build_object('id', id, 'channel', channel)) FILTER (WHERE status = 'error'), '[]') AS "gaveUp",
      coalesce(array_agg(DISTINCT owner) FILTER (WHERE owner IS NOT NULL), '{}') AS owners FROM r`, [t])
  return rows[0]!
}

/**
 * Queues the finished messages `target` names again, their deliveries not delivered (all of them
 * when every one was) with a new retry budget: `budget_attempts` the attempts so far, `budget_since`
 * set by the next attempt; `attempts` keeps counting, as the attempt history does. Each gets a later
 * `updated_at` than it had, whatever this engine's clock says.
 *
 * A confirmed preview's messages (`asPreviewed`) are locked (`FOR UPDATE`, in `seq` order) only while
 * still finished with the `updated_at` previewed, and, unless changed ones are skipped, queued only if
 * all of them are: a confirmation of the same preview in another transaction waits for the locks,
 * finds the messages changed once this one commits, and queues none.
 */
async function resubmit(tx: Queryable, target: ResubmitTarget, t: number): Promise<Array<[string, string]>> {
  const previewed = previewedSet(target)
  const [pick, params] = previewed
    ? [PICK_AS_PREVIEWED, [previewed.ids, previewed.stamps, previewed.all ? previewed.ids.length : null]]
    : [PICK_TARGET, [target.ids ?? [], target.status ?? null, target.channel ?? null]]
  const rows = await tx.query<{ id: string; channel: string }>(`
    WITH picked AS (${pick.lock}), r AS (
      UPDATE weir_messages m SET status = 'queued', error = NULL, interrupted = 0, ${NO_FILTER_RETRY}, updated_at = greatest($4, m.updated_at + 1) FROM picked
      WHERE m.id = picked.id AND ${pick.when} RETURNING m.id, m.channel, m.seq
    ), open AS (
      SELECT r.id, EXISTS (SELECT 1 FROM weir_deliveries d WHERE d.message_id = r.id AND d.status <> 'delivered') AS partial FROM r
    ), d AS (
      UPDATE weir_deliveries d SET status = 'queued', next_attempt_at = NULL, budget_attempts = d.attempts, budget_since = NULL FROM open
      WHERE d.message_id = open.id AND (NOT open.partial OR d.status <> 'delivered')
    )
    SELECT id, channel FROM r ORDER BY seq`, [...params, t])
  return rows.map((r) => [r.id, r.channel])
}

/** Which messages a resubmit locks (`picked`), and when it queues them (a condition on `picked`). */
interface Picked { lock: string; when: string }
/** The finished messages a resubmit's `ids`, or `status` and `channel`, name ($1, $2, $3). */
const PICK_TARGET: Picked = {
  lock: `SELECT id FROM weir_messages
      WHERE status IN ${FINISHED} AND (id = ANY($1::text[]) OR ($2::text IS NOT NULL AND status = $2 AND ($3::text IS NULL OR channel = $3)))
      ORDER BY seq FOR UPDATE`,
  when: 'TRUE',
}
/**
 * The messages of a preview ($1, each with its `updated_at` then, $2) still finished and unchanged; a
 * row another transaction holds is read again once it commits, and left out if changed. Queued only
 * if they are $3 (when not null): the whole preview.
 */
const PICK_AS_PREVIEWED: Picked = {
  lock: `SELECT m.id FROM weir_messages m JOIN unnest($1::text[], $2::bigint[]) AS p(id, updated_at) ON p.id = m.id
      WHERE m.status IN ${FINISHED} AND m.updated_at = p.updated_at ORDER BY m.seq FOR UPDATE OF m`,
  when: '($3::int IS NULL OR (SELECT count(*) FROM picked) = $3)',
}

/**
 * Deletes up to `limit` of the finished messages `target` names, oldest first, with their body,
 * deliveries, attempts and search keys (no foreign keys: the store deletes them itself); messages
 * another engine holds locked are left for later.
 */
async function purgeBatch(tx: Queryable, target: PurgeTarget, limit: number): Promise<number> {
  const keep = target.keepNewest !== undefined && target.keepNewest > 0 ? target.keepNewest - 1 : null
  const rows = await tx.query<{ n: number }>(`
    WITH keep AS (
      SELECT seq FROM weir_messages WHERE ($2::text IS NULL OR channel = $2) AND status IN ${FINISHED}
      ORDER BY seq DESC OFFSET $5 LIMIT 1
    ), picked AS (
      SELECT seq, id FROM weir_messages
      WHERE status = ANY($4::text[]) AND ($1::bigint IS NULL OR updated_at < $1) AND ($2::text IS NULL OR channel = $2)
        AND ($5::int IS NULL OR seq < (SELECT seq FROM keep))
      ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED
    ), body AS (DELETE FROM weir_message_bodies b USING picked WHERE b.seq = picked.seq
    ), deliveries AS (DELETE FROM weir_deliveries d USING picked WHERE d.message_id = picked.id
    ), attempts AS (DELETE FROM weir_attempts a USING picked WHERE a.message_id = picked.id
    ), search_keys AS (DELETE FROM weir_message_keys k USING picked WHERE k.seq = picked.seq
    ), gone AS (DELETE FROM weir_messages m USING picked WHERE m.seq = picked.seq RETURNING 1)
    SELECT count(*)::int AS n FROM gone`, [target.before ?? null, target.channel ?? null, limit, target.statuses ?? ['delivered', 'filtered', 'error'], keep])
  return rows[0]!.n
}

async function setState(tx: Queryable, [channel, component, key, value, t]: [string, string, string, string, number]): Promise<void> {
  await tx.query(`INSERT INTO weir_state (channel, component, key, value, updated_at) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (channel, component, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, [channel, component, key, value, t])
}

/** The columns of a claimed message, with its delivery records so far as JSON text. */
const CLAIMED_COLUMNS = `m.id, m.seq, m.channel, m.status, m.interrupted, m.filter_attempts, m.filter_elapsed, m.filter_next_attempt_at, (SELECT b.body FROM weir_message_bodies b WHERE b.seq = m.seq) AS body, m.content_type, m.attributes, m.dedupe_key, m.order_key, m.received_at, m.updated_at, m.error,
      (SELECT coalesce(json_agg(json_build_object('destination', d.destination, 'part', d.part, 'status', d.status, 'attempts', d.attempts,
          'budgetAttempts', d.budget_attempts, 'budgetSince', d.budget_since, 'firstAttemptAt', d.first_attempt_at, 'lastAttemptAt', d.last_attempt_at, 'nextAttemptAt', d.next_attempt_at, 'lastError', d.last_error,
          'responseStatus', d.response_status, 'responseExcerpt', d.response_excerpt) ORDER BY d.part, d.destination), '[]')::text
        FROM weir_deliveries d WHERE d.message_id = m.id) AS deliveries`

/**
 * Common table expressions that claim the next queued messages of a channel (`picked`) and mark
 * them in flight for this engine (`claimed`, the message's columns).
 *
 * The claim first locks this engine's row in `weir_engines` (`FOR KEY SHARE`: heartbeats still
 * renew it) and claims nothing without it: a sweep that removes the engine waits for the claim and
 * then returns what it claimed to the queue, or the claim waits for the sweep and finds no row.
 *
 * An unordered claim skips rows another transaction holds locked (`SKIP LOCKED`), so engines
 * claiming together take different messages. An ordered claim (it holds the channel's claim lock,
 * see `lockClaims`) waits for them instead: a locked queued row is a key's head that a batch under
 * way is changing (a dedupe window moving its key), and skipping it would hand out the next message
 * of its key first. It also skips every key (or, at `concurrency: 1`, the whole channel) that
 * another engine still has in flight.
 */
function claimCtes(p: Param, me: string, [channel, limit, t, order]: [string, number, number, ClaimOrder]): string {
  const c = p(channel, 'text')
  const owner = p(me, 'text')
  const ordered = order === 'none' ? '' : `AND NOT EXISTS (
          SELECT 1 FROM weir_messages o WHERE o.channel = ${c} AND o.status IN ('in-flight', 'retrying') AND o.owner IS DISTINCT FROM ${owner}
            ${order === 'key' ? `AND coalesce(o.order_key, '') = coalesce(m.order_key, '')` : ''})`
  return `claimer AS (
      SELECT id FROM weir_engines WHERE id = ${owner} FOR KEY SHARE
    ), picked AS (
      SELECT m.seq FROM weir_messages m WHERE EXISTS (SELECT 1 FROM claimer) AND m.channel = ${c} AND m.status = 'queued' ${ordered}
      ORDER BY m.seq LIMIT ${p(limit, 'int')} FOR UPDATE${order === 'none' ? ' SKIP LOCKED' : ''}
    ), claimed AS (
      UPDATE weir_messages m SET status = 'in-flight', owner = ${owner}, updated_at = ${p(t, 'bigint')} FROM picked WHERE m.seq = picked.seq
      RETURNING ${CLAIMED_COLUMNS}
    )`
}

/**
 * Takes the per-channel claim lock (an advisory lock until commit) of each ordered claim of a batch:
 * at any moment at most one engine claims a channel's key heads. They are the batch's first locks,
 * taken in channel order: an ordered claim holding its lock may wait for a queued row that another
 * batch locked (see `claimCtes`), so no batch may lock such a row and then wait for a claim lock.
 */
async function lockClaims(tx: Queryable, claims: Indexed[]): Promise<void> {
  const channels = [...new Set(claims.filter(([op]) => op.args[3] !== 'none').map(([op]) => op.args[0] as string))].sort()
  for (const channel of channels) await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('weir:claim:' || $1, 0))`, [channel])
}

/** Claims the next queued messages of a channel (see `claimCtes`); an ordered claim holds its channel's lock (`lockClaims`). */
async function claim(tx: Queryable, me: string, args: [string, number, number, ClaimOrder]): Promise<MessageRow[]> {
  const { params, p } = parameters()
  const rows = await tx.query<MessageRow>(`WITH ${claimCtes(p, me, args)} SELECT * FROM claimed`, params)
  return [...rows].sort((a, b) => Number(a.seq) - Number(b.seq))
}
