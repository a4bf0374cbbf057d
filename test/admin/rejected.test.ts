// Input a source rejected (ctx.rejected) in the admin API and on the dashboard's pages: the total per
// channel on the list and in GET /api/channels, and by reason there and on the channel's page.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { useRuntimeFixture } from '../runtime/_helpers.ts'
import { call } from './_admin.ts'
import { startListener } from './_listener.ts'

describe('rejected input in the admin API and pages', () => {
  const rt = useRuntimeFixture()
  let admin: AdminServer
  beforeEach(async () => { admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: OPEN_CONFIG, log: silentLogger }) })
  afterEach(() => admin.close())

  it('GET /api/channels counts a wrong content type and a wrong API key, in total and by reason; a good request is not counted', async () => {
    const { handle, post } = await startListener(rt, 'http-in', admin.observer)
    admin.attach({ store: rt.store, handles: [handle] })
    expect(await post('abc', { 'content-type': 'application/octet-stream' })).toBe(415)
    expect(await post('{"mrn": "1"}', { 'x-api-key': 'wrong' })).toBe(401)
    expect(await post('{"mrn": "2"}')).toBe(202)
    await handle.whenIdle()
    const { json } = await call(admin.url, '/api/channels')
    const view = json.channels.find((c: { name: string }) => c.name === 'http-in')
    expect(view.counters).toMatchObject({ received: 1, rejected: 2 })
    expect(view.rejections).toEqual({ malformed: 0, too_large: 0, unauthorized: 1, unsupported_media_type: 1, unsupported_version: 0, other: 0 })
  }, 20_000)

  it('the channel list shows the total in its Rejected column and the channel page shows it by reason', async () => {
    const { handle, post } = await startListener(rt, 'http-in', admin.observer)
    admin.attach({ store: rt.store, handles: [handle] })
    expect(await post('abc', { 'content-type': 'application/octet-stream' })).toBe(415)
    expect(await post('{}', { 'x-api-key': 'wrong' })).toBe(401)
    expect(await post('{}', { 'x-api-key': 'wrong' })).toBe(401)
    const list = await call(admin.url, '/', { headers: { accept: 'text/html' } })
    expect(list.text).toMatch(/<th[^>]*>Rejected/)
    expect(list.text).toContain('<td class="num" data-field="rejected">3</td>')
    const page = await call(admin.url, '/channels/http-in', { headers: { accept: 'text/html' } })
    expect(page.text).toContain('rejected <strong data-field="rejected">3</strong>')
    expect(page.text).toContain('<span data-field="rejectedByReason">(unauthorized 2 · unsupported media type 1)</span>')
  }, 20_000)
})
