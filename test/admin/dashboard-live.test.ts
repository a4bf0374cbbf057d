// The live channel list when its answers stop: a session that ends (expiry, logout, an engine
// restart) sends the page to sign-in and back; an engine that does not answer (network error, 5xx)
// shows a visible "connection lost" notice and marks the figures stale until answers come back.
import { describe, expect, it } from 'vitest'
import { startAdminServer } from '../../engine/admin/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { OPERATOR_TOKEN, signIn, useBrowser, useDashboard } from './_dashboard.ts'
import { adminConfig, call } from './_admin.ts'

const { b: browser } = useBrowser()
const NOTICE = /^connection lost: figures as of \d\d:\d\d:\d\d; retrying$/

describe('the live dashboard when answers stop', () => {
  let clock = Date.now()
  const fx = useDashboard(browser, async (f) => [await f.rt.start({ name: 'adt', source: f.feed.definition, destinations: [] })], { now: () => clock, events: { tickMs: 200 } })

  it('goes to sign-in when the session expires, and back to the page it showed after signing in', async () => {
    const { page, url } = fx
    await signIn(page, url, OPERATOR_TOKEN)
    await page.goto(`${url}/?q=ad&size=25`)
    await expect.poll(() => page.getAttribute('#channels', 'data-live')).toBe('sse')
    clock += 9 * 3600_000 // past the session's 8 h
    await page.waitForURL(`${url}/login?next=${encodeURIComponent('/?q=ad&size=25')}`, { timeout: 10_000 })
    await page.fill('input[name="token"]', OPERATOR_TOKEN)
    await Promise.all([page.waitForURL(`${url}/?q=ad&size=25`), page.click('form.login button')])
    expect(await page.locator('#channels tbody tr').count()).toBe(1)
  })

  it('goes to sign-in when the session is logged out elsewhere', async () => {
    const { page, url } = fx
    await signIn(page, url, OPERATOR_TOKEN)
    await page.goto(`${url}/channels/adt?status=error`)
    await expect.poll(() => page.getAttribute('#channel-live', 'data-live')).toBe('sse')
    // The session's "Log out" form, posted from elsewhere (another tab of the same browser).
    const csrf = await page.getAttribute('header input[name="_csrf"]', 'value')
    const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ')
    const out = await call(url, '/logout', { method: 'POST', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ _csrf: csrf! }).toString() })
    expect(out.status).toBe(303)
    await page.waitForURL(`${url}/login?next=${encodeURIComponent('/channels/adt?status=error')}`, { timeout: 10_000 })
  })

  it('shows "connection lost" and marks the figures stale while the engine answers 5xx, and clears it when answers come back', async () => {
    const { page, url } = fx
    await signIn(page, url, OPERATOR_TOKEN)
    await page.route('**/api/events**', (r) => r.fulfill({ status: 503, body: '{"error":"too many streams"}' }))
    await page.route('**/api/channels', (r) => r.fulfill({ status: 502, body: 'bad gateway' }))
    await page.goto(`${url}/`)
    const notice = page.locator('#live-notice')
    await expect.poll(() => notice.textContent(), { timeout: 6000 }).toMatch(NOTICE)
    expect(await notice.isVisible()).toBe(true)
    expect(await page.getAttribute('#channels', 'data-stale')).toBe('true')
    await page.unroute('**/api/channels')
    await fx.feed.emit({ n: 1 })
    await expect.poll(() => page.textContent('tr[data-channel="adt"] [data-field="received"]'), { timeout: 6000 }).toBe('1')
    await expect.poll(() => notice.isVisible()).toBe(false)
    expect(await page.getAttribute('#channels', 'data-stale')).toBe(null)
  })

  it('shows "connection lost" when the engine is down, and goes to sign-in once a restarted engine answers', async () => {
    const { page, url } = fx
    await signIn(page, url, OPERATOR_TOKEN)
    await page.goto(`${url}/channels/adt`)
    await expect.poll(() => page.getAttribute('#channel-live', 'data-live')).toBe('sse')
    await fx.admin.close()
    const notice = page.locator('#live-notice')
    await expect.poll(() => notice.textContent(), { timeout: 15_000 }).toMatch(NOTICE)
    expect(await page.textContent('[data-field="status"]')).toBe('running') // the old figure, shown stale
    expect(await page.getAttribute('#channel-live', 'data-stale')).toBe('true')
    fx.admin = await startAdminServer({ host: '127.0.0.1', port: fx.admin.port, config: adminConfig({ tokens: [{ name: 'olivia', role: 'operator', token: OPERATOR_TOKEN }] }), log: silentLogger })
    fx.admin.attach({ store: fx.rt.store, handles: [fx.handle] })
    await page.waitForURL(`${url}/login?next=${encodeURIComponent('/channels/adt')}`, { timeout: 15_000 })
  }, 40_000)
})
