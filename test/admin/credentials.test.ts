import { join } from 'node:path'
import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { builtinComponents } from '../../components/index.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { startChannel, type ChannelHandle } from '../../engine/runtime/index.ts'
import { loadChannelObject } from '../../shared/config/load.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { createLogger } from '../../shared/log/index.ts'
import { createTokenProvider, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { feedSource } from '../runtime/_helpers.ts'
import { call, bearer } from './_admin.ts'
import { OPERATOR_TOKEN, VIEWER_TOKEN, signIn, useBrowser, useDashboard } from './_dashboard.ts'

const CLIENT_SECRET = 'lab-partner-secret-9f3a61c2e8'

const lines: string[] = []
const log = createLogger({ pretty: false, level: 'debug', destination: new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb() } }) })
const http = createHttpClient({ log })
const { b, shot } = useBrowser()
let as: AuthorizationServer
beforeAll(async () => { as = await startAuthorizationServer() })
afterAll(async () => {
  await as?.close()
  await http.close()
})

/** Channels "billing" and "lab-results" sharing credential "partner" (client_credentials against the embedded server), "adt" without one; fed by `feeds`. */
function useCredentialsDashboard() {
  const ctx = { clientId: '', clients: 0, feeds: [] as Array<ReturnType<typeof feedSource>>, handles: [] as ChannelHandle[] }
  const fx = useDashboard(b, async ({ rt, admin }) => {
    lines.length = 0
    ctx.clientId = `lab-${++ctx.clients}`
    as.registerClient({ clientId: ctx.clientId, authMethod: 'client_secret_basic', secret: CLIENT_SECRET, scopes: ['results.write'] })
    const cache = new TokenCache()
    const credential = (name: string, ch: { credentials: Record<string, unknown> }) => createTokenProvider(name, ch.credentials[name] as CredentialConfig, { log, dataDir: rt.dir.path, cache })
    const partner = { grant: 'client_credentials', tokenUrl: as.tokenUrl, clientId: ctx.clientId, clientAuth: { method: 'client_secret_basic', secret: { $env: 'PARTNER_SECRET' } }, scope: 'results.write', failFastMs: 120_000 }
    ctx.feeds = [feedSource(), feedSource(), feedSource()]
    ctx.handles = []
    for (const [i, name] of ['billing', 'lab-results', 'adt'].entries()) {
      const feed = ctx.feeds[i]!
      const uses = name === 'adt' ? {} : { credential: 'partner' }
      const raw = { name, source: { type: 'feed' }, ...(name === 'adt' ? {} : { credentials: { partner } }), destinations: [{ name: 'api', type: 'http', config: { url: rt.api.url, ...uses } }] }
      const loaded = await loadChannelObject(raw, { file: join(rt.dir.path, `${name}.json`), env: { PARTNER_SECRET: CLIENT_SECRET }, registry: createRegistry([...builtinComponents, feed.definition]) })
      ctx.handles.push(await startChannel(loaded, { store: rt.store, log, dataDir: rt.dir.path, observer: admin.observer, http, credential }))
    }
    rt.handles.push(...ctx.handles)
    return ctx.handles
  }, { log })
  return Object.assign(fx, { ctx })
}


