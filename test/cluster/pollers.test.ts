import { createServer, type Server } from 'node:http'
import { createServer as createTcpServer, connect, type Socket } from 'node:net'
import { join, resolve } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { underLeadership } from '../../engine/runtime/leader.ts'
import type { Source } from '../../shared/component.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { openPostgresStore } from '../../shared/store/index.ts'
import { until } from '../runtime/_helpers.ts'
import { clusterFixture } from './_cluster.ts'

const LEASE_MS = 3000
const ITEMS = 40
const ITEM_EVERY_MS = 200
const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')

const fixture = clusterFixture()
beforeAll(() => fixture.startServer(), 60_000)
afterAll(() => fixture.stopServer())

/** A paged API whose items appear over time (item k after k × 200 ms), answering `?after=` with the newer ones; it records which engine asked. */
async function itemsApi() {
  const t0 = Date.now()
  const polls: Array<{ engine: string; after: string; at: number }> = []
  const received: Array<{ idem: string; seq: string }> = []
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    if (url.pathname === '/sink') {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
        received.push({ idem: String(req.headers['idempotency-key']), seq: (JSON.parse(Buffer.concat(chunks).toString()) as { seq: string }).seq })
        res.writeHead(200).end('ok')
      })
      return
    }
    const after = url.searchParams.get('after') ?? ''
    polls.push({ engine: String(req.headers['x-engine']), after, at: Date.now() })
    const available = Math.min(ITEMS, Math.floor((Date.now() - t0) / ITEM_EVERY_MS))
    const items = Array.from({ length: available }, (_, k) => ({ seq: String(k + 1).padStart(6, '0') })).filter((i) => i.seq > after)
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(items))
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  return {
    base, polls, received,
    distinct: () => [...new Map(received.map((r) => [r.idem, r.seq])).values()],
    close: () => new Promise<void>((ok) => { server.closeAllConnections(); server.close(() => ok()) }),
  }
}

/** A TCP proxy to PostgreSQL that can black-hole the traffic: a partition that drops packets without a reset, as a dead switch or a changed security group does. */
async function blackholeProxyTo(port: number) {
  let hole = false
  const sockets = new Set<Socket>()
  const server = createTcpServer((client) => {
    const upstream = connect(port, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {}).on('close', () => sockets.delete(s))
    }
    client.on('data', (d: Buffer) => { if (!hole) upstream.write(d) })
    upstream.on('data', (d: Buffer) => { if (!hole) client.write(d) })
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  return {
    port: (server.address() as { port: number }).port,
    blackhole() { hole = true },
    close: () => new Promise<void>((ok) => { for (const s of sockets) s.destroy(); server.close(() => ok()) }),
  }
}

/** A source that only records whether it runs. */
function recordingSource() {
  const state = { running: false }
  const source: Source = { async start() { state.running = true }, async stop() { state.running = false } }
  return { state, source }
}

describe('pollers in a cluster', () => {
  let cluster: Awaited<ReturnType<typeof fixture.create>> | undefined
  let api: Awaited<ReturnType<typeof itemsApi>> | undefined
  afterEach(async () => {
    await cluster?.close()
    await api?.close()
    cluster = api = undefined
  })

  it('a schedule ticks on exactly one engine; when it dies another takes over within the lease, the cursor going on without gaps or repeats', async () => {
    const a = (api = await itemsApi())
    const channel = (portFile: string) => ({
      name: 'poll',
      source: {
        type: 'schedule',
        config: {
          cron: '* * * * * *', url: `${a.base}/items`, headers: { 'x-engine': portFile.replace('.port', '') },
          cursor: { param: 'after', itemPath: 'seq', prefix: '' }, dedupeKey: 'seq',
        },
      },
      destinations: [{ name: 'sink', type: join(fixtures, 'test-post-destination.ts'), config: { url: `${a.base}/sink` } }],
    })
    const c = (cluster = await fixture.create(channel, { leaseMs: LEASE_MS }))
    const engines = [await c.startQuiet(0), await c.startQuiet(1), await c.startQuiet(2)]
    await until(() => a.distinct().length >= 10, 30_000)
    const leaderName = a.polls.at(-1)!.engine
    expect(new Set(a.polls.map((p) => p.engine))).toEqual(new Set([leaderName]))
    const leader = engines[Number(leaderName.replace('engine-', ''))]!
    leader.child.kill('SIGKILL')
    const killedAt = Date.now()
    await until(() => a.polls.some((p) => p.at > killedAt && p.engine !== leaderName), LEASE_MS + 5000)
    const takeoverMs = a.polls.find((p) => p.at > killedAt && p.engine !== leaderName)!.at - killedAt
    await until(() => a.distinct().length >= ITEMS, 30_000)
    const successor = a.polls.find((p) => p.at > killedAt && p.engine !== leaderName)!.engine
    // Exactly one engine polled at a time: the leader, then (after the kill) one successor.
    const sequence = a.polls.map((p) => p.engine).filter((e, i, all) => i === 0 || all[i - 1] !== e)
    expect(sequence).toEqual([leaderName, successor])
    // The cursor went on: every item delivered once, none skipped, none twice.
    expect(a.distinct().sort()).toEqual(Array.from({ length: ITEMS }, (_, k) => String(k + 1).padStart(6, '0')))
    const cursors = a.polls.map((p) => p.after).filter((x) => x !== '')
    expect([...cursors].sort()).toEqual(cursors)
    console.log(`poller takeover: ${a.polls.length} polls, leader ${leaderName} killed, ${successor} polled ${takeoverMs} ms later (lease ${LEASE_MS} ms)`)
  }, 120_000)

  it('an engine partitioned from PostgreSQL (packets dropped, no reset) stops its poller before another engine takes the leadership', async () => {
    const LEASE = 900
    const url = await fixture.server.createDatabase('lead_partition')
    const proxy = await blackholeProxyTo(fixture.server.port)
    const a = await openPostgresStore({ url: url.replace(`:${fixture.server.port}/`, `:${proxy.port}/`), leaseMs: LEASE })
    const b = await openPostgresStore({ url, leaseMs: LEASE })
    const A = recordingSource()
    const B = recordingSource()
    const emit = async () => ({ id: 'x', duplicate: false })
    const onA = underLeadership(A.source, { leadership: a.leadership!, name: 'file-poller', log: silentLogger, now: Date.now })
    const onB = underLeadership(B.source, { leadership: b.leadership!, name: 'file-poller', log: silentLogger, now: Date.now })
    try {
      await onA.start(emit)
      await onB.start(emit)
      expect([A.state.running, B.state.running]).toEqual([true, false])
      proxy.blackhole()
      // A's renewals now hang (no answer, no error); B takes the leadership once A's lease has run out.
      const both: number[] = []
      const t0 = Date.now()
      while (Date.now() - t0 < 6 * LEASE) {
        await new Promise((ok) => setTimeout(ok, 50))
        if (A.state.running && B.state.running) both.push(Date.now() - t0)
      }
      expect(B.state.running).toBe(true)
      expect(both).toEqual([])
    } finally {
      // Closing the proxy ends A's hung queries: its stop() and close() can finish.
      await proxy.close()
      await Promise.resolve(onB.stop()).catch(() => {})
      await Promise.resolve(onA.stop()).catch(() => {})
      await a.close().catch(() => {})
      await b.close()
    }
  }, 60_000)
})
