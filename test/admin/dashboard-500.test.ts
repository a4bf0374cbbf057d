// The channel list with 500 channels in a real browser: the figure the README quotes (printed, not
// asserted: timings belong to benchmarks), and that filtering and paging work at that size.
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { launchBrowser } from '../_browser.ts'
import { destination, feedSource, useRuntimeFixture } from '../runtime/_helpers.ts'

const CHANNELS = 500
let browser: Browser
beforeAll(async () => {
  browser = await launchBrowser()
}, 60_000)
afterAll(async () => {
  await browser?.close()
})

const rt = useRuntimeFixture()

it(`lists ${CHANNELS} channels a page at a time, filters them by name, and reports how long the page and the event stream's snapshot take to load`, async () => {
  let admin: AdminServer | undefined
  try {
    admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: OPEN_CONFIG, log: silentLogger })
    const names = Array.from({ length: CHANNELS }, (_, i) => `channel-${String(i).padStart(3, '0')}`)
    for (const name of names) await rt.start({ name, source: feedSource().definition, destinations: [destination('api', rt.api.url)] }, { observer: admin.observer })
    admin.attach({ store: rt.store, handles: rt.handles })
    const page = await browser.newPage()
    await page.goto(`${admin.url}/`) // warm-up: the session cookie and the first render
    const loads: Record<string, number> = {}
    for (const path of ['/', '/?size=200', '/?q=channel-42']) {
      await page.goto(`${admin.url}${path}`, { waitUntil: 'load' })
      loads[path] = await page.evaluate<number>("Math.round(performance.getEntriesByType('navigation')[0].duration)")
    }
    const api = await page.evaluate<{ ms: number; count: number }>(`(async () => {
      const t0 = performance.now()
      const body = await (await fetch('/api/channels')).json()
      return { ms: Math.round(performance.now() - t0), count: body.channels.length }
    })()`)
    const stream = await page.evaluate<{ ms: number; count: number }>(`new Promise((resolve, reject) => {
      const t0 = performance.now()
      const source = new EventSource('/api/events')
      source.addEventListener('channels', (e) => {
        source.close()
        resolve({ ms: Math.round(performance.now() - t0), count: JSON.parse(e.data).channels.length })
      })
      source.addEventListener('error', () => reject(new Error('event stream failed')))
    })`)
    expect(await page.locator('#channels tbody tr').count()).toBe(10) // channel-42, channel-420 … channel-429
    await page.goto(`${admin.url}/`)
    expect(await page.locator('#channels tbody tr').count()).toBe(50)
    expect(await page.textContent('.pager')).toContain(`${CHANNELS} channel(s) · page 1 of 10`)
    expect(api.count).toBe(CHANNELS)
    expect(stream.count).toBe(CHANNELS)
    await expect.poll(() => page.getAttribute('#channels', 'data-live')).toBe('sse')
    console.log(`dashboard, ${CHANNELS} channels: page load ${loads['/']} ms (50 rows), ${loads['/?size=200']} ms (200 rows), ${loads['/?q=channel-42']} ms (name filter); GET /api/channels ${api.ms} ms; /api/events first snapshot (all ${CHANNELS}) ${stream.ms} ms`)
    await page.close()
  } finally {
    await admin?.close()
  }
}, 180_000)
