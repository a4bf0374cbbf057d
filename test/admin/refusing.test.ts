// Walkthrough finding: with every POST answered 503 "store full", the dashboard, /api/channels and
// weir_channel_status all said "running". A channel refusing input now says so (which limit, since
// when) in /api/channels, on the channel list and page, and in weir_channel_refusing, until it
// accepts a message again. /readyz stays ready (a limit of one channel, shared by a cluster's engines).
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { destination, feedSource, useRuntimeFixture } from '../runtime/_helpers.ts'
import { call, sample } from './_admin.ts'

describe('a channel refusing input, as the admin server shows it', () => {
  const rt = useRuntimeFixture()
  let admin: AdminServer
  let handle: ChannelHandle
  let feed: ReturnType<typeof feedSource>
  beforeEach(async () => {
    feed = feedSource()
    admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: OPEN_CONFIG, log: silentLogger })
    handle = await rt.start({ name: 'orders', source: feed.definition, destinations: [destination('api', rt.api.url), destination('audit', rt.api.url)], options: { queueLimit: 1 } }, { observer: admin.observer })
    admin.attach({ store: rt.store, handles: [handle] })
  })
  afterEach(() => admin.close())

  const fill = async () => {
    await handle.pause()
    await feed.emit({ n: 1 })
    await expect(feed.emit({ n: 2 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
  }

  it('is null in /api/channels and 0 in the metrics while the channel accepts', async () => {
    const api = await call(admin.url, '/api/channels')
    expect(api.json.channels[0].refusing).toBeNull()
    const metrics = await call(admin.url, '/metrics')
    expect(sample(metrics.text, 'weir_channel_refusing', { channel: 'orders', limit: 'queueLimit' })).toBe(0)
    expect(sample(metrics.text, 'weir_channel_refusing', { channel: 'orders', limit: 'maxStoreBytes' })).toBe(0)
  })

  it('shows the limit and since when in /api/channels, the metrics and the dashboard, and clears after an accepted message; /readyz stays ready', async () => {
    await fill()
    const since = handle.refusing()!.since
    const api = await call(admin.url, '/api/channels')
    expect(api.json.channels[0].refusing).toEqual({ limit: 'queueLimit', since: new Date(since).toISOString() })
    const metrics = await call(admin.url, '/metrics')
    expect(sample(metrics.text, 'weir_channel_refusing', { channel: 'orders', limit: 'queueLimit' })).toBe(1)
    expect(sample(metrics.text, 'weir_channel_refusing', { channel: 'orders', limit: 'maxStoreBytes' })).toBe(0)
    const hhmmss = new Date(since).toISOString().slice(11, 19)
    const list = await call(admin.url, '/')
    expect(list.text).toContain(`<small data-field="refusing" class="refusing">refusing input: queue full (queueLimit) since ${hhmmss} UTC</small>`)
    const page = await call(admin.url, '/channels/orders')
    expect(page.text).toContain(`<small data-field="refusing" class="refusing">refusing input: queue full (queueLimit) since ${hhmmss} UTC</small>`)
    expect((await call(admin.url, '/readyz')).status).toBe(200)

    await handle.resume()
    await handle.whenIdle()
    await feed.emit({ n: 3 })
    expect((await call(admin.url, '/api/channels')).json.channels[0].refusing).toBeNull()
    expect(sample((await call(admin.url, '/metrics')).text, 'weir_channel_refusing', { channel: 'orders', limit: 'queueLimit' })).toBe(0)
    expect((await call(admin.url, '/')).text).toContain('<small data-field="refusing" class="refusing"></small>')
  })

  it('counts an operator-paused destination in counters.paused, beside destinations[].paused', async () => {
    await handle.pause('audit')
    const c = (await call(admin.url, '/api/channels')).json.channels[0]
    expect(c.counters.paused).toBe(1)
    expect(c.destinations).toEqual([
      expect.objectContaining({ name: 'api', paused: false, breaker: 'closed' }),
      expect.objectContaining({ name: 'audit', paused: true, breaker: 'closed' }),
    ])
  })
})
