import type { ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { freePort, startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import { runCli } from '../_cli.ts'
import { spawnWeirRun, startApi, tempDir, until } from '../runtime/_helpers.ts'
import { call, sample } from './_admin.ts'

const ADMIN_TOKEN = 'adm-5d1e7c3b9a2f4e6d8c0b'
const children = new Set<ChildProcess>()
let dir: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof startApi>>

beforeAll(async () => { api = await startApi() })
afterAll(async () => { await api.close() })
afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
  await dir?.remove()
})

/** A channel file: the http-listener on `port`, the http destination to the test API. */
async function channelFile(port: number, name = 'load'): Promise<string> {
  dir = await tempDir('weir-admin-')
  const file = join(dir.path, `${name}.json`)
  await writeFile(file, JSON.stringify({
    name,
    source: { type: 'http-listener', config: { host: '127.0.0.1', port } },
    destinations: [{ name: 'sink', type: 'http', config: { url: api.url, timeoutMs: 10_000 }, retry: { maxAttempts: 20, initialDelayMs: 10, maxDelayMs: 100 } }],
    options: { concurrency: 8, queueLimit: 20_000 },
  }))
  return file
}

const readyz = (url: string) => call(url, '/readyz').catch(() => ({ status: 0, json: undefined, text: '', headers: {} }))
const waitReady = (url: string, ready: boolean, run: ReturnType<typeof spawnWeirRun>) => run.until(async () => (await readyz(url)).status === (ready ? 200 : 503))

/** POSTs `count` JSON messages to the listener, `parallel` at a time; resolves with how many were acknowledged (202). */
async function load(port: number, count: number, parallel: number, onAck: (acked: number) => void = () => {}): Promise<number> {
  let next = 0
  let acked = 0
  const worker = async () => {
    while (next < count) {
      const n = next++
      const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n }) })
      await res.arrayBuffer()
      if (res.status !== 202 && res.status !== 200) throw new Error(`message ${n} answered ${res.status}`)
      onAck(++acked)
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  return acked
}

