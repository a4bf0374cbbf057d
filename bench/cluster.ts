/**
 * Cluster benchmark: the channel (d) of the pipeline benchmark, minus OAuth (the token path is the
 * same whatever the store), backed by SQLite (one engine) and by PostgreSQL (one, two and three
 * engines on this machine), every figure a ratio against SQLite-backed (d) in the same run.
 * `npm run bench -- cluster` or `npx tsx bench/cluster.ts`.
 *
 * Each engine is a `weir run` process of its own; the load generator sends ~1 KB messages, 64 in
 * flight in all, spread over the engines' listeners, and a run ends when the sink has every message.
 * Per variant: messages per second, the median time to a 202 and to the sink, CPU µs per message
 * (all engines together, per engine, and PostgreSQL's processes), and PostgreSQL's transactions and
 * statements per message (pg_stat_database, pg_stat_statements; each statement is one round trip).
 * Two cores cannot show scaling; these counts bound it elsewhere.
 *
 * Environment: WEIR_BENCH_N (default 20000), WEIR_BENCH_WARM (default 1000), WEIR_BENCH_ROUNDS (default 3),
 * WEIR_BENCH_ONLY (variant names, comma-separated). A full run writes bench/results/cluster-<date>.json.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { freePort, startEmbeddedPostgres } from '../engine/embedded/postgres.ts'
import { openDb } from '../shared/store/postgres/db.ts'
import { generate } from './lib/generator.ts'
import { postgresCpuMs, processUsage } from './lib/process-usage.ts'
import { startSink } from './lib/sink.ts'
import { median } from './lib/stats.ts'

const N = Number(process.env.WEIR_BENCH_N ?? 20_000)
const WARM = Number(process.env.WEIR_BENCH_WARM ?? 1000)
const ROUNDS = Number(process.env.WEIR_BENCH_ROUNDS ?? 3)
/** WEIR_BENCH_ONLY="sqlite x1,postgres x1": only these variants (their names as printed). */
const ONLY = process.env.WEIR_BENCH_ONLY?.split(',').map((n) => n.trim())
const ROOT = resolve(import.meta.dirname, '..')

interface Result { name: string; rate: number; cpuUsPerMsg: number; perEngineUs: number; pgUsPerMsg: number; ackMs: number; endToEndMs: number; txPerMsg?: number; writesPerMsg?: number; syncsPerMsg?: number; stmtPerMsg?: number }

// The last variant shows what commit pacing (--commit-delay-ms, default 25) buys: the same three engines committing at once.
const VARIANTS: Array<[string, number, boolean, string[]?]> = [['sqlite x1', 1, false], ['postgres x1', 1, true], ['postgres x2', 2, true], ['postgres x3', 3, true], ['pg x1 delay 0', 1, true, ['--commit-delay-ms', '0']], ['pg x3 delay 0', 3, true, ['--commit-delay-ms', '0']]]

/** The variants this run measures (all, or those WEIR_BENCH_ONLY names), in their table order. */
const CHOSEN = VARIANTS.filter(([name]) => !ONLY || ONLY.includes(name))

const sink = await startSink((WARM + N) * ROUNDS * VARIANTS.length + 10)
const pg = await startEmbeddedPostgres({ statements: true })
const work = mkdtempSync(join(tmpdir(), 'weir-bench-cluster-'))
let nextSeq = 0
let dbs = 0

