// The dashboard in a real browser (headless Chromium): sign-in, the channel list with live counters,
// the message log and key search, a message with a hostile body, resubmit with confirmation, pause and
// resume, a viewer refused. Takes a screenshot of each page: into docs/screenshots/ (the README's)
// with WEIR_SCREENSHOTS=1, else into a temporary directory, so that a test run leaves the tree clean.
import { describe, expect, it } from 'vitest'
import type { EventStreamOptions } from '../../engine/admin/events.ts'
import { destination, feedSource, until } from '../runtime/_helpers.ts'
import { feed, OPERATOR_TOKEN, signIn, useBrowser, useDashboard as useDashboardOf, VIEWER_TOKEN } from './_dashboard.ts'

const HOSTILE = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
const HL7 = 'MSH|^~\\&|LAB|HOSP|WEIR|HOSP|202611300915||ORU^R01|MSG0001|P|2.5\rPID|1||555001^^^HOSP^MR||DOE^JANE\rOBX|1|NM|GLU^Glucose||5.4|mmol/L'

const { b: browser, shot } = useBrowser()

/** Channels "adt" (fed; destinations api and audit; search key mrn), "billing" and "lab-results". */
const useDashboard = (events?: EventStreamOptions) => useDashboardOf(browser, async (fx) => {
  const others = await Promise.all(['billing', 'lab-results'].map((name) => fx.rt.start({ name, source: feedSource().definition, destinations: [destination('api', fx.rt.api.url)] }, { observer: fx.admin.observer })))
  const adt = await fx.rt.start({ name: 'adt', source: fx.feed.definition, destinations: [destination('api', fx.rt.api.url), destination('audit', fx.rt.api.url)], options: { searchKeys: { mrn: 'patient.mrn' } } }, { observer: fx.admin.observer })
  return [adt, ...others]
}, events ? { events } : {})

