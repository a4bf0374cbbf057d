/**
 * The PostgreSQL client was chosen by measurement and by failure testing: `pg` (node-postgres)
 * against `postgres` (porsager, a dev dependency for this script only). `postgres` 3.4.9 was about
 * 2× faster on batched inserts here, but it crashes the process when a connection drops while a
 * small write is pending (an exception thrown from a setImmediate in its connection.js, unfixed
 * upstream: porsager/postgres#1154, #1208), which our PostgreSQL-outage test hit. A store that must
 * outlive a database failover cannot use it; the store's group commit makes the difference small.
 *
 * Compares
 * on an embedded PostgreSQL on loopback, doing what the store does: group-committed batches of
 * 64 inserts of ~1 KB (one statement over arrays), then single-row updates, each client pooled.
 *
 *   npx tsx bench/pg-client.ts        WEIR_BENCH_N (default 20,000 rows per client and round)
 */
import pg from 'pg'
import postgres from 'postgres'
import { startEmbeddedPostgres } from '../engine/embedded/postgres.ts'

const N = Number(process.env.WEIR_BENCH_N ?? 20_000)
const BATCH = 64
const body = JSON.stringify({ mrn: '0'.repeat(8), note: 'x'.repeat(960) })
const INSERT = `INSERT INTO t (id, body) SELECT * FROM unnest($1::text[], $2::text[])`
const UPDATE = `UPDATE t SET status = 'done' WHERE id = $1`

async function withPg(url: string): Promise<[number, number]> {
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  await pool.query('TRUNCATE t')
  let t0 = performance.now()
  for (let i = 0; i < N; i += BATCH) {
    const ids = Array.from({ length: BATCH }, (_, j) => `pg-${i + j}`)
    await pool.query(INSERT, [ids, ids.map(() => body)])
  }
  const inserts = N / ((performance.now() - t0) / 1000)
  t0 = performance.now()
  const all = []
  for (let i = 0; i < N; i += BATCH) all.push(...Array.from({ length: BATCH }, (_, j) => pool.query(UPDATE, [`pg-${i + j}`])))
  await Promise.all(all)
  const updates = N / ((performance.now() - t0) / 1000)
  await pool.end()
  return [inserts, updates]
}

async function withPostgres(url: string): Promise<[number, number]> {
  const sql = postgres(url, { max: 4, onnotice: () => {} })
  await sql`TRUNCATE t`
  let t0 = performance.now()
  for (let i = 0; i < N; i += BATCH) {
    const ids = Array.from({ length: BATCH }, (_, j) => `po-${i + j}`)
    await sql.unsafe(INSERT, [ids, ids.map(() => body)] as never[])
  }
  const inserts = N / ((performance.now() - t0) / 1000)
  t0 = performance.now()
  const all = []
  for (let i = 0; i < N; i += BATCH) all.push(...Array.from({ length: BATCH }, (_, j) => sql.unsafe(UPDATE, [`po-${i + j}`])))
  await Promise.all(all)
  const updates = N / ((performance.now() - t0) / 1000)
  await sql.end()
  return [inserts, updates]
}

const server = await startEmbeddedPostgres()
try {
  const url = await server.createDatabase('bench_clients')
  const setup = new pg.Client({ connectionString: url })
  await setup.connect()
  await setup.query(`CREATE TABLE t (id text PRIMARY KEY, body text NOT NULL, status text)`)
  await setup.end()
  const rounds: Array<{ pg: [number, number]; postgres: [number, number] }> = []
  for (let r = 0; r < 3; r++) {
    const a = r % 2 === 0 ? await withPg(url) : undefined
    const b = await withPostgres(url)
    rounds.push({ pg: a ?? (await withPg(url)), postgres: b })
  }
  const med = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]!
  const row = (name: 'pg' | 'postgres', k: 0 | 1) => Math.round(med(rounds.map((r) => r[name][k])))
  console.log(`rows/s, median of 3 rounds, ${N} rows per round, batches of ${BATCH}`)
  console.log(`  batched inserts:    pg ${row('pg', 0)}   postgres ${row('postgres', 0)}   postgres/pg ${(row('postgres', 0) / row('pg', 0)).toFixed(2)}`)
  console.log(`  single-row updates: pg ${row('pg', 1)}   postgres ${row('postgres', 1)}   postgres/pg ${(row('postgres', 1) / row('pg', 1)).toFixed(2)}`)
} finally {
  await server.stop()
}
