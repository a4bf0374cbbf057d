// Resubmitting a filtered set from the dashboard (preview, typed confirmation, the set frozen at the
// preview), the message log's paging and time filter, and the audit log page, in headless Chromium
// and over the JSON API.
import { describe, expect, it } from 'vitest'
import { auditPage } from '../../engine/admin/pages/audit.ts'
import { destination } from '../runtime/_helpers.ts'
import { call, bearer } from './_admin.ts'
import { feed, OPERATOR_TOKEN, signIn, useBrowser, useDashboard, VIEWER_TOKEN, type DashboardFixture } from './_dashboard.ts'

const { b: browser, shot } = useBrowser()

/** Channel "adt" (destinations api and audit, search key mrn); bodies with `fail` are refused (400: not retried), so they end in error. */
const useFixture = () => useDashboard(browser, async (fx) => {
  fx.rt.api.behaviour = ({ body }) => ((body as { fail?: boolean }).fail ? { status: 400, body: 'rejected' } : undefined)
  return [await fx.rt.start({ name: 'adt', source: fx.feed.definition, destinations: [destination('api', fx.rt.api.url), destination('audit', fx.rt.api.url)], options: { searchKeys: { mrn: 'mrn' } } })]
})

const statuses = async (fx: DashboardFixture, ids: string[]) => Promise.all(ids.map(async (id) => (await fx.rt.store.get(id))!.message.status))

