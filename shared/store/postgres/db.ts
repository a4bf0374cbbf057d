import pg from 'pg'

// 64-bit integers (seq, epoch milliseconds) as numbers: every value the store keeps fits in 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v))

/** Queries on one connection (a transaction) or on the pool. */
export interface Queryable {
  /** A parameterised query (`$1`, `$2`…); returns the rows. */
  query<T = any>(text: string, params?: unknown[]): Promise<T[]>
  /** The same as a tagged template: every `${value}` becomes a parameter, never SQL text. */
  sql<T = any>(strings: TemplateStringsArray, ...values: unknown[]): Promise<T[]>
}

export interface Db extends Queryable {
  /**
   * Runs `fn` in one transaction on one pooled connection: COMMIT when it resolves, ROLLBACK when it throws.
   * `unbounded`: no statement or query timeout (a migration, which may wait for another engine's).
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: { unbounded?: boolean }): Promise<T>
  /** A statement of its own (its own transaction) that each connection parses once: `name` must always stand for the same `text`. */
  prepared<T = any>(name: string, text: string, params: unknown[]): Promise<T[]>
  end(): Promise<void>
}

/** How long a connection or a query may take before the pool gives up on it (see `DB_TIMEOUTS`). */
export interface DbTimeouts {
  /** Longest statement: PostgreSQL cancels it (`statement_timeout`); the client gives up a grace later (`query_timeout`, min(this, 5 s)): a server that no longer answers. */
  queryMs: number
  /** A session idle inside a transaction this long is ended by PostgreSQL (`idle_in_transaction_session_timeout`), its locks released. */
  idleInTransactionMs: number
  /** TCP keepalive probes start after the connection has been idle this long. */
  keepAliveMs: number
}

/**
 * Defaults: the store's longest legitimate statement (a count over the whole message table, a purge
 * batch) takes seconds; a minute means a server that stopped answering, or a query gone wrong.
 */
export const DB_TIMEOUTS: DbTimeouts = { queryMs: 60_000, idleInTransactionMs: 15_000, keepAliveMs: 10_000 }

/** No timeout, for `unbounded` transactions: a day. */
const UNBOUNDED_MS = 86_400_000

/** The client-side timeout of a query: the server's `statement_timeout` plus a grace for its answer to arrive. */
export const clientTimeoutOf = (queryMs: number) => queryMs + Math.min(queryMs, 5_000)

function queryable(run: (text: string, params: unknown[]) => Promise<pg.QueryResult>): Queryable {
  const query = async <T>(text: string, params: unknown[] = []) => (await run(text, params)).rows as T[]
  return {
    query,
    sql: <T>(strings: TemplateStringsArray, ...values: unknown[]) => query<T>(strings.reduce((text, s, i) => `${text}$${i}${s}`), values),
  }
}

export interface DbOptions {
  max?: number
  password?: string | undefined
  onError?: (e: Error) => void
  /** Defaults `DB_TIMEOUTS`; shorter in tests. */
  timeouts?: Partial<DbTimeouts>
}

function timeoutsOf(given: Partial<DbTimeouts> = {}): DbTimeouts {
  const t = { ...DB_TIMEOUTS, ...Object.fromEntries(Object.entries(given).filter(([, ms]) => ms !== undefined)) }
  for (const [name, ms] of Object.entries(t)) {
    if (!Number.isInteger(ms) || ms < 1 || ms > UNBOUNDED_MS) throw new RangeError(`PostgreSQL timeout ${name} must be a whole number of milliseconds from 1 to ${UNBOUNDED_MS}, not ${String(ms)}`)
  }
  return t
}

/** The client gave up on a query (`query_timeout`) or lost its connection: the connection is in no state to roll back. */
const lostConnection = (e: unknown) => /^(Query read timeout|Connection terminated)/.test((e as Error)?.message ?? '')

/**
 * `url` with `password` in it: node-postgres reads a connection string over its other options, so a
 * URL without a password (`postgres://weir@host/db`) would empty a `password` option given beside it.
 */
function withPassword(url: string, password: string): string {
  const u = new URL(url)
  u.password = encodeURIComponent(password)
  return u.href
}

/**
 * A pool of connections to PostgreSQL (node-postgres), with the password from the URL, `PGPASSWORD`
 * or `password`, and `?sslmode=` from the URL. A connection that dies while idle is dropped from the
 * pool and reported to `onError`, never thrown: the engine must outlive a database failover.
 * Every session has a statement timeout and an idle-in-transaction timeout, every query a client-side
 * timeout, every socket TCP keepalive: a half-open connection (peer gone without a FIN) fails a query
 * instead of hanging it, and a transaction left open by a dead or frozen process releases its locks.
 */
export function openDb(url: string, o: DbOptions = {}): Db {
  const t = timeoutsOf(o.timeouts)
  const pool = new pg.Pool({
    connectionString: o.password !== undefined ? withPassword(url, o.password) : url, max: o.max ?? 8, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 60_000,
    application_name: 'weir',
    keepAlive: true, keepAliveInitialDelayMillis: t.keepAliveMs,
    statement_timeout: t.queryMs, query_timeout: clientTimeoutOf(t.queryMs), idle_in_transaction_session_timeout: t.idleInTransactionMs,
  })
  pool.on('error', (e) => o.onError?.(e))
  return {
    ...queryable((text, params) => pool.query(text, params)),
    prepared: async <T>(name: string, text: string, params: unknown[]) => (await pool.query({ name, text, values: params })).rows as T[],
    transaction: (fn, options) => inTransaction(pool, fn, options?.unbounded ?? false, o.onError),
    end: () => pool.end(),
  }
}

async function inTransaction<T>(pool: pg.Pool, fn: (tx: Queryable) => Promise<T>, unbounded: boolean, report?: (e: Error) => void): Promise<T> {
  const client = await pool.connect()
  let broken = false
  // A checked-out client reports a dropped connection as an 'error' event: without a listener it would end the process.
  const onError = (e: Error) => {
    broken = true
    report?.(e)
  }
  client.on('error', onError)
  const run = unbounded
    ? (text: string, values: unknown[]) => client.query({ text, values, query_timeout: UNBOUNDED_MS } as pg.QueryConfig)
    : (text: string, values: unknown[]) => client.query(text, values)
  try {
    await run('BEGIN', [])
    if (unbounded) await run('SET LOCAL statement_timeout = 0', [])
    const result = await fn(queryable(run))
    await run('COMMIT', [])
    return result
  } catch (e) {
    if (lostConnection(e)) broken = true
    else await client.query('ROLLBACK').catch(() => { broken = true })
    throw e
  } finally {
    // A connection that could not even roll back is closed, not put back in the pool.
    client.off('error', onError)
    client.release(broken)
  }
}
