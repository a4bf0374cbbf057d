import { describe, expect, it } from 'vitest'
import { CONTENT_SECURITY_POLICY, escapeHtml } from '../../engine/admin/http.ts'
import { startAdminServer } from '../../engine/admin/index.ts'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { leakCollector } from '../oauth/_helpers.ts'
import { until } from '../runtime/_helpers.ts'
import { adminConfig, call, sessionCookie, useAdminFixture, bearer } from './_admin.ts'

const OPERATOR_TOKEN = 'op-3f1c9a7e5b2d48e6a0c1'
const VIEWER_TOKEN = 'vw-8e2b4d6f1a3c5e7b9d0f'
const env = { OP_TOKEN: OPERATOR_TOKEN, VIEW_TOKEN: VIEWER_TOKEN }
const tokensConfig = { tokens: [{ name: 'ops', role: 'operator', token: { $env: 'OP_TOKEN' } }, { name: 'dash', role: 'viewer', token: { $env: 'VIEW_TOKEN' } }] }

describe('admin server on loopback without authentication (open)', () => {
  const fx = useAdminFixture()

  it('answers /healthz and /readyz without credentials, every response with the security headers', async () => {
    for (const [path, status] of [['/healthz', 200], ['/readyz', 200], ['/nowhere', 404]] as const) {
      const a = await call(fx.url, path)
      expect(a.status, path).toBe(status)
      expect(a.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY)
      expect(a.headers['x-content-type-options']).toBe('nosniff')
      expect(a.headers['referrer-policy']).toBe('same-origin')
      expect(a.headers['cache-control']).toBe('no-store')
    }
    expect((await call(fx.url, '/readyz')).json).toEqual({ ready: true, checks: [{ name: 'store', ok: true }, { name: 'channel orders', ok: true }] })
  })

  it('answers 421 to a Host that is not a loopback name (DNS rebinding)', async () => {
    const a = await call(fx.url, '/api/channels', { headers: { host: 'attacker.example:8089' } })
    expect(a.status).toBe(421)
    expect((await call(fx.url, '/api/channels', { headers: { host: `localhost:${fx.admin.port}` } })).status).toBe(200)
  })

  it('lists the channels with status, counters, queue, destinations and credentials', async () => {
    fx.rt.api.behaviour = () => ({ status: 200, hang: true })
    await fx.feed.emit({ n: 1 })
    await until(() => fx.rt.api.received.length >= 1)
    const a = await call(fx.url, '/api/channels')
    expect(a.status).toBe(200)
    const [ch] = a.json.channels
    expect(ch).toMatchObject({ name: 'orders', status: 'running', queueDepth: 1, credentials: {} })
    expect(ch.counters.received).toBe(1)
    expect(ch.oldestQueuedAgeSec).toBeGreaterThanOrEqual(0)
    expect(ch.destinations.map((d: { name: string; breaker: string }) => [d.name, d.breaker])).toEqual([['api', 'closed'], ['audit', 'closed']])
    fx.rt.api.releaseHanging()
  })

  it('refuses a POST without the session\'s CSRF token, and pauses with it', async () => {
    const without = await call(fx.url, '/api/channels/orders/pause', { method: 'POST' })
    expect(without.status).toBe(403)
    expect(without.json.error).toBe('missing CSRF token: get a session (GET /api/session) and send its csrfToken as x-csrf-token')
    const s = await call(fx.url, '/api/session')
    expect(s.json).toMatchObject({ name: 'anonymous', role: 'operator' })
    expect(s.headers['set-cookie']?.[0]).toMatch(/^weir_session=[\w-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=28800$/)
    const cookie = sessionCookie(s)
    const wrong = await call(fx.url, '/api/channels/orders/pause', { method: 'POST', headers: { cookie, 'x-csrf-token': 'guess' } })
    expect([wrong.status, wrong.json.error]).toEqual([403, 'missing or wrong CSRF token'])
    const ok = await call(fx.url, '/api/channels/orders/pause?destination=audit', { method: 'POST', headers: { cookie, 'x-csrf-token': s.json.csrfToken } })
    expect([ok.status, ok.json]).toEqual([200, { channel: 'orders', destination: 'audit', paused: true, by: 'anonymous' }])
    expect(fx.rt.handles[0]!.destinations().find((d) => d.name === 'audit')!.paused).toBe(true)
    const form = await call(fx.url, '/api/channels/orders/resume', { method: 'POST', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ _csrf: s.json.csrfToken, destination: 'audit' }).toString() })
    expect(form.status).toBe(200)
    expect(fx.rt.handles[0]!.destinations().find((d) => d.name === 'audit')!.paused).toBe(false)
  })

  it('refuses a cross-site POST even with a valid session and token', async () => {
    const s = await call(fx.url, '/api/session')
    const headers = { cookie: sessionCookie(s), 'x-csrf-token': s.json.csrfToken }
    const a = await call(fx.url, '/api/channels/orders/pause', { method: 'POST', headers: { ...headers, origin: 'https://evil.example' } })
    expect([a.status, a.json.error]).toEqual([403, 'cross-origin request refused (Origin does not match Host)'])
    const b = await call(fx.url, '/api/channels/orders/pause', { method: 'POST', headers: { ...headers, 'sec-fetch-site': 'cross-site' } })
    expect([b.status, b.json.error]).toEqual([403, 'cross-site request refused (Sec-Fetch-Site: cross-site)'])
    expect(fx.rt.handles[0]!.status()).toBe('running')
  })

  it('answers 404 for an unknown channel or destination and 405 for a wrong method', async () => {
    const s = await call(fx.url, '/api/session')
    const headers = { cookie: sessionCookie(s), 'x-csrf-token': s.json.csrfToken }
    expect((await call(fx.url, '/api/channels/nope/pause', { method: 'POST', headers })).json.error).toBe('no channel "nope"')
    expect((await call(fx.url, '/api/channels/orders/pause?destination=x', { method: 'POST', headers })).json.error).toBe('channel "orders" has no destination "x"')
    const m = await call(fx.url, '/api/channels/orders/pause')
    expect([m.status, m.headers.allow]).toEqual([405, 'POST'])
  })
})