describe('resubmitting a filtered set', () => {
  const fx = useFixture()

  it('previews the set, resubmits nothing until the count is typed, then exactly that set, and audits it', async () => {
    const failed = await feed(fx, [{ mrn: '1', fail: true }, { mrn: '2', fail: true }, { mrn: '3' }, { mrn: '2', fail: true }])
    const errors = [failed[0]!, failed[1]!, failed[3]!]
    expect(await statuses(fx, errors)).toEqual(['error', 'error', 'error'])
    fx.rt.api.behaviour = () => undefined // the API is fixed
    const sent = fx.rt.api.received.length
    const { page, url } = fx
    await signIn(page, url, OPERATOR_TOKEN)
    await page.goto(`${url}/channels/adt?status=error&since=1h`)
    await page.click('#resubmit-set')
    expect(await page.textContent('#preview-sentence')).toContain('This resubmits 3 messages to 2 destinations.')
    expect(await page.textContent('#preview-filter')).toMatch(/^status error, received since \d{4}-\d\d-\d\dT/)
    expect(await page.locator('#preview-destinations tbody tr').allTextContents()).toEqual(['api3', 'audit3'])
    await shot(page, 'resubmit-set')
    await page.fill('#confirm-count', '2')
    await page.click('form.confirm-set button') // the browser refuses the form: the count does not match
    expect(page.url()).toContain('/channels/adt/resubmit?')
    expect(fx.rt.api.received.length).toBe(sent)
    // A later error is not part of the previewed set.
    fx.rt.api.behaviour = ({ body }) => ((body as { fail?: boolean }).fail ? { status: 400 } : undefined)
    const [later] = await feed(fx, [{ mrn: '9', fail: true }])
    fx.rt.api.behaviour = () => undefined
    await page.fill('#confirm-count', '3')
    await Promise.all([page.waitForURL(/\/channels\/adt\?.*resubmitted=3/), page.click('form.confirm-set button')])
    expect(await page.textContent('#resubmitted')).toBe('Resubmitted 3 message(s): they are queued again.')
    await fx.handle.whenIdle({ timeoutMs: 10_000 })
    expect(await statuses(fx, errors)).toEqual(['delivered', 'delivered', 'delivered'])
    expect(await statuses(fx, [later!])).toEqual(['error'])
    expect(fx.rt.api.received.length).toBe(sent + 2 + 6) // the later message's two failures, then three messages to two destinations
    const [entry] = await fx.rt.store.auditLog()
    expect(entry).toMatchObject({ actor: 'olivia', action: 'resubmit', count: 3 })
    expect(entry!.target).toMatch(/^adt: status error, received since \S+; \S+ \S+ \S+$/) // with the three ids resubmitted
    await page.click('nav a[href="/audit"]')
    expect(await page.locator('#audit tbody tr').first().locator('td').allTextContents()).toEqual([expect.any(String), 'olivia', 'resubmit', entry!.target, '3'])
    await shot(page, 'audit')
  })

  it('over the API: refuses a confirmation without the count and one whose set changed since the preview (409, nothing done)', async () => {
    const ids = await feed(fx, [{ mrn: '7', fail: true }, { mrn: '7', fail: true }, { mrn: '8', fail: true }])
    const preview = await call(fx.url, '/api/channels/adt/resubmit?key=mrn%3D7&status=error', { headers: bearer(OPERATOR_TOKEN) })
    expect(preview.status).toBe(200)
    expect(preview.json).toMatchObject({ count: 2, more: false, messages: 2, destinations: { api: 2, audit: 2 }, sentence: 'resubmits 2 messages to 2 destinations', filter: 'status error, mrn=7', digest: expect.stringMatching(/^[0-9a-f]{64}$/) })
    // A mistyped key name is refused, naming the channel's search keys, instead of an empty set.
    const typo = await call(fx.url, '/api/channels/adt/resubmit?key=mnr%3D7&status=error', { headers: bearer(OPERATOR_TOKEN) })
    expect([typo.status, typo.json.error]).toEqual([400, 'key mnr: no message in the message log has search key "mnr"; did you mean "mrn"?; search keys there: mrn'])
    const post = (fields: Record<string, string>) => call(fx.url, '/api/channels/adt/resubmit', { method: 'POST', headers: { ...bearer(OPERATOR_TOKEN), 'content-type': 'application/json' }, body: JSON.stringify({ key: 'mrn=7', status: 'error', maxSeq: String(preview.json.maxSeq), count: '2', digest: preview.json.digest, ...fields }) })
    const unconfirmed = await post({})
    expect([unconfirmed.status, unconfirmed.json.error]).toEqual([400, 'type the number of messages (2) to confirm the resubmit'])
    const undigested = await post({ confirm: '2', digest: '' })
    expect([undigested.status, undigested.json.error]).toEqual([400, 'a resubmit of a set needs maxSeq, count and digest from its preview'])
    await fx.rt.store.resubmit({ ids: [ids[0]!] }) // someone else resubmitted one of them meanwhile
    const changed = await post({ confirm: '2' })
    expect(changed.status).toBe(409)
    expect(changed.json.error).toMatch(/^the set changed since its preview: it now holds 1 finished message\(s\), not 2/)
    expect(await statuses(fx, [ids[1]!, ids[2]!])).toEqual(['error', 'error'])
    expect(await fx.rt.store.auditLog()).toEqual([])
  })

  it('over the API: refuses a confirmation whose set holds as many messages but not the previewed ones (409, nothing done)', async () => {
    const [a] = await feed(fx, [{ mrn: '5' }])
    await fx.handle.pause()
    const b = (await fx.feed.emit({ mrn: '5' })).id // queued behind the pause: left out of the preview
    const preview = await call(fx.url, '/api/channels/adt/resubmit?key=mrn%3D5', { headers: bearer(OPERATOR_TOKEN) })
    expect(preview.json).toMatchObject({ count: 1, messages: 1 }) // a only
    await fx.handle.resume()
    await fx.handle.whenIdle({ timeoutMs: 10_000 }) // b delivered: it joins the set
    await fx.handle.pause()
    await fx.rt.store.resubmit({ ids: [a!] }) // someone else resubmitted a meanwhile: it leaves the set, whose count stays 1
    const sent = fx.rt.api.received.length
    const post = await call(fx.url, '/api/channels/adt/resubmit', {
      method: 'POST', headers: { ...bearer(OPERATOR_TOKEN), 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'mrn=5', maxSeq: String(preview.json.maxSeq), count: '1', confirm: '1', digest: preview.json.digest }),
    })
    expect(post.status).toBe(409)
    expect(post.json.error).toBe('the set changed since its preview: it still holds 1 finished message(s), but not as previewed (this confirmation was used already, or some were resubmitted, purged or finished meanwhile); nothing was resubmitted, preview it again')
    expect(await statuses(fx, [a!, b])).toEqual(['queued', 'delivered']) // b is not queued again
    expect(await fx.rt.store.auditLog()).toEqual([])
    await fx.handle.resume()
    await fx.handle.whenIdle({ timeoutMs: 10_000 })
    expect(fx.rt.api.received.length).toBe(sent + 2) // a, resubmitted by the other operator, to api and audit; b not again
  })

  it('over the API: a confirmation resubmits once; replayed later, or sent twice at once, it answers 409 and resends nothing (JSON numbers accepted)', async () => {
    const [a] = await feed(fx, [{ mrn: 'MRN12' }, { mrn: 'MRN13' }])
    const preview = await call(fx.url, '/api/channels/adt/resubmit?status=delivered&key=mrn%3DMRN12', { headers: bearer(OPERATOR_TOKEN) })
    expect(preview.json).toMatchObject({ count: 1, filter: 'status delivered, mrn=MRN12' })
    const body = JSON.stringify({ status: 'delivered', key: 'mrn=MRN12', maxSeq: preview.json.maxSeq, count: 1, digest: preview.json.digest, confirm: 1 })
    const post = () => call(fx.url, '/api/channels/adt/resubmit', { method: 'POST', headers: { ...bearer(OPERATOR_TOKEN), 'content-type': 'application/json' }, body })
    const sent = fx.rt.api.received.length
    const [first, second] = await Promise.all([post(), post()]) // a double click
    expect([first.status, second.status].sort()).toEqual([200, 409])
    expect((first.status === 200 ? first : second).json).toMatchObject({ resubmitted: 1 })
    await fx.handle.whenIdle({ timeoutMs: 10_000 })
    expect(await statuses(fx, [a!])).toEqual(['delivered'])
    const replay = await post() // the same confirmation, once the message finished again
    expect(replay.status).toBe(409)
    expect(replay.json.error).toMatch(/this confirmation was used already.*nothing was resubmitted, preview it again$/)
    await fx.handle.whenIdle({ timeoutMs: 10_000 })
    expect(fx.rt.api.received.length).toBe(sent + 2) // once, to api and audit
    const log = await fx.rt.store.auditLog()
    expect(log).toEqual([expect.objectContaining({ action: 'resubmit', count: 1, target: `adt: status delivered, mrn=(value withheld); ${a}` })])
    expect(JSON.stringify(log)).not.toContain('MRN12')
  })

  it('answers 404 for a channel the engine does not run and the log does not hold, naming the nearest', async () => {
    await feed(fx, [{ mrn: '1' }])
    const typo = await call(fx.url, '/api/channels/adtt/resubmit?status=delivered', { headers: bearer(OPERATOR_TOKEN) })
    expect([typo.status, typo.json.error]).toEqual([404, 'no channel "adtt": no messages of channel adtt in the message log; did you mean "adt"?; channels there: adt'])
    const page = await call(fx.url, '/channels/adtt/resubmit?status=delivered', { headers: bearer(OPERATOR_TOKEN) })
    expect(page.status).toBe(404)
    const confirm = await call(fx.url, '/api/channels/adtt/resubmit', { method: 'POST', headers: { ...bearer(OPERATOR_TOKEN), 'content-type': 'application/json' }, body: '{"status":"delivered","maxSeq":1,"count":1,"digest":"' + '0'.repeat(64) + '","confirm":1}' })
    expect(confirm.status).toBe(404)
    expect(await fx.rt.store.auditLog()).toEqual([])
  })

  it('the message log page of a channel the engine does not run and the log does not hold: 404 naming the nearest, not an empty log', async () => {
    // Finding: /channels/<typo> answered 200 with "0 message(s)", a typo looking like an empty log.
    await feed(fx, [{ mrn: '1' }])
    const typo = await call(fx.url, '/channels/adtt', { headers: { ...bearer(VIEWER_TOKEN), accept: 'text/html' } })
    expect(typo.status).toBe(404)
    expect(typo.text).toContain('no channel &#34;adtt&#34;: no messages of channel adtt in the message log; did you mean &#34;adt&#34;?; channels there: adt')
    const known = await call(fx.url, '/channels/adt', { headers: { ...bearer(VIEWER_TOKEN), accept: 'text/html' } })
    expect([known.status, known.text]).toEqual([200, expect.stringContaining('1 message(s), newest first')])
  })

  it('tells when a filter matches nothing to resubmit, and refuses a viewer the preview and the action', async () => {
    await feed(fx, [{ mrn: '1' }])
    const none = await call(fx.url, '/api/channels/adt/resubmit?status=error', { headers: bearer(OPERATOR_TOKEN) })
    expect(none.json).toMatchObject({ count: 0, messages: 0 })
    expect((await call(fx.url, '/api/channels/adt/resubmit', { headers: bearer(VIEWER_TOKEN) })).status).toBe(403)
    const post = await call(fx.url, '/api/channels/adt/resubmit', { method: 'POST', headers: { ...bearer(VIEWER_TOKEN), 'content-type': 'application/json' }, body: '{"maxSeq":"1","count":"1","confirm":"1"}' })
    expect(post.status).toBe(403)
    await signIn(fx.page, fx.url, VIEWER_TOKEN)
    await fx.page.goto(`${fx.url}/channels/adt`)
    expect(await fx.page.locator('#resubmit-set').count()).toBe(0)
  })
})

