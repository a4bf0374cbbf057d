/**
 * Store benchmark: messages per second through enqueue → claim → complete on the embedded store
 * with its default (safe: WAL + synchronous=FULL) settings, next to a bare better-sqlite3 insert
 * loop with the same pragmas, in the same process. `npx tsx bench/store.ts [messages]`.
 *
 * The bare loop commits each insert on its own (what a naive "durable per message" write does);
 * the store group-commits everything requested in one event-loop turn. A bare loop inside a single
 * transaction is printed too, as the ceiling (not durable per message).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { randomBytes } from 'node:crypto'
import { openSqliteStore } from '../shared/store/index.ts'
import { encryptContent } from '../shared/store/encrypted.ts'

interface Result { name: string; messages: number; ms: number; perSecond: number }

function bareInsert(n: number, singleTransaction: boolean): Result {
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-bare-'))
  try {
    const db = new Database(join(dir, 'bare.db'))
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    db.exec('CREATE TABLE m (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, channel TEXT NOT NULL, body TEXT NOT NULL, received_at INTEGER NOT NULL)')
    const insert = db.prepare('INSERT INTO m (id, channel, body, received_at) VALUES (?, ?, ?, ?)')
    const body = JSON.stringify({ mrn: '12345', name: 'Doe^John', event: 'A01' })
    const t0 = performance.now()
    const loop = () => { for (let i = 0; i < n; i++) insert.run(`id-${i}`, 'bench', body, Date.now()) }
    if (singleTransaction) db.transaction(loop)()
    else loop()
    const ms = performance.now() - t0
    db.close()
    return { name: singleTransaction ? 'bare insert loop, one transaction (ceiling)' : 'bare insert loop, commit per insert', messages: n, ms, perSecond: (n / ms) * 1000 }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * A producer enqueues `producerBurst` messages per event-loop turn (requests arriving together);
 * `workers` consumers claim (prefetch 16, as the runtime does) and complete each message, awaiting
 * the commit before taking the next, as the runtime's workers do.
 */
async function storePipeline(n: number, workers: number, producerBurst: number, encrypted = false): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-store-'))
  const plain = openSqliteStore({ dataDir: dir })
  const key = randomBytes(32)
  const store = encrypted ? encryptContent(plain, { channels: true, key: async () => key }) : plain
  try {
    // A ~1.6 KB FHIR-like body, as the pipeline bench posts.
    const body = { resourceType: 'Patient', identifier: [{ system: 'urn:mrn', value: '12345' }], name: [{ family: 'Doe', given: ['John'] }], text: { div: 'x'.repeat(1400) } }
    let produced = 0
    let completed = 0
    const t0 = performance.now()
    const producer = (async () => {
      while (produced < n) {
        const burst = Math.min(producerBurst, n - produced)
        produced += burst
        await Promise.all(Array.from({ length: burst }, () => store.enqueue('bench', { body })))
      }
    })()
    const prefetch = Math.max(workers, 16)
    const buffer: string[] = []
    let claiming: Promise<void> | undefined
    let taken = 0
    const next = async (): Promise<string | undefined> => {
      while (taken < n) {
        const id = buffer.shift()
        if (id) {
          taken++
          return id
        }
        claiming ??= store.claim('bench', prefetch).then(async (got) => {
          buffer.push(...got.map((m) => m.id))
          if (got.length === 0) await new Promise((ok) => setImmediate(ok))
        }).finally(() => { claiming = undefined })
        await claiming
      }
      return undefined
    }
    const consumer = async () => {
      for (;;) {
        const id = await next()
        if (!id) return
        await store.complete(id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: Date.now(), endedAt: Date.now(), outcome: 'delivered', responseStatus: 200 } }])
        completed++
      }
    }
    await Promise.all([producer, ...Array.from({ length: workers }, consumer)])
    const ms = performance.now() - t0
    if (completed !== n) throw new Error(`completed ${completed} of ${n}`)
    return { name: `store enqueue → claim → complete, ${workers} worker(s), bursts of ${producerBurst}${encrypted ? ', encryptContent' : ''}`, messages: n, ms, perSecond: (n / ms) * 1000 }
  } finally {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function runStoreBench(n = 5000): Promise<{ results: Result[]; ratio: number }> {
  const bare = bareInsert(n, false)
  const ceiling = bareInsert(n * 10, true)
  const one = await storePipeline(n, 1, 50)
  const many = await storePipeline(n, 16, 50)
  const sealed = await storePipeline(n, 16, 50, true)
  const results = [bare, ceiling, one, many, sealed]
  const ratio = one.perSecond / bare.perSecond
  return { results, ratio }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const n = Number(process.argv[2] ?? 5000)
  const { results, ratio } = await runStoreBench(n)
  console.log('store benchmark (WAL, synchronous=FULL, same process)')
  for (const r of results) console.log(`  ${r.name.padEnd(66)} ${String(Math.round(r.perSecond)).padStart(9)} msg/s  (${r.messages} in ${Math.round(r.ms)} ms)`)
  console.log(`  ratio: store pipeline (1 worker) / bare commit-per-insert loop = ${ratio.toFixed(2)}`)
  console.log(`  ratio: store pipeline (16 workers) / bare commit-per-insert loop = ${(results[3]!.perSecond / results[0]!.perSecond).toFixed(2)}`)
  console.log(`  ratio: store pipeline (16 workers) with encryptContent / without = ${(results[4]!.perSecond / results[3]!.perSecond).toFixed(2)}`)
}
