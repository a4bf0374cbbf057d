// Review finding: 60 POSTs of 1 MB grew the data directory by 65 MB in 1.8 s: nothing bounded the
// store's size on disk (queueLimit counts only unfinished messages). options.maxStoreBytes does.
import { expect, it } from 'vitest'
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
