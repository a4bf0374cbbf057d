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
  /** Runs `fn` in one transaction on one pooled connection: COMMIT when it resolves, ROLLBACK when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>
  /** A statement of its own (its own transaction) that each connection parses once: `name` must always stand for the same `text`. */
  prepared<T = any>(name: string, text: string, params: unknown[]): Promise<T[]>
  end(): Promise<void>
}

function queryable(run: (text: string, params: unknown[]) => Promise<pg.QueryResult>): Queryable {
  const query = async <T>(text: string, params: unknown[] = []) => (await run(text, params)).rows as T[]
  return {
    query,
    sql: <T>(strings: TemplateStringsArray, ...values: unknown[]) => query<T>(strings.reduce((text, s, i) => `${text}$${i}${s}`), values),
  }
}

/**
 * A pool of connections to PostgreSQL (node-postgres), with the password from the URL, `PGPASSWORD`
 * or `password`, and `?sslmode=` from the URL. A connection that dies while idle is dropped from the
 * pool and reported to `onError`, never thrown: the engine must outlive a database failover.
 */
export function openDb(url: string, o: { max?: number; password?: string | undefined; onError?: (e: Error) => void } = {}): Db {
  const pool = new pg.Pool({
    connectionString: url, max: o.max ?? 8, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 60_000,
    application_name: 'weir', ...(o.password !== undefined ? { password: o.password } : {}),
  })
  pool.on('error', (e) => o.onError?.(e))
  return {
    ...queryable((text, params) => pool.query(text, params)),
    prepared: async <T>(name: string, text: string, params: unknown[]) => (await pool.query({ name, text, values: params })).rows as T[],
    async transaction(fn) {
      const client = await pool.connect()
      let broken = false
      // A checked-out client reports a dropped connection as an 'error' event: without a listener it would end the process.
      const onError = (e: Error) => {
        broken = true
        o.onError?.(e)
      }
      client.on('error', onError)
      try {
        await client.query('BEGIN')
        const result = await fn(queryable((text, params) => client.query(text, params)))
        await client.query('COMMIT')
        return result
      } catch (e) {
        await client.query('ROLLBACK').catch(() => { broken = true })
        throw e
      } finally {
        // A connection that could not even roll back is closed, not put back in the pool.
        client.off('error', onError)
        client.release(broken)
      }
    },
    end: () => pool.end(),
  }
}