async function engine(dir: string, port: number, store: string[]): Promise<ChildProcess> {
  const file = join(dir, `channel-${port}.json`)
  writeFileSync(file, JSON.stringify({
    name: 'bench',
    source: { type: 'http-listener', config: { port, path: '/in', maxBytes: 65536 } },
    filters: [{ type: 'map', config: { jsonata: '$merge([$, { "resourceType": "Encounter" }])' } }],
    destinations: [{ name: 'sink', type: 'http', config: { url: sink.url, headers: { 'x-seq': '{body.seq}' } } }],
    options: { concurrency: 64, queueLimit: 100_000 },
  }))
  const child = spawn(process.execPath, [join(ROOT, 'bin/weir.js'), 'run', file, '--data-dir', join(dir, `data-${port}`), ...store], {
    cwd: ROOT, env: { ...process.env, WEIR_LOG_LEVEL: 'error', CI: '1' }, stdio: ['ignore', 'ignore', 'inherit'],
  })
  for (let i = 0; i < 300; i++) {
    if (await fetch(`http://127.0.0.1:${port}/in`, { method: 'OPTIONS' }).then(() => true, () => false)) return child
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('engine did not start')
}

/** Sends `count` messages spread over the engines (64 in flight in all) and waits until the sink has them all. */
async function load(ports: number[], count: number): Promise<{ seconds: number; ackMs: number; endToEndMs: number }> {
  const from = nextSeq
  nextSeq += count
  const t0 = performance.now()
  const share = Math.ceil(count / ports.length)
  const runs = await Promise.all(ports.map((port, i) => generate({
    url: `http://127.0.0.1:${port}/in`, from: from + i * share, to: Math.min(from + count, from + (i + 1) * share),
    deadline: Date.now() + 600_000, sink, inFlight: Math.floor(64 / ports.length), window: Math.floor(512 / ports.length),
  })))
  const missing = await sink.drained(from, from + count, Date.now() + 120_000)
  if (missing > 0) throw new Error(`${missing} messages never reached the sink`)
  const seconds = (performance.now() - t0) / 1000
  const acks = runs.flatMap((g) => [...g.ack])
  const ends = runs.flatMap((g, i) => [...g.sent].map((t, k) => sink.arrivedAt(from + i * share + k) - t))
  return { seconds, ackMs: median(acks), endToEndMs: median(ends) }
}

async function variant(name: string, engines: number, postgres: boolean, extra: string[] = []): Promise<Result> {
  const dir = mkdtempSync(join(work, 'v-'))
  const database = `bench_${++dbs}`
  const url = postgres ? await pg.createDatabase(database) : ''
  const ports = await Promise.all(Array.from({ length: engines }, () => freePort()))
  const children = await Promise.all(ports.map((p) => engine(dir, p, postgres ? ['--store', url, ...extra] : [])))
  try {
    await load(ports, WARM)
    const db = postgres ? openDb(url, { max: 1 }) : undefined
    // Transactions of every kind (a lone SELECT is one); write transactions (those given a transaction
    // id: the commits that reach the WAL); and WAL syncs (the fsyncs group commit shares), server-wide.
    const counters = async () => {
      if (!db) return { tx: 0, writes: 0, syncs: 0, stmt: 0 }
      const [s] = await db.query<{ tx: number }>('SELECT (xact_commit + xact_rollback)::float8 AS tx FROM pg_stat_database WHERE datname = current_database()')
      const [x] = await db.query<{ xid: number }>('SELECT pg_snapshot_xmax(pg_current_snapshot())::text::float8 AS xid')
      const [w] = await db.query<{ syncs: number }>('SELECT wal_sync::float8 AS syncs FROM pg_stat_wal')
      const [c] = await db.query<{ n: number }>(`SELECT coalesce(sum(calls), 0)::float8 AS n FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()`)
      return { tx: s!.tx, writes: x!.xid, syncs: w!.syncs, stmt: c!.n }
    }
    if (db) await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements')
    const before = await counters()
    const cpu0 = children.map((c) => processUsage(c.pid!).cpuMs)
    const pgCpu0 = postgres ? postgresCpuMs() : 0
    const { seconds, ackMs, endToEndMs } = await load(ports, N)
    const cpu = children.reduce((sum, c, i) => sum + processUsage(c.pid!).cpuMs - cpu0[i]!, 0)
    const pgCpu = postgres ? postgresCpuMs() - pgCpu0 : NaN
    const after = await counters()
    await db?.end()
    return {
      name, rate: N / seconds, cpuUsPerMsg: (cpu * 1000) / N, perEngineUs: (cpu * 1000) / N / engines, pgUsPerMsg: (pgCpu * 1000) / N, ackMs, endToEndMs,
      ...(postgres ? { txPerMsg: (after.tx - before.tx) / N, writesPerMsg: (after.writes - before.writes) / N, syncsPerMsg: (after.syncs - before.syncs) / N, stmtPerMsg: (after.stmt - before.stmt) / N } : {}),
    }
  } finally {
    for (const c of children) c.kill('SIGTERM')
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))))
    if (postgres) await cleanUp(database)
  }
}

/**
 * Each variant starts on a clean server: the database of the one before is dropped (no autovacuum of
 * its dead rows running during the next) and its WAL checkpointed (no checkpoint of it either).
 */
async function cleanUp(database: string): Promise<void> {
  const admin = openDb(pg.url('postgres'), { max: 1 })
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)
    await admin.query('CHECKPOINT')
  } finally {
    await admin.end()
  }
}