describe('dashboard in a browser', () => {
  const fx = useDashboard()

  it('sends a browser without a session to the login form, refuses a wrong token, and lists the channels with live counters', async () => {
    const { page, url } = fx
    await page.goto(`${url}/`)
    expect(page.url()).toBe(`${url}/login`)
    await shot(page, 'login')
    await page.fill('input[name="token"]', 'not-a-token')
    await page.click('form.login button')
    await expect.poll(() => page.textContent('[role="alert"]')).toBe('Unknown token.')
    await signIn(page, url, OPERATOR_TOKEN)
    expect(await page.textContent('header .who')).toBe('olivia (operator)')
    const names = await Promise.all((await page.locator('#channels tbody tr').all()).map((r) => r.getAttribute('data-channel')))
    expect(names).toEqual(['adt', 'billing', 'lab-results'])
    const received = page.locator('tr[data-channel="adt"] [data-field="received"]')
    expect(await received.textContent()).toBe('0')
    await expect.poll(() => page.getAttribute('#channels', 'data-live')).toBe('sse')
    await expect.poll(() => fx.admin.events.subscribers).toBe(1)
    await feed(fx, [{ patient: { mrn: '203713', name: 'DOE^JOHN' } }, { patient: { mrn: '118200', name: 'ROE^ANN' } }])
    await expect.poll(() => received.textContent(), { timeout: 6000 }).toBe('2') // the event stream, without a reload
    await expect.poll(() => page.textContent('tr[data-channel="adt"] [data-field="delivered"]')).toBe('2') // the same tick or the next
    await shot(page, 'channels')
    await fx.handle.pause()
    await expect.poll(() => page.textContent('tr[data-channel="adt"] [data-field="status"]'), { timeout: 6000 }).toBe('paused')
    expect(await page.textContent('tr[data-channel="adt"] button')).toBe('Resume') // the row's form follows the status
    await page.goto(`${url}/?q=lab&status=running`)
    expect(await page.locator('#channels tbody tr').count()).toBe(1)
    expect(await page.textContent('.pager')).toContain('1 channel(s)')
    await page.close()
    await expect.poll(() => fx.admin.events.subscribers).toBe(0) // the server forgot the closed page's stream
  })

  it('searches the message log by MRN and by status, and opens a message', async () => {
    const [, wanted] = await feed(fx, [{ patient: { mrn: '118200' } }, { patient: { mrn: '203713' } }, { patient: { mrn: '990001' } }])
    await signIn(fx.page, fx.url, VIEWER_TOKEN)
    const { page } = fx
    await page.click('a[href="/channels/adt"]')
    expect(await page.locator('#messages tbody tr').count()).toBe(3)
    await page.fill('input[name="key"]', 'mrn=203713')
    await page.click('form.filters button')
    expect(page.url()).toContain('key=mrn%3D203713')
    const rows = page.locator('#messages tbody tr')
    expect(await rows.count()).toBe(1)
    expect(await rows.first().locator('a').textContent()).toBe(wanted)
    await shot(page, 'message-log')
    await page.selectOption('select[name="status"]', 'error')
    await page.fill('input[name="key"]', '')
    await page.click('form.filters button')
    expect(await rows.count()).toBe(0)
    await page.goto(`${fx.url}/channels/adt?key=mrn%3D203713`)
    await page.click(`a[href="/messages/${wanted}"]`)
    expect(await page.textContent('h1')).toBe(`Message ${wanted}`)
    expect(await page.locator('#deliveries tbody tr').count()).toBe(2)
  })

  it('shows a hostile body as text, runs nothing from it, redacts secrets, and puts an HL7 v2 segment on each line', async () => {
    const [hostile, hl7] = await feed(fx, [{ patient: { mrn: '203713', name: HOSTILE }, password: 'hunter2-secret' }, HL7])
    await signIn(fx.page, fx.url, OPERATOR_TOKEN)
    const { page } = fx
    await page.goto(`${fx.url}/messages/${hostile}`)
    const body = await page.textContent('#body')
    expect(body).toContain(JSON.stringify(HOSTILE))
    expect(body).toContain('"password": "[REDACTED]"')
    expect(await page.content()).not.toContain('hunter2-secret')
    expect(await page.locator('#body *').count()).toBe(0) // no element made from the body
    expect(await page.evaluate('typeof window.__pwned')).toBe('undefined')
    await shot(page, 'message')
    await page.goto(`${fx.url}/messages/${hl7}`)
    expect((await page.textContent('#body'))!.split('\n').map((l) => l.slice(0, 3))).toEqual(['MSH', 'PID', 'OBX'])
  })

  it('resubmits a message only after the confirmation', async () => {
    const [id] = await feed(fx, [{ patient: { mrn: '203713' } }])
    const before = fx.rt.api.received.length
    await signIn(fx.page, fx.url, OPERATOR_TOKEN)
    const { page } = fx
    await page.goto(`${fx.url}/messages/${id}`)
    await page.click('text=Resubmit…')
    expect(page.url()).toBe(`${fx.url}/messages/${id}/resubmit`)
    expect(await page.textContent('h1')).toBe(`Resubmit message ${id}?`)
    await shot(page, 'resubmit-confirm')
    expect(fx.rt.api.received.length).toBe(before) // nothing happens before the confirmation
    await page.click('text=Yes, resubmit')
    expect(page.url()).toBe(`${fx.url}/messages/${id}?resubmitted=1`)
    expect(await page.textContent('[role="status"]')).toBe('Resubmitted: the message is queued again.')
    await until(() => fx.rt.api.received.length === before + 2)
    await fx.handle.whenIdle({ timeoutMs: 10_000 })
    expect((await fx.rt.store.get(id!))!.message.status).toBe('delivered')
    expect(await fx.rt.store.auditLog()).toMatchObject([{ actor: 'olivia', action: 'resubmit', target: id, count: 1 }])
  })

  it('pauses and resumes a channel and one destination', async () => {
    await signIn(fx.page, fx.url, OPERATOR_TOKEN)
    const { page } = fx
    await page.click('tr[data-channel="adt"] button:text("Pause")')
    expect(page.url()).toBe(`${fx.url}/`)
    expect(await page.textContent('tr[data-channel="adt"] [data-field="status"]')).toBe('paused')
    expect(fx.handle.status()).toBe('paused')
    await page.click('tr[data-channel="adt"] button:text("Resume")')
    expect(fx.handle.status()).toBe('running')
    await page.goto(`${fx.url}/channels/adt`)
    // The channel page is live too: counters and a destination paused elsewhere show without a reload.
    expect(await page.getAttribute('#channel-live', 'data-live')).toBe('sse')
    await feed(fx, [{ patient: { mrn: '203713' } }])
    await expect.poll(() => page.textContent('#channel-live [data-field="received"]'), { timeout: 6000 }).toBe('1')
    await fx.handle.pause('api')
    await expect.poll(() => page.textContent('tr[data-destination="api"] [data-field="paused"]'), { timeout: 6000 }).toBe('paused')
    await fx.handle.resume('api')
    await expect.poll(() => page.textContent('tr[data-destination="api"] [data-field="paused"]'), { timeout: 6000 }).toBe('no')
    await page.click('tr[data-destination="audit"] button:text("Pause")')
    expect(page.url()).toBe(`${fx.url}/channels/adt`)
    expect(await page.textContent('tr[data-destination="audit"] td:nth-child(3)')).toBe('paused')
    expect(fx.handle.destinations().find((d) => d.name === 'audit')!.paused).toBe(true)
    await shot(page, 'channel')
    await page.click('tr[data-destination="audit"] button:text("Resume")')
    expect(fx.handle.destinations().find((d) => d.name === 'audit')!.paused).toBe(false)
    expect((await fx.rt.store.auditLog()).map((e) => [e.actor, e.action, e.target]).reverse()).toEqual([['olivia', 'pause', 'adt'], ['olivia', 'resume', 'adt'], ['olivia', 'pause', 'adt/audit'], ['olivia', 'resume', 'adt/audit']])
  })

  it('refuses a viewer every action: no buttons, the confirmation page and a forged form both answer 403', async () => {
    const [id] = await feed(fx, [{ patient: { mrn: '203713' } }])
    await signIn(fx.page, fx.url, VIEWER_TOKEN)
    const { page } = fx
    expect(await page.locator('#channels button').count()).toBe(0)
    await page.goto(`${fx.url}/messages/${id}`)
    expect(await page.locator('text=Resubmit…').count()).toBe(0)
    // The form a viewer could forge: its session's CSRF token (from the logout form) and a POST from the page itself.
    const forged = await page.evaluate(`(async () => {
      const csrf = document.querySelector('input[name="_csrf"]').value
      const res = await fetch('/channels/adt/pause', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '_csrf=' + encodeURIComponent(csrf) })
      return res.status
    })()`)
    expect(forged).toBe(403)
    const confirm = await page.goto(`${fx.url}/messages/${id}/resubmit`)
    expect(confirm!.status()).toBe(403)
    expect(await page.textContent('[role="alert"]')).toBe('requires role "operator"')
    await shot(page, 'viewer-refused')
    expect(fx.handle.status()).toBe('running')
    expect(await fx.rt.store.auditLog()).toEqual([])
  })
})

describe('dashboard without the event stream', () => {
  const fx = useDashboard({ maxStreams: 0 })

  it('falls back to polling /api/channels when the server refuses the stream', async () => {
    await signIn(fx.page, fx.url, VIEWER_TOKEN)
    await expect.poll(() => fx.page.getAttribute('#channels', 'data-live')).toBe('poll')
    await feed(fx, [{ patient: { mrn: '203713' } }])
    await expect.poll(() => fx.page.textContent('tr[data-channel="adt"] [data-field="received"]'), { timeout: 6000 }).toBe('1')
  })
})
