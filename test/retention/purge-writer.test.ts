// A purge gives space back and checkpoints the WAL after each batch. Another process reading
// weir.db at that moment (weir messages, weir backup) must not make that checkpoint wait: it runs
// on the engine's writer thread, and every delivery waits behind it.
import { afterEach, beforeEach, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { tempDir } from '../runtime/_helpers.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
let store: MessageStore
beforeEach(async () => {
  dir = await tempDir('weir-purge-writer-')
  store = openSqliteStore({ dataDir: join(dir.path, 'data'), synchronous: 'NORMAL' })
})
afterEach(async () => {
  await store.close()
  await dir.remove()
})

it('a purge beside a reader holding a snapshot does not hold the writer: enqueues go on, the purge ends at once', async () => {
  for (let b = 0; b < 2; b++) {
    await Promise.all(Array.from({ length: 300 }, (_, i) => store.enqueue('old', { body: { n: b * 300 + i, note: 'x'.repeat(300) } })))
    const claimed = await store.claim('old', 300)
    await Promise.all(claimed.map((m) => store.complete(m.id, 'delivered')))
  }
  // Another process's read transaction, as a `weir messages list` or a `weir backup` holds one.
  const reader = new Database(join(dir.path, 'data', 'weir.db'))
  try {
    reader.exec('BEGIN')
    expect(reader.prepare('SELECT count(*) AS n FROM message_content').get()).toEqual({ n: 600 })
    const started = Date.now()
    let done = false
    const purging = store.purge({ channel: 'old' }).finally(() => { done = true })
    let slowest = 0
    while (!done) {
      const t0 = Date.now()
      await store.enqueue('live', { body: { t0 } })
      slowest = Math.max(slowest, Date.now() - t0)
      await new Promise((ok) => setTimeout(ok, 5))
    }
    expect(await purging).toBe(600)
    const took = Date.now() - started
    expect({ slowest: slowest < 1000, took: took < 2000 }, `slowest enqueue ${slowest} ms, purge ${took} ms`).toEqual({ slowest: true, took: true })
  } finally {
    reader.exec('COMMIT')
    reader.close()
  }
  // The reader gone, the next purge truncates the WAL.
  const m = await store.claim('live', 1)
  await store.complete(m[0]!.id, 'delivered')
  expect(await store.purge({ channel: 'live', keepNewest: 1000 })).toBe(0)
  expect(await store.purge({ channel: 'live', statuses: ['delivered'] })).toBe(1)
  expect((await store.stats('old')).delivered ?? 0).toBe(0)
}, 30_000)
