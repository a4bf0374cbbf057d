// The dashboard's pages over HTTP: invisible and bidi characters of a message escaped, a single
// message's resubmit confirmation good once, Pause / Resume refused on a stopped channel and
// returning to the page they came from, destinations paused shown on the list, and small things
// (a page of the log said to be one, a bad status filter refused, the favicon).
import { beforeEach, describe, expect, it } from 'vitest'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { destination, feedSource, useRuntimeFixture } from '../runtime/_helpers.ts'
import { afterEach } from 'vitest'
import { adminConfig, bearer, call, sessionCookie, type Answer } from './_admin.ts'

const OP = 'op-7a1c3e5f9b2d4860a1c3'
const config = () => adminConfig({ tokens: [{ name: 'olivia', role: 'operator', token: OP }] })
const PAGE = { accept: 'text/html' }

describe('dashboard pages', () => {
  const rt = useRuntimeFixture()
  let admin: AdminServer
  let feed: ReturnType<typeof feedSource>
  let handle: ChannelHandle
  let cookie = ''
  let csrf = ''
  beforeEach(async () => {
    feed = feedSource()
    admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: config(), log: silentLogger })
    handle = await rt.start({ name: 'orders', source: feed.definition, destinations: [destination('api', rt.api.url), destination('audit', rt.api.url)] }, { observer: admin.observer })
    admin.attach({ store: rt.store, handles: [handle] })
    const login = await call(admin.url, '/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: OP }) })
    cookie = sessionCookie(login)
    csrf = login.json.csrfToken
  })
  afterEach(() => admin.close())

  const page = (path: string): Promise<Answer> => call(admin.url, path, { headers: { ...PAGE, cookie } })
  const form = (path: string, fields: Record<string, string>): Promise<Answer> =>
    call(admin.url, path, { method: 'POST', headers: { ...PAGE, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ _csrf: csrf, ...fields }).toString() })
  const send = async (bodies: unknown[]) => {
    const ids: string[] = []
    for (const b of bodies) ids.push((await feed.emit(b)).id)
    await handle.whenIdle({ timeoutMs: 10_000 })
    return ids
  }

  it('shows bidi overrides and other invisible characters of a JSON body and its attributes escaped, never raw', async () => {
    const [id] = await send([{ patient: { mrn: '2037\u202e13', name: 'DOE\u2066^JOHN\x7f\x85' } }])
    const shown = await page(`/messages/${id}`)
    expect(shown.status).toBe(200)
    expect(shown.text).toContain('2037\\u202e13')
    expect(shown.text).toContain('DOE\\u2066^JOHN')
    expect(shown.text).not.toMatch(/[\x7f-\x9f\u202a-\u202e\u2066-\u2069]/)
  })

  it('refuses a single message\'s resubmit confirmation used a second time (browser Back), 409', async () => {
    const [id] = await send([{ n: 1 }])
    const confirm = await page(`/messages/${id}/resubmit`)
    const fields = Object.fromEntries([...confirm.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!]).filter(([k]) => k !== '_csrf'))
    const first = await form(`/messages/${id}/resubmit`, fields)
    expect(first.status).toBe(303)
    await handle.whenIdle({ timeoutMs: 10_000 })
    const received = rt.api.received.length
    const again = await form(`/messages/${id}/resubmit`, fields)
    expect(again.status).toBe(409)
    expect(again.text).toContain('this confirmation was used already')
    expect(rt.api.received.length).toBe(received)
    const bare = await form(`/messages/${id}/resubmit`, { confirm: 'yes' })
    expect(bare.status).toBe(400)
  })

  it('refuses Pause and Resume on a stopped channel (409) and offers neither on its pages', async () => {
    await handle.stop()
    expect(handle.status()).toBe('stopped')
    for (const action of ['pause', 'resume']) {
      const r = await call(admin.url, `/api/channels/orders/${action}`, { method: 'POST', headers: bearer(OP) })
      expect(r.status).toBe(409)
      expect(r.json.error).toBe('channel "orders" is stopped: a stopped channel stays stopped (it stopped on error with onError "stop", or the engine is stopping); fix the cause, then restart the engine to start it again')
    }
    for (const path of ['/', '/channels/orders']) {
      const shown = await page(path)
      expect(shown.text).toContain('stopped')
      expect(shown.text).not.toMatch(/>(Pause|Resume)</)
    }
  })

  it('shows on the channel list that every destination of a running channel is paused', async () => {
    await handle.pause('api')
    await handle.pause('audit')
    const list = await page('/')
    expect(list.text).toMatch(/>running<\/span> <small data-field="pausedDestinations">destinations paused: api, audit<\/small>/)
    const api = await call(admin.url, '/api/channels', { headers: bearer(OP) })
    expect(api.json.channels[0].destinations.every((d: { paused: boolean }) => d.paused)).toBe(true)
  })

  it('returns from Pause and Resume to the page they came from, a local path only', async () => {
    const list = await page('/?q=ord&size=25')
    expect(list.text).toContain('name="back" value="/?q=ord&#38;size=25"')
    expect((await form('/channels/orders/pause', { back: '/?q=ord&size=25' })).headers.location).toBe('/?q=ord&size=25')
    const channelPage = await page('/channels/orders?status=error&resubmitted=3')
    expect(channelPage.text).toContain('name="back" value="/channels/orders?status=error"')
    for (const evil of ['//evil.example/', '/\t/evil.example', '/\\evil.example', 'https://evil.example/']) {
      expect((await form('/channels/orders/resume', { back: evil })).headers.location).toBe('/channels/orders')
    }
  })

  it('sends a deep link without a session to sign-in and back to it after, a local path only', async () => {
    const deep = await call(admin.url, '/channels/orders?status=error', { headers: PAGE })
    expect(deep.status).toBe(303)
    expect(deep.headers.location).toBe('/login?next=%2Fchannels%2Forders%3Fstatus%3Derror')
    const login = await call(admin.url, deep.headers.location!, { headers: PAGE })
    expect(login.text).toContain('name="next" value="/channels/orders?status=error"')
    const signIn = (next: string, token = OP) => call(admin.url, '/login', { method: 'POST', headers: { ...PAGE, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token, next }).toString() })
    expect((await signIn('/channels/orders?status=error')).headers.location).toBe('/channels/orders?status=error')
    expect((await signIn('//evil.example/x')).headers.location).toBe('/')
    expect((await signIn('/channels/orders', 'wrong')).headers.location).toBe('/login?failed=1&next=%2Fchannels%2Forders')
    expect((await call(admin.url, '/login?next=//evil.example', { headers: PAGE })).text).toContain('name="next" value="/"')
  })

  it('labels the counters as counted since the engine started, and shows the messages in error in the log beside them', async () => {
    rt.api.behaviour = () => ({ status: 400, body: 'rejected' })
    await send([{ n: 1 }])
    const list = await page('/')
    expect(list.text).toMatch(/<th>Errors<br><small>since start \d\d:\d\d UTC<\/small><\/th>/)
    expect(list.text).toContain('<td class="num" data-field="inError">1</td>')
    expect((await page('/channels/orders')).text).toMatch(/since start \d\d:\d\d UTC: received <strong data-field="received">1<\/strong>/)
  })

  it('says which filter dropped a filtered message, as "Filtered by", not as an error; the log\'s Reason column has it and an error\'s HTTP status first', async () => {
    const [filtered, failed] = [await rt.store.enqueue('ledger', { body: 1 }), await rt.store.enqueue('ledger', { body: 2 })]
    await rt.store.claim('ledger', 2)
    await rt.store.complete(filtered.id, 'filtered', [{ destination: 'api', part: 0, status: 'filtered' }], 'filters/2 "test-patients" (match)')
    const full = `epic-fhir: ERR_HTTP_STATUS: POST http://127.0.0.1:18443/api/FHIR/R4/Patient/${'x'.repeat(80)} answered 422: "invalid"`
    await rt.store.complete(failed.id, 'error', [], full)
    const shown = await page(`/messages/${filtered.id}`)
    expect(shown.text).toContain('<dt>Filtered by</dt><dd id="filtered-by">filters/2 &#34;test-patients&#34; (match)</dd>')
    expect(shown.text).not.toContain('<dt>Error</dt>')
    expect((await page(`/messages/${failed.id}`)).text).toContain(`<dt>Error</dt><dd>${full.replaceAll('"', '&#34;')}</dd>`)
    const log = (await page('/channels/ledger')).text
    expect(log).toContain('<th>Reason</th>')
    const row = (id: string) => log.slice(log.indexOf(`/messages/${id}"`)).split('</tr>')[0]!
    expect(row(filtered.id)).toContain('<td>filtered by filters/2 &#34;test-patients&#34; (match)</td>')
    expect(row(failed.id)).toContain('<td>epic-fhir: http 422: &#34;invalid&#34;</td>')
  })

  it('shows the retry of a message\'s filters (as weir messages show does) while they retry', async () => {
    const { id } = await rt.store.enqueue('ledger', { body: 3 })
    await rt.store.claim('ledger', 1)
    const due = Date.UTC(2026, 11, 3, 12, 0, 0)
    await rt.store.recordFilterRetry(id, { charged: 2, elapsedMs: 1500, nextAttemptAt: due })
    expect((await page(`/messages/${id}`)).text).toContain('<dt>Filters retrying</dt><dd id="filter-retry">retry budget spent: 2 attempt(s), 1500 ms; next attempt due 2026-12-03T12:00:00.000Z</dd>')
    await rt.store.recordFilterRetry(id, null)
    expect((await page(`/messages/${id}`)).text).not.toContain('Filters retrying')
  })

  it('says a full page of the log is a page, refuses an unknown status filter, and answers the favicon', async () => {
    await send(Array.from({ length: 51 }, (_, n) => ({ n })))
    const log = await page('/channels/orders?limit=50')
    expect(log.text).toMatch(/showing 50, newest first; <a rel="next" id="older"/)
    const bogus = await page('/?status=bogus')
    expect(bogus.status).toBe(400)
    expect(bogus.text).toContain('status must be one of running, paused, failing, stopping, stopped')
    expect((await call(admin.url, '/favicon.ico')).status).toBe(204)
  })
})
