import { createServer as createTcpServer, connect, type Socket } from 'node:net'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { until } from '../runtime/_helpers.ts'
import { clusterFixture, testChannel } from './_cluster.ts'

const LEASE_MS = 3000
/** How long PostgreSQL is down; the acceptance value, WEIR_OUTAGE_MS for a quicker run. */
const OUTAGE_MS = Number(process.env.WEIR_OUTAGE_MS ?? 20_000)

const fixture = clusterFixture()
beforeAll(() => fixture.startServer(), 60_000)
afterAll(() => fixture.stopServer())

/** A loopback sink recording `{ n }` bodies by Idempotency-Key; `hold` keeps chosen first attempts waiting until released. */
async function sink(hold: (n: number, first: boolean) => boolean = () => false) {
  const received: Array<{ idem: string; n: number }> = []
  const held: ServerResponse[] = []
  const seen = new Set<string>()
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
      const idem = String(req.headers['idempotency-key'])
      const { n } = JSON.parse(Buffer.concat(chunks).toString()) as { n: number }
      received.push({ idem, n })
      const first = !seen.has(idem)
      seen.add(idem)
      if (hold(n, first)) held.push(res)
      else res.writeHead(200).end('ok')
    })
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/in`,
    received, held,
    distinct: () => new Set(received.map((r) => r.n)),
    release() { for (const r of held.splice(0)) r.writeHead(200).end('ok') },
    close: () => new Promise<void>((ok) => { server.closeAllConnections(); server.close(() => ok()) }),
  }
}

/** A TCP proxy to PostgreSQL that can cut an engine off (every connection reset, new ones refused) and let it back. */
async function proxyTo(port: number) {
  let cut = false
  const sockets = new Set<Socket>()
  const server = createTcpServer((client) => {
    if (cut) return client.destroy()
    const upstream = connect(port, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {}).on('close', () => sockets.delete(s))
    }
    client.pipe(upstream).pipe(client)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  return {
    port: (server.address() as { port: number }).port,
    cut() { cut = true; for (const s of sockets) s.destroy() },
    restore() { cut = false },
    close: () => new Promise<void>((ok) => { cut = true; for (const s of sockets) s.destroy(); server.close(() => ok()) }),
  }
}

/** Posts `{ n }` to the engines' listeners in turn until one answers 202; counts 503 answers and whether they carried Retry-After. */
function sender(ports: () => number[]) {
  const stats = { acked: 0, unavailable: 0, retryAfter: 0 }
  const send = async (n: number) => {
    for (let i = 0; i < 5000; i++) {
      const list = ports()
      const port = list[(n + i) % list.length]!
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dedupe-key': `m${n}` }, body: JSON.stringify({ n }) })
        await res.arrayBuffer()
        if (res.status === 202) {
          stats.acked++
          return
        }
        if (res.status === 503) {
          stats.unavailable++
          if (res.headers.get('retry-after')) stats.retryAfter++
        }
      } catch { /* refused: try the next listener */ }
      await new Promise((ok) => setTimeout(ok, 50))
    }
    throw new Error(`message ${n} was never acknowledged`)
  }
  return { stats, send }
}

describe('a cluster through PostgreSQL failures', () => {
  let cluster: Awaited<ReturnType<typeof fixture.create>> | undefined
  const closers: Array<() => Promise<void>> = []
  afterEach(async () => {
    await cluster?.close()
    for (const c of closers.splice(0)) await c()
  })

  /** A cluster delivering to `s`, and its engine 0 connected to PostgreSQL through a proxy that can cut it off. */
  async function engineBehindProxy(s: Awaited<ReturnType<typeof sink>>, concurrency: number) {
    closers.push(s.close)
    const c = (cluster = await fixture.create((portFile) => testChannel(s.url, { concurrency }, portFile), { leaseMs: LEASE_MS }))
    const proxy = await proxyTo(fixture.server.port)
    closers.push(proxy.close)
    const a = await c.start(0, c.url.replace(`:${fixture.server.port}/`, `:${proxy.port}/`))
    return { c, proxy, a, aId: await c.engineId(a) }
  }

  it(`PostgreSQL stopped for ${OUTAGE_MS / 1000} s mid-stream: the listeners answer 503 with Retry-After, the engines reconnect by themselves, nothing acknowledged is lost`, async () => {
    const s = await sink()
    closers.push(s.close)
    const c = (cluster = await fixture.create((portFile) => testChannel(s.url, { concurrency: 8 }, portFile), { leaseMs: LEASE_MS }))
    const engines = [await c.start(0), await c.start(1)]
    const { stats, send } = sender(() => engines.map((e) => e.port))
    // A paced stream (8 senders) that goes on through the outage until two seconds after it.
    let next = 0
    let done = false
    const senders = Promise.all(Array.from({ length: 8 }, async () => {
      while (!done) {
        await send(next++)
        await new Promise((ok) => setTimeout(ok, 40))
      }
    }))
    await until(() => stats.acked >= 150, 60_000)
    await fixture.server.halt()
    const stoppedAt = Date.now()
    await until(() => stats.unavailable > 0, 20_000)
    await new Promise((ok) => setTimeout(ok, Math.max(0, OUTAGE_MS - (Date.now() - stoppedAt))))
    await fixture.server.start()
    await new Promise((ok) => setTimeout(ok, 2000))
    done = true
    await senders
    const TOTAL = next
    await until(() => s.distinct().size >= TOTAL, 90_000)
    expect(stats.acked).toBe(TOTAL)
    expect(s.distinct().size).toBe(TOTAL)
    expect(stats.unavailable).toBeGreaterThan(0)
    expect(stats.retryAfter).toBe(stats.unavailable)
    // Both engines came back by themselves and still work the queue.
    await until(async () => (await c.sql`SELECT 1 FROM weir_messages WHERE status <> 'delivered' LIMIT 1`).length === 0, 30_000)
    for (const e of engines) if (e.child.exitCode !== null) console.log(`ENGINE ${e.index} EXITED ${e.child.exitCode}:\n${e.output().split('\n').slice(-6).map((l) => l.slice(0, 400)).join('\n')}`)
    for (const e of engines) expect(e.child.exitCode).toBeNull()
    console.log(`PostgreSQL outage: ${OUTAGE_MS} ms, ${stats.unavailable} sends answered 503 (all with Retry-After), ${TOTAL} acknowledged and delivered, ${s.received.length - TOTAL} redeliveries`)
  }, 240_000)

  it('a stop while PostgreSQL is unreachable exits 1 and says the engine could not leave: its row stays for a peer to sweep', async () => {
    const { c, proxy, a, aId } = await engineBehindProxy(await sink(), 2)
    proxy.cut()
    a.child.kill('SIGTERM')
    const exit = await a.exited
    expect(exit.code).toBe(1)
    expect(a.output()).toContain('could not leave the cluster')
    expect(a.output()).not.toContain('weir stopped; message store closed')
    expect(await c.sql`SELECT id FROM weir_engines`).toEqual([{ id: aId }])
  }, 60_000)

  it('a partitioned engine (its connection cut, restored after its lease expired) does not complete the messages another engine took over', async () => {
    let holding = true
    const s = await sink((_, first) => holding && first)
    const { c, proxy, a, aId } = await engineBehindProxy(s, 8)
    const { send } = sender(() => [a.port])
    await Promise.all(Array.from({ length: 5 }, (_, n) => send(n)))
    // Engine A delivers all five; the sink holds its requests.
    await until(() => s.held.length === 5, 20_000)
    expect((await c.sql`SELECT count(*)::int AS n FROM weir_messages WHERE owner = ${aId!}`)[0]!.n).toBe(5)
    proxy.cut()
    holding = false
    const b = await c.start(1)
    // B sweeps A once its lease has run out, and delivers the five itself.
    await until(async () => (await c.sql`SELECT 1 FROM weir_messages WHERE status <> 'delivered'`).length === 0, LEASE_MS * 3 + 10_000)
    const bId = await c.engineId(b)
    expect(await c.sql`SELECT id FROM weir_engines`).toEqual([{ id: bId }])
    // A comes back after its lease expired, and only now do its deliveries succeed.
    proxy.restore()
    s.release()
    await until(() => a.output().includes('rejoined'), 20_000)
    const attempts = await c.sql<{ n: number }>`SELECT count(*)::int AS n FROM weir_attempts GROUP BY message_id`
    expect(attempts.map((r) => r.n)).toEqual([1, 1, 1, 1, 1])
    expect(await c.sql`SELECT DISTINCT status FROM weir_messages`).toEqual([{ status: 'delivered' }])
    expect((await c.sql`SELECT count(*)::int AS n FROM weir_deliveries WHERE attempts <> 1`)[0]!.n).toBe(0)
  }, 120_000)
})
