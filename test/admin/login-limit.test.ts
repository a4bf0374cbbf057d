import { Writable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { startAdminServer, type AdminServer, type AdminServerOptions } from '../../engine/admin/index.ts'
import { clientKey } from '../../engine/admin/login-limit.ts'
import { createLogger } from '../../shared/log/index.ts'
import { adminConfig, bearer, call, sessionCookie, type Answer } from './_admin.ts'

const OPS_TOKEN = 'ops-7e1c5a9f3b0d42e8c6a2'
const guess = (n: number) => `guess-${n}-4f8a2c6e0b9d1735`
const config = adminConfig({ tokens: [{ name: 'ops', role: 'operator', token: { $env: 'OPS' } }] }, { OPS: OPS_TOKEN })

let clock = Date.UTC(2026, 5, 1)
const lines: string[] = []
const log = createLogger({ pretty: false, level: 'debug', destination: new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb() } }) })
const running: AdminServer[] = []
afterEach(async () => {
  for (const a of running.splice(0)) await a.close()
  lines.length = 0
})

/** An admin server with one operator token, on a clock the test moves. */
async function start(extra: Partial<AdminServerOptions> = {}): Promise<AdminServer> {
  const admin = await startAdminServer({ host: '127.0.0.1', port: 0, config, log, now: () => clock, ...extra })
  running.push(admin)
  return admin
}

const login = (admin: AdminServer, token: string, from: string) =>
  call(admin.url, '/login', { method: 'POST', from, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
const retryAfter = (a: Answer) => Number(a.headers['retry-after'])

/** Every token the test sent must be absent from the responses and the log. */
function expectNoTokenIn(texts: string[], tokens: string[]) {
  for (const text of [...texts, ...lines]) for (const t of tokens) expect(text.includes(t), 'a token leaked').toBe(false)
}

describe('admin sign-in rate limit', () => {
  it('locks an address out after 5 failed sign-ins (429 with Retry-After), growing to at most 15 minutes; other addresses still sign in', async () => {
    const admin = await start()
    const texts: string[] = []
    const sent: string[] = [OPS_TOKEN]
    let n = 0
    const fail = async (from = '127.0.0.1') => {
      sent.push(guess(++n))
      const a = await login(admin, guess(n), from)
      texts.push(a.text)
      return a
    }
    for (let i = 0; i < 5; i++) expect((await fail()).status).toBe(401)
    // Locked: even the right token is not checked, by the form or the Authorization header.
    const locked = await login(admin, OPS_TOKEN, '127.0.0.1')
    texts.push(locked.text)
    expect(locked.status).toBe(429)
    const first = retryAfter(locked)
    expect(first).toBeGreaterThanOrEqual(1)
    expect((await call(admin.url, '/api/channels', { from: '127.0.0.1', headers: bearer(OPS_TOKEN) })).status).toBe(429)

    // Another client address signs in meanwhile, and its session works.
    const other = await login(admin, OPS_TOKEN, '127.0.0.2')
    expect(other.status).toBe(200)
    expect((await call(admin.url, '/api/session', { from: '127.0.0.2', headers: { cookie: sessionCookie(other) } })).json.name).toBe('ops')

    // Each failure after a lockout locks the address for longer, up to a limit.
    const waits = [first]
    for (let i = 0; i < 12; i++) {
      clock += waits.at(-1)! * 1000
      expect((await fail()).status).toBe(401)
      const a = await fail()
      expect(a.status).toBe(429)
      waits.push(retryAfter(a))
    }
    expect(waits[1]).toBeGreaterThan(waits[0]!)
    for (let i = 1; i < waits.length; i++) expect(waits[i]).toBeGreaterThanOrEqual(waits[i - 1]!)
    expect(Math.max(...waits)).toBe(900)

    // Once the lockout is over, the right token signs in and the address starts afresh.
    clock += 900_000
    expect((await login(admin, OPS_TOKEN, '127.0.0.1')).status).toBe(200)
    for (let i = 0; i < 4; i++) expect((await fail()).status).toBe(401)
    expect((await login(admin, OPS_TOKEN, '127.0.0.1')).status).toBe(200)

    // Failures are logged with the address, never with a token.
    const failures = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'admin token refused')
    expect(failures.length).toBeGreaterThanOrEqual(5)
    expect(failures[0]).toMatchObject({ address: '127.0.0.1', via: 'login', failures: 1 })
    expect(failures[4]).toMatchObject({ address: '127.0.0.1', failures: 5, lockedForSec: first })
    expectNoTokenIn(texts, sent)
  })

  it('counts wrong bearer tokens the same way, but not requests without a token', async () => {
    const admin = await start()
    for (let i = 0; i < 5; i++) expect((await call(admin.url, '/metrics', { from: '127.0.0.3', headers: bearer(guess(i)) })).status).toBe(401)
    const locked = await call(admin.url, '/metrics', { from: '127.0.0.3', headers: bearer(OPS_TOKEN) })
    expect(locked.status).toBe(429)
    expect(retryAfter(locked)).toBeGreaterThanOrEqual(1)
    expect((await login(admin, OPS_TOKEN, '127.0.0.3')).status).toBe(429)

    for (let i = 0; i < 10; i++) expect((await call(admin.url, '/metrics', { from: '127.0.0.4' })).status).toBe(401)
    expect((await call(admin.url, '/metrics', { from: '127.0.0.4', headers: bearer(OPS_TOKEN) })).status).toBe(200)
    expect(lines.some((l) => l.includes(OPS_TOKEN) || l.includes('guess-'))).toBe(false)
  })

  it('remembers a bounded number of addresses, forgetting the one that failed longest ago', async () => {
    const admin = await start({ loginLimit: { maxTracked: 8 } })
    for (let i = 10; i < 40; i++) expect((await login(admin, guess(i), `127.0.0.${i}`)).status).toBe(401)
    expect(admin.auth.tracked()).toBe(8)
    // The latest addresses are still counted: four more failures lock 127.0.0.39 out.
    for (let i = 0; i < 4; i++) expect((await login(admin, guess(i), '127.0.0.39')).status).toBe(401)
    expect((await login(admin, OPS_TOKEN, '127.0.0.39')).status).toBe(429)
    expect(admin.auth.tracked()).toBe(8)
  })

  it('counts an IPv6 client by its /64 network and an IPv4-mapped address as IPv4', () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64')
    expect(clientKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64')
    expect(clientKey('2001:db8::7')).toBe('2001:db8:0:0::/64')
    expect(clientKey('::1')).toBe('0:0:0:0::/64')
    expect(clientKey('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(clientKey('192.0.2.7')).toBe('192.0.2.7')
  })
})