describe('message log paging and the audit log', () => {
  const fx = useFixture()

  it('pages through the log with "older" links, keeping the filter, and filters by an until time', async () => {
    const ids = await feed(fx, Array.from({ length: 57 }, (_, i) => ({ mrn: String(i % 3), n: i })))
    const { page, url } = fx
    await signIn(page, url, VIEWER_TOKEN)
    await page.goto(`${url}/channels/adt?limit=50&key=mrn%3D0`)
    const shown = () => page.locator('#messages tbody tr a').allTextContents()
    const mrn0 = ids.filter((_, i) => i % 3 === 0).reverse()
    expect(await shown()).toEqual(mrn0) // 19: one page
    expect(await page.locator('#older').count()).toBe(0)
    await page.goto(`${url}/channels/adt?limit=50`)
    expect(await shown()).toEqual([...ids].reverse().slice(0, 50))
    await page.click('#older')
    expect(page.url()).toContain('limit=50')
    expect(await shown()).toEqual([...ids].reverse().slice(50))
    await page.click('#newest')
    expect((await shown())[0]).toBe(ids.at(-1))
    const future = await call(url, `/channels/adt?until=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}`, { headers: bearer(VIEWER_TOKEN) })
    expect(future.text).not.toContain('/messages/')
    expect((await call(url, '/channels/adt?after=x', { headers: bearer(VIEWER_TOKEN) })).status).toBe(400)
  })

  it('pages the audit log without losing entries recorded in the same millisecond', async () => {
    for (let i = 0; i < 5; i++) await fx.rt.store.audit({ at: 5000, actor: 'a', action: 'pause', target: `t${i}`, count: 0 })
    await fx.rt.store.audit({ at: 4000, actor: 'a', action: 'pause', target: 't5', count: 0 })
    const seen: string[] = []
    let cursor: { before?: number; skip: number } = { skip: 0 }
    for (let guard = 0; guard < 10; guard++) {
      const { entries, next } = await auditPage(fx.rt.store, cursor, 2)
      seen.push(...entries.map((e) => e.target))
      if (!next) break
      cursor = next
    }
    expect(seen).toEqual(['t4', 't3', 't2', 't1', 't0', 't5'])
    const api = await call(fx.url, '/api/audit', { headers: bearer(VIEWER_TOKEN) })
    expect(api.json.entries).toHaveLength(6)
    expect(api.json.entries[0]).toEqual({ at: new Date(5000).toISOString(), actor: 'a', action: 'pause', target: 't4', count: 0 })
  })
})
