import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadAdminConfig, OPEN_CONFIG, type AdminConfig } from '../../engine/admin/config.ts'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import { main } from '../../engine/cli.ts'
import { createLogger } from '../../shared/log/index.ts'
import { commandIO } from '../alerts/_alerts.ts'
import { tempDir } from '../runtime/_helpers.ts'
import type { Answer } from './_admin.ts'

// Finding: the admin server spoke plain HTTP only and its session cookie had no `Secure` flag, so
// off loopback admin tokens and cookies travelled in clear. The admin config now takes the
// http-listener's `tls` option (same schema, same checks); with it the server speaks HTTPS, the
// cookie is `Secure` and HSTS is sent. Bound off loopback without it, or open to every local user
// (no --admin-config), the server says so at start.

const FIXTURES = join(import.meta.dirname, '../oauth/fixtures')
const OPS_TOKEN = 'adm-tls-7c1e9b3d5f2a4c6e8b0d'

let dir: Awaited<ReturnType<typeof tempDir>>
let ca: Buffer
const servers: AdminServer[] = []
const lines: string[] = []
const log = createLogger({ pretty: false, level: 'debug', destination: new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb() } }) })

beforeEach(async () => {
  dir = await tempDir('weir-admin-tls-')
  await mkdir(join(dir.path, 'tls'))
  for (const f of ['server.pem', 'server.key', 'ca.pem', 'ca.key', 'client.pem', 'client.key']) await copyFile(join(FIXTURES, f), join(dir.path, 'tls', f))
  ca = await readFile(join(FIXTURES, 'ca.pem'))
  lines.length = 0
})
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
  await dir.remove()
})

/** Writes `raw` as admin.json in the test directory and loads it as `--admin-config` would. */
async function adminFile(raw: unknown): Promise<AdminConfig> {
  const file = join(dir.path, 'admin.json')
  await writeFile(file, JSON.stringify(raw))
  return (await loadAdminConfig(file, { OPS_TOKEN })).config
}

const tokens = [{ name: 'ops', role: 'operator', token: { $env: 'OPS_TOKEN' } }]
const tls = { certFile: 'tls/server.pem', key: { $file: 'tls/server.key' } }

async function start(config: AdminConfig, host = '127.0.0.1'): Promise<AdminServer> {
  const s = await startAdminServer({ host, port: 0, config, log })
  servers.push(s)
  return s
}

/** One HTTPS request trusting the test CA only (no certificate check is turned off). */
function callHttps(base: string, path: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(path, base), { method: o.method ?? 'GET', headers: o.headers ?? {}, ca }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (text += d))
      res.on('end', () => {
        let json: unknown
        try { json = JSON.parse(text) } catch { json = undefined }
        resolve({ status: res.statusCode!, headers: res.headers, text, json })
      })
    })
    req.on('error', reject)
    req.end(o.body)
  })
}

const logged = () => lines.map((l) => JSON.parse(l) as { level: number; msg: string })
const warnings = () => logged().filter((l) => l.level === 40).map((l) => l.msg)

describe('admin server with "tls" in its config', () => {
  it('speaks HTTPS: sign-in over TLS sets a Secure cookie, HSTS is sent, plain HTTP gets no answer', async () => {
    const admin = await start(await adminFile({ tokens, tls }))
    expect(admin.url).toBe(`https://127.0.0.1:${admin.port}`)
    expect((await callHttps(admin.url, '/healthz')).json).toEqual({ alive: true })

    const login = await callHttps(admin.url, '/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: OPS_TOKEN }) })
    expect(login.status).toBe(200)
    const cookie = String(login.headers['set-cookie']?.[0])
    expect(cookie).toMatch(/^weir_session=[\w-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=28800; Secure$/)
    expect(login.headers['strict-transport-security']).toBe('max-age=31536000')

    const session = await callHttps(admin.url, '/api/session', { headers: { cookie: cookie.split(';')[0]! } })
    expect(session.json).toMatchObject({ name: 'ops', role: 'operator' })
    const logout = await callHttps(admin.url, '/logout', { method: 'POST', headers: { cookie: cookie.split(';')[0]!, 'x-csrf-token': session.json.csrfToken } })
    expect(String(logout.headers['set-cookie']?.[0])).toBe('weir_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure')

    const plain = await new Promise<string>((resolve) => {
      const req = httpRequest(`http://127.0.0.1:${admin.port}/healthz`, (res) => resolve(`answered ${res.statusCode}`))
      req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
      req.end()
    })
    expect(plain).not.toMatch(/^answered 2/)
    expect(lines.join('')).not.toContain(OPS_TOKEN)
  })

  it('without "tls" the cookie has no Secure flag and no HSTS is sent (plain HTTP on loopback)', async () => {
    const admin = await start(await adminFile({ tokens }))
    expect(admin.url).toBe(`http://127.0.0.1:${admin.port}`)
    const login = await new Promise<Answer>((resolve, reject) => {
      const req = httpRequest(new URL('/login', admin.url), { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: '', json: undefined }))
      })
      req.on('error', reject)
      req.end(JSON.stringify({ token: OPS_TOKEN }))
    })
    expect(login.status).toBe(200)
    expect(String(login.headers['set-cookie']?.[0])).not.toContain('Secure')
    expect(login.headers['strict-transport-security']).toBeUndefined()
  })

  it('with caFile and requireClientCert, a client without a certificate from that CA cannot connect', async () => {
    const admin = await start(await adminFile({ tokens, tls: { ...tls, caFile: 'tls/ca.pem', requireClientCert: true } }))
    const refused = await callHttps(admin.url, '/healthz').then(() => 'answered', (e: NodeJS.ErrnoException) => e.code ?? e.message)
    expect(refused).not.toBe('answered')
    const [cert, key] = await Promise.all([readFile(join(FIXTURES, 'client.pem')), readFile(join(FIXTURES, 'client.key'))])
    const withCert = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(new URL('/healthz', admin.url), { ca, cert, key }, (res) => { res.resume(); resolve(res.statusCode!) })
      req.on('error', reject)
      req.end()
    })
    expect(withCert).toBe(200)
  })
})

