// Review finding: 60 POSTs of 1 MB grew the data directory by 65 MB in 1.8 s: nothing bounded the
// store's size on disk (queueLimit counts only unfinished messages). options.maxStoreBytes does.
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { openSqliteStore } from '../../shared/store/index.ts'
import { request } from 'undici'
import { until } from '../_setup.ts'
import { startTestChannel, textCollector } from '../reliability/_helpers.ts'

it('maxStoreBytes: once the store reaches it the listener answers 503 with Retry-After and says why in the log; after a purge it accepts again', async () => {
  const collector = textCollector()
  const ch = await startTestChannel({
    name: 'store-size',
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }],
    options: { maxStoreBytes: 2 * 1024 * 1024, concurrency: 4 },
  }, { log: collector.log })
  try {
    const url = `http://127.0.0.1:${ch.handle.source.address!()!.port}/`
    const body = JSON.stringify({ mrn: 'MRN-1', filler: 'x'.repeat(200_000) })
    const post = () => request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    const statuses: number[] = []
    let refusal: { retryAfter: unknown; text: string } | undefined
    for (let i = 0; i < 60 && !refusal; i++) {
      const res = await post()
      const text = await res.body.text()
      statuses.push(res.statusCode)
      if (res.statusCode === 503) refusal = { retryAfter: res.headers['retry-after'], text }
      else await new Promise((ok) => setTimeout(ok, 50)) // past the once-a-second size reading, sometimes
    }
    expect(refusal).toBeDefined()
    expect(Number(refusal!.retryAfter)).toBeGreaterThanOrEqual(1)
    const accepted = statuses.filter((s) => s === 202).length
    // 2 MiB of ~200 KB bodies: about ten stored, plus those taken in the second before the next size reading.
    expect(accepted).toBeGreaterThanOrEqual(8)
    expect(accepted).toBeLessThan(40)
    expect(collector.texts.join('')).toMatch(/refusing messages: the message store is full \(\d+ bytes on disk, maxStoreBytes 2097152\)/)
    // The episode is logged by the channel, not each refused request by the listener (a line per 503 flooded the log).
    const warned = collector.texts.join('').split('\n').filter((l) => l.includes('message not accepted') && !l.includes('"level":20'))
    expect(warned).toEqual([])
    expect(collector.texts.join('')).toMatch(/"level":20[^\n]*message not accepted/)
    expect((await ch.store.stats('store-size')).delivered + (await ch.store.stats('store-size')).queued).toBe(accepted)

    await ch.handle.whenIdle()
    expect(await ch.store.purge({ before: Date.now() + 1 })).toBe(accepted)
    let status = 0
    await until(async () => {
      const res = await post()
      await res.body.text()
      status = res.statusCode
      return status === 202
    }, 20_000)
    expect(status).toBe(202)
  } finally {
    await ch.close()
  }
})

// Walkthrough finding: with --max-store-bytes 1048576, 34 messages of 2 KB filled "the store": 64 KB
// of database and a 1.43 MB WAL, which keeps its size between checkpoints whatever it holds. The
// limit counts the database's pages in use and the WAL only beyond its working size.
it('the store size counts the pages in use, not the WAL file kept between checkpoints nor free pages', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'weir-size-'))
  const store = openSqliteStore({ dataDir: dir })
  try {
    const files = async () => (await stat(join(dir, 'weir.db'))).size + (await stat(join(dir, 'weir.db-wal')).then((s) => s.size, () => 0))
    const ids: string[] = []
    // One commit per message, as a sender waiting for each acknowledgement makes them.
    for (let i = 0; i < 40; i++) ids.push((await store.enqueue('c', { body: { mrn: `MRN-${i}`, filler: 'x'.repeat(2000) } })).id)
    const wal = (await stat(join(dir, 'weir.db-wal'))).size
    expect(wal).toBeGreaterThan(1024 * 1024) // the scenario: the WAL file alone is past 1 MiB
    const size = await store.size()
    expect(size).toBeLessThan(512 * 1024) // 40 × ~2 KB of messages, their indexes and tables
    expect(size).toBeGreaterThan(40 * 2000)
    expect(await files()).toBeGreaterThan(size + 512 * 1024)
    // Deleted messages leave free pages, reused by the next ones: not counted.
    const got = await store.claim('c', 40)
    for (const m of got) await store.complete(m.id, 'delivered')
    const full = await store.size()
    expect(await store.purge({ before: Date.now() + 1 })).toBe(40)
    expect(await store.size()).toBeLessThan(full)
  } finally {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
})
