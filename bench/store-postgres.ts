/**
 * PostgreSQL's own work per message in the PostgreSQL store: the server's CPU time, WAL records and
 * WAL bytes per message for the cycle a channel under load makes (enqueue, claim, complete with one
 * delivery outcome and its attempt), with the store's group commit and the default commit pacing of
 * `weir run`. No HTTP and no engine process: what it measures is the database's share, the figure
 * that bounds a cluster's throughput on one PostgreSQL (its cores divided by the CPU per message).
 *
 * The baseline, measured in the same run with the same store code, is the schema before migration 6:
 * foreign keys from deliveries, attempts and search keys to the message, B-tree indexes on status,
 * received_at and owner. Rounds alternate between the two.
 *
 * `npx tsx bench/store-postgres.ts`; WEIR_BENCH_N messages per round (default 20000), WEIR_BENCH_ROUNDS
 * (default 3, the median printed). WAL records are counted by kind with pg_walinspect.
 */
import { randomUUID } from 'node:crypto'
import { DEFAULT_COMMIT_DELAY_MS } from '../engine/store.ts'
import { startEmbeddedPostgres } from '../engine/embedded/postgres.ts'
import { openDb } from '../shared/store/postgres/db.ts'
import { openPostgresStore } from '../shared/store/postgres/open.ts'
import { benchBody } from './lib/generator.ts'
import { postgresCpuMs } from './lib/process-usage.ts'
import { median } from './lib/stats.ts'

const N = Number(process.env.WEIR_BENCH_N ?? 20_000)
const ROUNDS = Number(process.env.WEIR_BENCH_ROUNDS ?? 3)
/** Senders enqueueing at once, and messages under way at once (the bench channel's `concurrency`). */
const IN_FLIGHT = 64

interface Round { msgPerSec: number; cpuUs: number; walRecords: number; walBytes: number; kinds: Map<string, number> }

const pg = await startEmbeddedPostgres()

/** Enqueues `n` messages from IN_FLIGHT senders while a dispatcher claims and completes them, IN_FLIGHT at a time. */
async function cycle(store: Awaited<ReturnType<typeof openPostgresStore>>, n: number, from: number): Promise<void> {
  let next = from
  const senders = Array.from({ length: IN_FLIGHT }, async () => {
    while (next < from + n) {
      const seq = next++
      await store.enqueue('bench', { body: JSON.stringify(benchBody(seq)), contentType: 'application/json' })
    }
  })
  let done = 0
  let running = 0
  const dispatcher = (async () => {
    while (done < n) {
      const claimed = await store.claim('bench', 2 * IN_FLIGHT - running)
      if (claimed.length === 0) {
        await new Promise((r) => setTimeout(r, 2))
        continue
      }
      const finish = claimed.map(async (m) => {
        const t = Date.now()
        await store.complete(m.id, 'delivered', [{ destination: 'sink', part: 0, status: 'delivered', attempt: { startedAt: t, endedAt: t + 1, outcome: 'delivered', responseStatus: 201 } }])
        done++
        running--
      })
      running += claimed.length
      // Like the runtime: at most IN_FLIGHT under way; the rest of the claim waits its turn.
      while (running > IN_FLIGHT) await Promise.race(finish)
    }
  })()
  await Promise.all([...senders, dispatcher])
}

/** What migration 6 removed, put back (the baseline). */
const SCHEMA_5 = `
  ALTER TABLE weir_deliveries ADD FOREIGN KEY (message_id) REFERENCES weir_messages (id) ON DELETE CASCADE;
  ALTER TABLE weir_attempts ADD FOREIGN KEY (message_id) REFERENCES weir_messages (id) ON DELETE CASCADE;
  ALTER TABLE weir_message_keys ADD FOREIGN KEY (seq) REFERENCES weir_messages (seq) ON DELETE CASCADE;
  DROP INDEX weir_messages_outcome;
  CREATE INDEX weir_messages_status ON weir_messages (channel, status, seq);
  DROP INDEX weir_messages_received;
  CREATE INDEX weir_messages_received ON weir_messages (received_at);
  CREATE INDEX weir_messages_owner ON weir_messages (owner) WHERE owner IS NOT NULL;`

async function round(baseline: boolean): Promise<Round> {
  const url = await pg.createDatabase(`store_${randomUUID().slice(0, 8)}`)
  const store = await openPostgresStore({ url, owner: true, commitPacing: { delayMs: DEFAULT_COMMIT_DELAY_MS, batch: 64 } })
  const db = openDb(url, { max: 1 })
  try {
    if (baseline) await db.query(SCHEMA_5)
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_walinspect')
    await cycle(store, 1000, 0)
    await db.query('CHECKPOINT')
    const [lsn] = await db.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')
    const cpu0 = postgresCpuMs()
    const t0 = performance.now()
    await cycle(store, N, 1000)
    const seconds = (performance.now() - t0) / 1000
    const cpu = postgresCpuMs() - cpu0
    const stats = await db.query<{ kind: string; count: string; bytes: string }>(`SELECT "resource_manager/record_type" AS kind, count::text, (record_size + fpi_size)::text AS bytes
      FROM pg_get_wal_stats($1::pg_lsn, pg_current_wal_lsn(), true) WHERE count > 0`, [lsn!.l])
    const kinds = new Map(stats.map((s) => [s.kind, Number(s.count) / N]))
    return {
      msgPerSec: N / seconds, cpuUs: (cpu * 1000) / N, kinds,
      walRecords: stats.reduce((a, s) => a + Number(s.count), 0) / N, walBytes: stats.reduce((a, s) => a + Number(s.bytes), 0) / N,
    }
  } finally {
    await db.end()
    await store.close()
  }
}

const current: Round[] = []
const before: Round[] = []
try {
  for (let r = 0; r < ROUNDS; r++) {
    // Alternating which goes first, so neither always runs on a warmer server.
    for (const baseline of r % 2 === 0 ? [true, false] : [false, true]) (baseline ? before : current).push(await round(baseline))
  }
} finally {
  await pg.stop()
}
console.log(`PostgreSQL store: ${N} messages of ~1 KB per round (enqueue, claim, complete with one delivery), ${IN_FLIGHT} in flight, median of ${ROUNDS} rounds`)
console.log('                                schema 6   schema 5 (baseline)   ratio')
const row = (label: string, f: (r: Round) => number, digits: number) => {
  const a = median(current.map(f))
  const b = median(before.map(f))
  console.log(`${label.padEnd(32)}${a.toFixed(digits).padStart(8)}   ${b.toFixed(digits).padStart(19)}   ${(a / b).toFixed(2).padStart(5)}`)
}
row('server CPU µs per message', (r) => r.cpuUs, 0)
row('WAL records per message', (r) => r.walRecords, 1)
row('WAL bytes per message', (r) => r.walBytes, 0)
row('messages per second (no HTTP)', (r) => r.msgPerSec, 0)
for (const [name, rounds] of [['schema 6', current], ['schema 5', before]] as const) {
  const kinds = [...new Set(rounds.flatMap((r) => [...r.kinds.keys()]))]
    .map((k) => [k, median(rounds.map((r) => r.kinds.get(k) ?? 0))] as const).filter(([, v]) => v >= 0.05).sort((a, b) => b[1] - a[1])
  console.log(`WAL records per message by kind, ${name}: ` + kinds.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', '))
}