describe('admin config "tls" problems', () => {
  /** `weir run` with admin.json = `raw`: its exit status and what it printed. */
  async function runWith(raw: unknown): Promise<{ status: number; err: string; out: string }> {
    await writeFile(join(dir.path, 'ch.json'), JSON.stringify({
      name: 'ch', source: { type: 'http-listener', config: { host: '127.0.0.1', port: 0 } },
      destinations: [{ name: 'sink', type: 'http', config: { url: 'http://127.0.0.1:9/' } }],
    }))
    await writeFile(join(dir.path, 'admin.json'), JSON.stringify(raw))
    const t = commandIO(dir.path, { OPS_TOKEN })
    const deadline = setTimeout(() => process.emit('SIGTERM', 'SIGTERM'), 10_000)
    const status = await main(['run', 'ch.json', '--admin', '127.0.0.1:0', '--admin-config', 'admin.json', '--data-dir', 'data'], t.io).finally(() => clearTimeout(deadline))
    return { status, err: t.err.join('\n'), out: t.out.join('\n') }
  }

  it.each([
    ['a missing key file', { ...tls, key: { $file: 'tls/missing.key' } }, '/tls/key: secret file "tls/missing.key" not found'],
    ['a missing certificate file', { ...tls, certFile: 'tls/missing.pem' }, '/tls/certFile: cannot read TLS file'],
    ['a key that is not the certificate\'s (same curve)', { ...tls, key: { $file: 'tls/ca.key' } }, '/tls/key: the private key does not match the certificate in "tls/server.pem"'],
    ['a key of another type than the certificate\'s', { ...tls, key: { $file: 'tls/client.key' } }, '/tls/key: the private key does not match the certificate in "tls/server.pem"'],
    ['a key that is not a PEM private key', { ...tls, key: { $file: 'tls/server.pem' } }, '/tls/key: not a PEM private key'],
    ['a certificate file that holds no certificate', { ...tls, certFile: 'tls/server.key' }, '/tls/certFile: "tls/server.key" holds no PEM certificate'],
    ['client certificates required without caFile', { ...tls, requireClientCert: true }, '/tls/requireClientCert: requires "caFile"'],
  ])('%s: exit 1 naming admin.json#<pointer>, no key material printed', async (_what, tlsOption, expected) => {
    const r = await runWith({ tokens, tls: tlsOption })
    expect(r.status).toBe(1)
    expect(r.err).toContain(`${join(dir.path, 'admin.json')}#${expected}`)
    expect(r.out).not.toContain('admin server listening')
    const keys = await Promise.all(['server.key', 'ca.key', 'client.key'].map((f) => readFile(join(FIXTURES, f), 'utf8')))
    for (const k of keys) expect(r.err + r.out).not.toContain(k.split('\n')[1]!)
  })
})

describe('start-up warnings', () => {
  const OPEN = (addr: string) => `admin server open to every user of this machine (no --admin-config): anyone who can reach ${addr} reads messages and acts as operator; give --admin-config with tokens for production`

  it('an open server (no --admin-config) warns that every local user is an operator', async () => {
    const admin = await start(OPEN_CONFIG)
    expect(warnings()).toEqual([OPEN(`127.0.0.1:${admin.port}`)])
  })

  it('a server with tokens on loopback does not warn', async () => {
    await start(await adminFile({ tokens }))
    expect(warnings()).toEqual([])
  })

  it('off loopback without "tls" it warns that tokens and cookies travel in clear; with "tls" it does not', async () => {
    const plain = await start(await adminFile({ tokens }), '0.0.0.0')
    expect(warnings()).toEqual([`admin server on 0.0.0.0:${plain.port} speaks plain HTTP: admin tokens and session cookies travel in clear; add "tls" to --admin-config, or put a TLS-terminating proxy in front of it and set "publicUrl" to its https URL`])
    lines.length = 0
    await start(await adminFile({ tokens, tls }), '0.0.0.0')
    expect(warnings()).toEqual([])
  })
})