describe('weir run --admin', () => {
  it('serves metrics that agree with the sink and `weir messages` over a load of 10,000 messages; no token in the output', async () => {
    const [port, adminPort] = [await freePort(), await freePort()]
    const file = await channelFile(port)
    const adminConfig = join(dir.path, 'admin.json')
    await writeFile(adminConfig, JSON.stringify({ tokens: [{ name: 'prometheus', role: 'viewer', token: { $env: 'WEIR_ADMIN_TOKEN' } }] }))
    process.env.WEIR_ADMIN_TOKEN = ADMIN_TOKEN
    const dataDir = join(dir.path, 'data')
    const run = spawnWeirRun(file, dataDir, children, ['--admin', `127.0.0.1:${adminPort}`, '--admin-config', adminConfig, '--sync', 'normal'])
    delete process.env.WEIR_ADMIN_TOKEN
    const admin = `http://127.0.0.1:${adminPort}`
    await waitReady(admin, true, run)
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
    const scrape = async () => (await call(admin, '/metrics', { headers: auth })).text
    const before = api.received.length

    let mid: Promise<{ acked: number; text: string }> | undefined
    const acked = await load(port, 10_000, 16, (n) => {
      if (n === 5000) mid = scrape().then((text) => ({ acked: n, text }))
    })
    expect(acked).toBe(10_000)
    const during = await mid!
    const received = sample(during.text, 'weir_messages_received_total', { channel: 'load' })!
    expect(received).toBeGreaterThanOrEqual(during.acked)
    expect(sample(during.text, 'weir_messages_finished_total', { channel: 'load', status: 'delivered' })).toBeLessThanOrEqual(received)

    await until(async () => sample(await scrape(), 'weir_queue_depth', { channel: 'load' }) === 0, 60_000)
    const text = await scrape()
    const sink = new Set(api.received.slice(before).map((r) => r.key)).size
    expect(sink).toBe(10_000)
    expect(sample(text, 'weir_messages_received_total', { channel: 'load' })).toBe(sink)
    expect(sample(text, 'weir_messages_finished_total', { channel: 'load', status: 'delivered' })).toBe(sink)
    expect(sample(text, 'weir_delivery_attempts_total', { channel: 'load', destination: 'sink', outcome: 'delivered' })).toBe(sink)
    expect(sample(text, 'weir_delivery_duration_seconds_count', { channel: 'load', destination: 'sink' })).toBe(sink)
    expect(sample(text, 'weir_store_write_duration_seconds_count', { channel: 'load' })).toBe(sink)
    const listed = await runCli(['messages', 'list', '--data-dir', dataDir, '--channel', 'load', '--status', 'delivered', '--limit', '20000', '--json'])
    expect(listed.code).toBe(0)
    expect(JSON.parse(listed.out)).toHaveLength(sink)

    run.child.kill('SIGTERM')
    expect((await run.exited).code).toBe(0)
    expect(run.output()).not.toContain(ADMIN_TOKEN)
  }, 180_000)

  it('refuses to start on a non-loopback address without authentication (bad usage: exit 2)', async () => {
    const file = await channelFile(await freePort())
    const run = spawnWeirRun(file, join(dir.path, 'data'), children, ['--admin', `0.0.0.0:${await freePort()}`])
    expect((await run.exited).code).toBe(2)
    expect(run.output()).toContain('the admin server on 0.0.0.0 (not loopback) needs authentication: give --admin-config with "tokens" or "jwt", or bind it to 127.0.0.1')
  })

  /** Engine a holding the data directory (ready), and engine b started with --standby waiting for it (not ready). */
  async function engineAndStandby(file: string) {
    const dataDir = join(dir.path, 'data')
    const [adminA, adminB] = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`]
    const a = spawnWeirRun(file, dataDir, children, ['--admin', adminA.slice(7)])
    await waitReady(adminA, true, a)
    const b = spawnWeirRun(file, dataDir, children, ['--admin', adminB.slice(7), '--standby'])
    await waitReady(adminB, false, b)
    return { a, b, adminB }
  }

  it('--standby: /readyz answers 503 while another engine holds the data directory, then 200 once it has it', async () => {
    const port = await freePort()
    const file = await channelFile(port)
    const { a, b, adminB } = await engineAndStandby(file)
    const waiting = await call(adminB, '/readyz')
    expect(waiting.json).toEqual({ ready: false, checks: [{ name: 'store', ok: false, reason: `store locked by another engine (pid ${a.child.pid})` }, { name: 'channels', ok: false, reason: 'channels not started yet' }] })
    expect((await call(adminB, '/healthz')).status).toBe(200)

    a.child.kill('SIGTERM')
    expect((await a.exited).code).toBe(0)
    await waitReady(adminB, true, b)
    expect((await load(port, 20, 4))).toBe(20)
    b.child.kill('SIGTERM')
    expect((await b.exited).code).toBe(0)
  }, 60_000)

  it('--standby: SIGTERM while waiting for the data directory stops the engine with status 0, not by the signal', async () => {
    const file = await channelFile(await freePort())
    const { a, b, adminB } = await engineAndStandby(file)
    b.child.kill('SIGTERM')
    expect(await b.exited, b.output()).toMatchObject({ code: 0, signal: null })
    expect((await readyz(adminB)).status).toBe(0) // its admin server was closed
    a.child.kill('SIGTERM')
    expect((await a.exited).code).toBe(0)
  }, 60_000)
})

describe('weir run --admin with the PostgreSQL store', () => {
  let pg: EmbeddedPostgresServer
  beforeAll(async () => { pg = await startEmbeddedPostgres({ volatile: true }) }, 120_000)
  afterAll(async () => { await pg?.stop() })

  it('/readyz answers 503 with the reason while PostgreSQL is down, and 200 again after', async () => {
    const url = await pg.createDatabase('admin_ready')
    const file = await channelFile(await freePort())
    const admin = `http://127.0.0.1:${await freePort()}`
    const run = spawnWeirRun(file, join(dir.path, 'data'), children, ['--admin', admin.slice(7), '--store', url, '--lease-ms', '3000'])
    await waitReady(admin, true, run)
    await pg.halt()
    await waitReady(admin, false, run)
    const down = await call(admin, '/readyz')
    expect(down.json.checks[0]).toMatchObject({ name: 'store', ok: false })
    expect(down.json.checks[0].reason).toMatch(/^store unreachable: /)
    expect(down.json.checks[0].reason).not.toContain(url)
    await pg.start()
    await waitReady(admin, true, run)
    run.child.kill('SIGTERM')
    await run.exited
  }, 120_000)
})