const rounds: Result[][] = []
try {
  for (let r = 0; r < ROUNDS; r++) {
    const order = CHOSEN.map((_, i) => CHOSEN[(i + r) % CHOSEN.length]!)
    const got: Result[] = []
    for (const [name, n, postgres, extra] of order) got.push(await variant(name, n, postgres, extra))
    rounds.push(got)
  }
} finally {
  await sink.close()
  await pg.stop()
  rmSync(work, { recursive: true, force: true })
}
/** A variant's figure in one round (NaN when the variant or the figure is missing). */
const valueIn = (round: Result[], name: string, f: (r: Result) => number | undefined) => {
  const r = round.find((x) => x.name === name)
  return r ? f(r) ?? NaN : NaN
}
const med = (name: string, f: (r: Result) => number | undefined) => median(rounds.map((round) => valueIn(round, name, f)))
const base = med('sqlite x1', (r) => r.rate)
console.log(`cluster: ${N} messages of ~1 KB per variant and round, 64 in flight, median of ${ROUNDS} rounds (order rotated); every engine a weir run process on this ${'2-core'} machine`)
console.log('per message: transactions = every transaction (a lone SELECT is one); write commits = transactions that wrote (given an xid); WAL syncs = fsyncs of the WAL (server-wide); statements = round trips')
console.log('variant       msg/s  vs sqlite (d)  ack ms  end to end ms  CPU µs/msg (all)  per engine  PostgreSQL  transactions  write commits  WAL syncs  statements')
const cell = (v: number, digits: number, width: number) => (Number.isNaN(v) ? '-' : v.toFixed(digits)).padStart(width)
for (const [name] of CHOSEN) {
  console.log(`${name.padEnd(12)} ${cell(med(name, (r) => r.rate), 0, 6)}  ${cell(med(name, (r) => r.rate) / base, 2, 13)}  ${cell(med(name, (r) => r.ackMs), 1, 6)}  ${cell(med(name, (r) => r.endToEndMs), 1, 13)}  ${cell(med(name, (r) => r.cpuUsPerMsg), 0, 16)}  ${cell(med(name, (r) => r.perEngineUs), 0, 10)}  ${cell(med(name, (r) => r.pgUsPerMsg), 0, 10)}  ${cell(med(name, (r) => r.txPerMsg), 3, 12)}  ${cell(med(name, (r) => r.writesPerMsg), 3, 13)}  ${cell(med(name, (r) => r.syncsPerMsg), 3, 9)}  ${cell(med(name, (r) => r.stmtPerMsg), 2, 10)}`)
}
// The target is read like the pipeline benchmark's ratios: per round (the two variants measured minutes apart on the
// same machine state), then the median over rounds. The ratio of the two medians is printed beside it.
const perRound = rounds.map((round) => valueIn(round, 'postgres x1', (r) => r.rate) / valueIn(round, 'sqlite x1', (r) => r.rate))
const ratio = median(perRound)
const ratioOfMedians = med('postgres x1', (r) => r.rate) / base
const commits = Math.max(...['postgres x1', 'postgres x2', 'postgres x3'].map((n) => med(n, (r) => r.writesPerMsg)).filter((v) => !Number.isNaN(v)))
console.log(`targets: postgres (d) ≥ 0.7 × sqlite (d): ${ratio.toFixed(2)} median of [${perRound.map((r) => r.toFixed(2)).join(', ')}] ${ratio >= 0.7 ? 'met' : 'NOT met'} (ratio of the medians ${ratioOfMedians.toFixed(2)}); at most 1 commit per 20 messages (write commits, worst of 1-3 engines, default pacing): ${commits.toFixed(3)} per message ${commits <= 0.05 ? 'met' : 'NOT met'}`)
// Only a full run (every variant, default size, 3 rounds or more) replaces the dated results file; quick runs go to the temp directory.
const partial = ONLY !== undefined || process.env.WEIR_BENCH_N !== undefined || ROUNDS < 3
const out = partial ? join(tmpdir(), 'weir-bench') : join(ROOT, 'bench', 'results')
mkdirSync(out, { recursive: true })
const file = join(out, `cluster-${new Date().toISOString().slice(0, partial ? 19 : 10).replace(/:/g, '')}.json`)
const medians = Object.fromEntries(CHOSEN.map(([name]) => [name, {
  rate: med(name, (r) => r.rate), vsSqlite: med(name, (r) => r.rate) / base, cpuUsPerMsg: med(name, (r) => r.cpuUsPerMsg), perEngineUs: med(name, (r) => r.perEngineUs), pgUsPerMsg: med(name, (r) => r.pgUsPerMsg), ackMs: med(name, (r) => r.ackMs), endToEndMs: med(name, (r) => r.endToEndMs),
  txPerMsg: med(name, (r) => r.txPerMsg), writesPerMsg: med(name, (r) => r.writesPerMsg), syncsPerMsg: med(name, (r) => r.syncsPerMsg), stmtPerMsg: med(name, (r) => r.stmtPerMsg),
}]))
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, messages: N, warmup: WARM, inFlight: 64, rounds: ROUNDS, medians, targets: { pgVsSqlite: ratio, pgVsSqlitePerRound: perRound, pgVsSqliteRatioOfMedians: ratioOfMedians, commitsPerMsg: commits }, byRound: rounds }, null, 2) + '\n')
console.log(`written ${file}`)