describe('admin server with tokens', () => {
  const leak = leakCollector()
  const fx = useAdminFixture(() => adminConfig(tokensConfig, env), () => leak.log)

  it('answers 401 without a token and 401 with an unknown one', async () => {
    const none = await call(fx.url, '/api/channels')
    expect([none.status, none.json.error, none.headers['www-authenticate']]).toEqual([401, 'authentication required', 'Bearer realm="weir-admin"'])
    expect((await call(fx.url, '/metrics')).status).toBe(401)
    expect((await call(fx.url, '/api/channels', { headers: bearer('not-a-token') })).status).toBe(401)
    expect((await call(fx.url, '/healthz')).status).toBe(200)
  })

  it('lets a viewer read but not pause (403); an operator pauses with the bearer header alone', async () => {
    expect((await call(fx.url, '/api/channels', { headers: bearer(VIEWER_TOKEN) })).status).toBe(200)
    const v = await call(fx.url, '/api/channels/orders/pause', { method: 'POST', headers: bearer(VIEWER_TOKEN) })
    expect([v.status, v.json.error]).toEqual([403, 'requires role "operator"'])
    const o = await call(fx.url, '/api/channels/orders/pause', { method: 'POST', headers: bearer(OPERATOR_TOKEN) })
    expect([o.status, o.json]).toEqual([200, { channel: 'orders', paused: true, by: 'ops' }])
    expect(fx.rt.handles[0]!.status()).toBe('paused')
  })

  it('logs in by form (HttpOnly SameSite=Strict cookie), needs the CSRF token for actions, logs out', async () => {
    const bad = await call(fx.url, '/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=wrong' })
    expect(bad.status).toBe(401)
    const login = await call(fx.url, '/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${OPERATOR_TOKEN}` })
    expect([login.status, login.headers.location]).toEqual([303, '/'])
    const cookie = sessionCookie(login)
    const s = await call(fx.url, '/api/session', { headers: { cookie } })
    expect(s.json).toMatchObject({ name: 'ops', role: 'operator' })
    expect((await call(fx.url, '/api/channels/orders/pause', { method: 'POST', headers: { cookie } })).status).toBe(403)
    expect((await call(fx.url, '/api/channels/orders/pause', { method: 'POST', headers: { cookie, 'x-csrf-token': s.json.csrfToken } })).status).toBe(200)
    expect((await call(fx.url, '/logout', { method: 'POST', headers: { cookie, 'x-csrf-token': s.json.csrfToken } })).status).toBe(200)
    expect((await call(fx.url, '/api/session', { headers: { cookie } })).status).toBe(401)
  })

  it('never shows a token in a response or the log', async () => {
    const texts: string[] = []
    for (const t of [OPERATOR_TOKEN, VIEWER_TOKEN, 'wrong-token-123456']) {
      texts.push((await call(fx.url, '/api/channels', { headers: bearer(t) })).text)
      texts.push((await call(fx.url, '/metrics', { headers: bearer(t) })).text)
      texts.push((await call(fx.url, '/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: t }) })).text)
    }
    expect(texts.filter((t) => t.includes(OPERATOR_TOKEN) || t.includes(VIEWER_TOKEN) || t.includes('wrong-token-123456'))).toEqual([])
    expect(leak.lines.length).toBeGreaterThan(0)
    expect(leak.leaks([OPERATOR_TOKEN, VIEWER_TOKEN, 'wrong-token-123456'])).toEqual([])
  })
})

describe('startAdminServer', () => {
  it('refuses a non-loopback address without authentication (ERR_USAGE)', async () => {
    const err = await startAdminServer({ host: '0.0.0.0', port: 0, config: OPEN_CONFIG, log: silentLogger }).catch((e) => e)
    expect(err.code).toBe('ERR_USAGE')
    expect(err.message).toBe('the admin server on 0.0.0.0 (not loopback) needs authentication: give --admin-config with "tokens" or "jwt", or bind it to 127.0.0.1')
  })
})

describe('escapeHtml', () => {
  it.each([
    ['<script>alert(1)</script>', '&#60;script&#62;alert(1)&#60;/script&#62;'],
    ['" onmouseover=\'x\' `', '&#34; onmouseover=&#39;x&#39; &#96;'],
    ['a & b', 'a &#38; b'],
  ])('%s', (input, out) => expect(escapeHtml(input)).toBe(out))
})
