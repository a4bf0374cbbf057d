import { createServer, type Server } from 'node:http'
import { join, resolve } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
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

describe('pollers in a cluster', () => {
  let cluster: Awaited<ReturnType<typeof fixture.create>> | undefined
  let api: Awaited<ReturnType<typeof itemsApi>> | undefined
  afterEach(async () => {
    await cluster?.close()
    await api?.close()
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
})
