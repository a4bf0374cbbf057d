// Behind a reverse proxy that terminates TLS the admin server speaks plain HTTP: `publicUrl` in the
// admin config says where browsers reach it. With an https one the session cookie is `Secure`, HSTS
// is sent, the proxy's Host and Origin are accepted and the "plain HTTP" start-up warning is not
// printed. X-Forwarded-* headers are never trusted.
import { Writable } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseAdminConfig, type AdminConfig } from '../../engine/admin/config.ts'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import { createLogger } from '../../shared/log/index.ts'
import { adminConfig, call } from './_admin.ts'

const OPS_TOKEN = 'adm-proxy-2b8d4f6a0c1e3579'
const tokens = [{ name: 'ops', role: 'operator', token: { $env: 'OPS_TOKEN' } }]
const configWith = (extra: Record<string, unknown>) => adminConfig({ tokens, ...extra }, { OPS_TOKEN })

const servers: AdminServer[] = []
const lines: string[] = []
const log = createLogger({ pretty: false, level: 'debug', destination: new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb() } }) })
const warnings = () => lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40).map((l) => l.msg)
beforeEach(() => { lines.length = 0 })
afterEach(async () => { for (const s of servers.splice(0)) await s.close() })

async function start(config: AdminConfig, host = '127.0.0.1'): Promise<AdminServer> {
  const s = await startAdminServer({ host, port: 0, config, log })
  servers.push(s)
  return s
}

const login = (admin: AdminServer, headers: Record<string, string> = {}) =>
  call(admin.url, '/login', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ token: OPS_TOKEN }) })

describe('admin config "publicUrl"', () => {
  it.each([
    ['weir.example.org', '/publicUrl: must be an absolute http or https URL (e.g. "https://weir.example.org/")'],
    ['ftp://weir.example.org/', '/publicUrl: must be an absolute http or https URL (e.g. "https://weir.example.org/")'],
    ['https://admin:pw@weir.example.org/', '/publicUrl: must not hold a user name or password'],
    ['https://weir.example.org/?a=1', '/publicUrl: must not have a query or fragment'],
    [42, '/publicUrl: must be string'],
  ])('%j → %s', (publicUrl, problem) => {
    const err = (() => { try { parseAdminConfig({ tokens, publicUrl }, '/etc/weir/admin.json', { OPS_TOKEN }) } catch (e) { return e } })() as { code: string; problems: Array<{ pointer: string; message: string }> }
    expect(err?.code).toBe('ERR_CONFIG_INVALID')
    expect(err.problems.map((p) => `${p.pointer}: ${p.message}`)).toContain(problem)
  })

  it('keeps a valid one', () => {
    expect(configWith({ publicUrl: 'https://Weir.Example.org/admin/' }).publicUrl).toBe('https://weir.example.org/admin/')
    expect(configWith({}).publicUrl).toBeUndefined()
  })
})

describe('admin server behind a TLS-terminating proxy', () => {
  it('with an https publicUrl: Secure cookie, HSTS, and no "plain HTTP" warning off loopback', async () => {
    const admin = await start(configWith({ publicUrl: 'https://weir.example.org/' }), '0.0.0.0')
    expect(warnings()).toEqual([])
    const answer = await login(admin)
    expect(answer.status).toBe(200)
    expect(String(answer.headers['set-cookie']?.[0])).toMatch(/^weir_session=[\w-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=28800; Secure$/)
    expect(answer.headers['strict-transport-security']).toBe('max-age=31536000')
    expect(lines.join('')).toContain('"publicUrl":"https://weir.example.org/"')
  })

  it('with an http publicUrl or none: no Secure cookie, no HSTS, and the warning off loopback', async () => {
    for (const extra of [{ publicUrl: 'http://weir.example.org/' }, {}]) {
      lines.length = 0
      const admin = await start(configWith(extra), '0.0.0.0')
      expect(warnings()).toEqual([`admin server on 0.0.0.0:${admin.port} speaks plain HTTP: admin tokens and session cookies travel in clear; add "tls" to --admin-config, or put a TLS-terminating proxy in front of it and set "publicUrl" to its https URL`])
      const answer = await login(admin)
      expect(String(answer.headers['set-cookie']?.[0])).not.toContain('Secure')
      expect(answer.headers['strict-transport-security']).toBeUndefined()
    }
  })

  it('does not trust X-Forwarded-Proto or X-Forwarded-Host without publicUrl', async () => {
    const admin = await start(configWith({}))
    const answer = await login(admin, { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'weir.example.org', 'x-forwarded-for': '203.0.113.9' })
    expect(answer.status).toBe(200)
    expect(String(answer.headers['set-cookie']?.[0])).not.toContain('Secure')
    expect(answer.headers['strict-transport-security']).toBeUndefined()
    const refused = await login(admin, { origin: 'https://weir.example.org', 'x-forwarded-host': 'weir.example.org' })
    expect(refused.status).toBe(403)
  })

  it('answers to the publicUrl\'s host and accepts its origin when the proxy passes its own Host', async () => {
    const admin = await start(configWith({ publicUrl: 'https://weir.example.org/' }))
    expect((await call(admin.url, '/healthz', { headers: { host: 'weir.example.org' } })).status).toBe(200)
    expect((await call(admin.url, '/healthz', { headers: { host: 'other.example.org' } })).status).toBe(421)
    expect((await login(admin, { origin: 'https://weir.example.org' })).status).toBe(200)
    expect((await login(admin, { origin: 'http://weir.example.org' })).status).toBe(403)
    expect((await login(admin, { origin: 'https://evil.example.org' })).status).toBe(403)
  })
})