describe('credentials page in a browser', () => {
  const fx = useCredentialsDashboard()

  /** Every token, secret and assertion the authorization server saw or issued: none may show anywhere. */
  const expectNoSecretIn = (...texts: string[]) => {
    const seen = as.secretsSeen()
    expect(seen.length).toBeGreaterThan(0)
    for (const text of texts) for (const s of seen) expect(text.includes(s), 'a token or secret leaked').toBe(false)
  }

  it('shows a shared credential once with its last fetch; "fetch a token now" succeeds, then shows invalid_client and fail-fast; no token anywhere', async () => {
    await fx.ctx.feeds[1]!.emit({ result: 5.4 })
    await fx.ctx.handles[1]!.whenIdle({ timeoutMs: 10_000 })
    const { page, url } = fx
    await signIn(page, url, OPERATOR_TOKEN)
    await page.click('header nav a[href="/credentials"]')
    const rows = page.locator('#credentials tbody tr')
    expect(await rows.count()).toBe(1)
    const row = page.locator('tr[data-credential="partner"]')
    expect(await row.locator('td').nth(1).textContent()).toBe('billing, lab-results')
    expect(await row.locator('td').nth(2).textContent()).toBe('client_credentials')
    expect(await row.locator('td').nth(3).textContent()).toBe(new URL(as.tokenUrl).host)
    expect(await row.locator('[data-field="fetched"]').textContent()).toMatch(/^\d+ s ago$/)
    expect(await row.locator('[data-field="requests"]').textContent()).toBe('1 / 0')
    expect(await row.locator('[data-field="failfast"]').textContent()).toBe('no')

    const before = as.requests.filter((r) => r.clientId === fx.ctx.clientId).length
    await row.locator('button:text("Fetch a token now")').click()
    expect(page.url()).toBe(`${url}/credentials?checked=partner&channel=billing`)
    expect(await page.textContent('[role="status"]')).toMatch(/^Token fetched for partner: expires in (299|300) s, scope results\.write\.$/)
    expect(as.requests.filter((r) => r.clientId === fx.ctx.clientId).length).toBe(before + 1) // past the cached token
    expect(await row.locator('[data-field="requests"]').textContent()).toBe('2 / 0')
    const okPage = await page.content()

    as.registerClient({ clientId: fx.ctx.clientId, authMethod: 'client_secret_basic', secret: 'rotated-on-the-server-only' })
    await row.locator('button:text("Fetch a token now")').click()
    const alert = await page.textContent('[role="alert"]')
    expect(alert).toMatch(/^Token request for partner failed: invalid_client: token endpoint .* answered 401 invalid_client: client secret mismatch$/)
    expect(await row.locator('[data-field="failure"]').textContent()).toContain('invalid_client')
    expect(await row.locator('[data-field="failfast"]').textContent()).toMatch(/^until \d\d:\d\d:\d\d UTC \(2 min\)$/)
    expect(fx.ctx.handles[0]!.status()).toBe('failing')
    await shot(page, 'credentials')

    const api = await call(url, '/api/credentials', { headers: bearer(VIEWER_TOKEN) })
    expect(api.json.credentials).toMatchObject([{
      name: 'partner', channels: ['billing', 'lab-results'], grant: 'client_credentials', scope: 'results.write',
      requests: { sent: 3, failed: 1 }, lastFailure: { code: 'ERR_OAUTH_RESPONSE', error: 'invalid_client' }, failingFastUntil: expect.any(String),
    }])
    const check = await call(url, '/api/credentials/partner/check?channel=lab-results', { method: 'POST', headers: bearer(OPERATOR_TOKEN) })
    expect(check.json).toMatchObject({ credential: 'partner', channel: 'lab-results', ok: false, error: { code: 'ERR_OAUTH_RESPONSE', error: 'invalid_client' }, by: 'olivia' })
    expect((await fx.rt.store.auditLog()).map((e) => [e.actor, e.action, e.target]).reverse()).toEqual([
      ['olivia', 'check-credential', 'billing/partner: ok'], ['olivia', 'check-credential', 'billing/partner: invalid_client'], ['olivia', 'check-credential', 'lab-results/partner: invalid_client'],
    ])
    expectNoSecretIn(okPage, await page.content(), api.text, check.text, lines.join(''))
  })

  it('refuses a viewer the check: no button, a forged form and an API call both answer 403, and no token request is made', async () => {
    const { page, url } = fx
    await signIn(page, url, VIEWER_TOKEN)
    await page.goto(`${url}/credentials`)
    expect(await page.locator('tr[data-credential="partner"]').count()).toBe(1)
    expect(await page.locator('#credentials button').count()).toBe(0)
    const before = as.requests.length
    const forged = await page.evaluate(`(async () => {
      const csrf = document.querySelector('input[name="_csrf"]').value
      const res = await fetch('/credentials/partner/check', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '_csrf=' + encodeURIComponent(csrf) + '&channel=billing' })
      return res.status
    })()`)
    expect(forged).toBe(403)
    const api = await call(url, '/api/credentials/partner/check', { method: 'POST', headers: bearer(VIEWER_TOKEN) })
    expect([api.status, api.json]).toEqual([403, { error: 'requires role "operator"' }])
    expect(as.requests.length).toBe(before)
    expect(await fx.rt.store.auditLog()).toEqual([])
    const unknown = await call(url, '/api/credentials/nobody/check', { method: 'POST', headers: bearer(OPERATOR_TOKEN) })
    expect([unknown.status, unknown.json]).toEqual([404, { error: 'no channel uses a credential "nobody"' }])
  })
})
