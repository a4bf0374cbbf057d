import { describe, expect, it } from 'vitest'
import { readFile, stat } from 'node:fs/promises'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { applyRetention } from '../../engine/retention.ts'
import { channel, destination, feedSource, startWeirRun, until, useEngineFixture } from '../runtime/_helpers.ts'
import { atRestChannel, postTo, stop, weir } from '../security/_at-rest.ts'

const TOTAL = 100_000
const KEPT = 10_000
const mrn = (i: number) => `MRN-R${String(i).padStart(6, '0')}`

const f = useEngineFixture('weir-retention-')

/** `TOTAL` delivered messages in channel `bulk`, enqueued, claimed and completed a thousand at a time. */
async function fill(store: MessageStore): Promise<void> {
  for (let from = 0; from < TOTAL; from += 1000) {
    await Promise.all(Array.from({ length: 1000 }, (_, k) => store.enqueue('bulk', { body: { mrn: mrn(from + k), note: 'n'.repeat(400) } })))
    const claimed = await store.claim('bulk', 1000)
    await Promise.all(claimed.map((m) => store.complete(m.id, 'delivered')))
  }
}

/** Bytes of weir.db and its WAL. */
async function size(data: string): Promise<number> {
  const of = (f: string) => stat(join(data, f)).then((s) => s.size, () => 0)
  return (await of('weir.db')) + (await of('weir.db-wal'))
}

/** The data files (weir.db, -wal, -shm) whose bytes hold `text`. */
async function holding(data: string, text: string): Promise<string[]> {
  const found: string[] = []
  for (const f of ['weir.db', 'weir.db-wal', 'weir.db-shm']) {
    if ((await readFile(join(data, f)).catch(() => Buffer.alloc(0))).includes(text)) found.push(f)
  }
  return found
}

describe('retention frees the disk', () => {
  it('100,000 delivered messages down to the newest 10,000: the file shrinks to about a tenth, no purged body is left, delivery goes on', async () => {
    const data = join(f.dir.path, 'data')
    let store = openSqliteStore({ dataDir: data, synchronous: 'NORMAL' })
    await fill(store)
    await store.close()
    const full = await size(data)
    expect(await holding(data, mrn(0))).toEqual(['weir.db'])

    store = openSqliteStore({ dataDir: data, synchronous: 'NORMAL' })
    const feed = feedSource()
    const live = await startChannel(channel({ name: 'live', source: feed.definition, destinations: [destination('api', f.api.url)] }), { store, log: silentLogger, dataDir: data })
    let done = false
    const retention = applyRetention(store, [{ name: 'bulk', retention: { maxMessages: KEPT } }], { now: Date.now }).finally(() => { done = true })
    // While retention runs, the live channel delivers one message after another; after each
    // delivery, how many bulk messages are left shows the purge was part way through.
    const seen: number[] = []
    for (let i = 0; i < 2000 && !done; i++) {
      await feed.emit({ n: i })
      await until(() => f.api.received.length === i + 1, 10_000)
      seen.push((await store.stats('bulk')).delivered)
    }
    expect((await retention).get('bulk')).toEqual({ purged: TOTAL - KEPT, errors: 0 })
    const midway = new Set(seen.filter((n) => n > KEPT && n < TOTAL))
    expect(midway.size).toBeGreaterThanOrEqual(3)
    await live.stop()

    expect(await store.stats('bulk')).toMatchObject({ delivered: KEPT })
    const [oldest] = await store.list({ channel: 'bulk', order: 'asc', limit: 1 })
    expect(oldest!.body).toMatchObject({ mrn: mrn(TOTAL - KEPT) })
    await store.close()
    const after = await size(data)
    console.log(`retention: ${TOTAL} messages ${full} bytes; ${KEPT} kept ${after} bytes (${(after / full).toFixed(3)}); ${f.api.received.length} live deliveries during the purge, ${midway.size} seen midway`)
    expect(after).toBeLessThan(full * 0.15)
    for (const i of [0, 1, 45_000, TOTAL - KEPT - 1]) expect(await holding(data, mrn(i))).toEqual([])
    expect(await holding(data, mrn(TOTAL - 1))).toEqual(['weir.db'])
  }, 120_000)

  it('a database made before incremental vacuum is switched once when the engine opens it (a reader leaves it alone)', async () => {
    const data = join(f.dir.path, 'data')
    await openSqliteStore({ dataDir: data }).close()
    const raw = new Database(join(data, 'weir.db'))
    raw.pragma('auto_vacuum = NONE')
    raw.exec('VACUUM')
    raw.close()
    const mode = () => {
      const db = new Database(join(data, 'weir.db'), { readonly: true })
      try { return db.pragma('auto_vacuum', { simple: true }) } finally { db.close() }
    }
    expect(mode()).toBe(0)
    await openSqliteStore({ dataDir: data, owner: false }).close()
    expect(mode()).toBe(0)
    await openSqliteStore({ dataDir: data }).close()
    expect(mode()).toBe(2)
  })

  it('weir run applies a channel\'s retention when it starts', async () => {
    const data = join(f.dir.path, 'data')
    const store = openSqliteStore({ dataDir: data })
    let error = ''
    for (let i = 0; i < 12; i++) {
      const { id } = await store.enqueue('at-rest', { body: { mrn: mrn(i) } })
      await store.claim('at-rest', 1)
      await store.complete(id, i === 0 ? 'error' : 'delivered')
      if (i === 0) error = id
    }
    await store.close()
    const run = await startWeirRun(await atRestChannel(f.dir.path, [postTo(f.api.url)], { retention: { maxMessages: 5 } }), f.dir.path, 'at-rest.port', f.children)
    const listed = async () => JSON.parse((await weir(['messages', 'list', '--json', '--data-dir', data])).out) as Array<{ id: string }>
    // The newest 5 delivered ones, and the message in error: maxMessages alone never deletes it.
    await until(async () => (await listed()).length === 6, 20_000)
    expect((await listed()).at(-1)!.id).toBe(error)
    await stop(run)
    expect(run.output()).not.toContain('retention pass failed')
  }, 60_000)
})
