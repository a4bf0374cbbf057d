import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startChannel } from '../../engine/runtime/index.ts'
import { readPauses } from '../../engine/runtime/pause.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { openPostgresStore } from '../../shared/store/index.ts'
import { channel, destination, feedSource, startApi, tempDir, until } from '../runtime/_helpers.ts'
import { orderedSink, orderViolation, sendKeyed } from '../runtime/_order.ts'
import { clusterFixture, testChannel, type Engine } from './_cluster.ts'

/** The acceptance size; WEIR_CLUSTER_N makes a quicker run. */
const TOTAL = Number(process.env.WEIR_CLUSTER_N ?? 10_000)
const LEASE_MS = 3000
const CONCURRENCY = 16

const fixture = clusterFixture()
beforeAll(() => fixture.startServer(), 60_000)
afterAll(() => fixture.stopServer())

describe('a cluster of three engines on one PostgreSQL', () => {
  let cluster: Awaited<ReturnType<typeof fixture.create>> | undefined
  let sink: Awaited<ReturnType<typeof orderedSink>> | undefined
  afterEach(async () => {
    await cluster?.close()
    await sink?.close()
  })

  it(`${TOTAL} messages over three listeners, one engine SIGKILLed mid-stream: every acknowledged message delivered, every key in order, claims taken over within the lease + 5 s`, async () => {
    const seed = Number(process.env.WEIR_ORDER_SEED ?? Date.now() % 1_000_000)
    sink = await orderedSink(0.05, seed)
    const s = sink
    const c = (cluster = await fixture.create((portFile) => testChannel(s.url, { concurrency: CONCURRENCY, orderBy: 'key', queueLimit: 50_000 }, portFile), { leaseMs: LEASE_MS }))
    const engines: Engine[] = []
    for (let i = 0; i < 3; i++) engines.push(await c.start(i))
    const victim = engines[1]!
    const victimId = await c.engineId(victim)
    expect(victimId).toBeDefined()
    let acked = 0
    let n = 0
    let killed = false
    // Round robin over the listeners; a send to the killed engine goes to the next one. The dedupe
    // key makes a resend of a message stored before its answer was lost a duplicate, not a second message.
    const send = async (body: { key: string; n: number }) => {
      let target = n++ % 3
      for (let i = 0; i < 2000; i++) {
        const e = engines[target]!
        try {
          const res = await fetch(`http://127.0.0.1:${e.port}/`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dedupe-key': `${body.key}:${body.n}` }, body: JSON.stringify(body) })
          await res.arrayBuffer()
          if (res.status === 202) {
            acked++
            return
          }
        } catch {
          target = (target + 1) % 3
        }
        await new Promise((ok) => setTimeout(ok, 20))
      }
      throw new Error('a message was never acknowledged')
    }
    const sending = sendKeyed(TOTAL, send)
    await until(() => acked >= TOTAL * 0.4, 180_000)
    victim.child.kill('SIGKILL')
    const killedAt = Date.now()
    expect((await victim.exited).signal).toBe('SIGKILL')
    // What the dead engine had in flight: its claims, frozen until its lease runs out.
    const claimed = (await c.sql<{ n: number }>`SELECT count(*)::int AS n FROM weir_messages WHERE owner = ${victimId!}`)[0]!.n
    killed = true
    const deliveredAtKill = s.distinct().length
    await until(async () => (await c.sql`SELECT 1 FROM weir_engines WHERE id = ${victimId!}`).length === 0, LEASE_MS + 5000)
    const takeoverMs = Date.now() - killedAt
    await sending
    await until(() => s.distinct().length >= TOTAL, 240_000)
    const distinct = s.distinct()
    expect({ seed, violation: orderViolation(distinct) }).toEqual({ seed, violation: undefined })
    expect(distinct).toHaveLength(TOTAL)
    expect(acked).toBe(TOTAL)
    expect(killed && deliveredAtKill < TOTAL).toBe(true)
    // Redelivered: at most what the dead engine had in flight.
    const redelivered = s.accepted.length - distinct.length
    expect(claimed).toBeGreaterThan(0)
    expect(redelivered).toBeLessThanOrEqual(claimed)
    // The sink has them all; the engines' completions commit right after.
    await until(async () => (await c.sql`SELECT 1 FROM weir_messages WHERE status <> 'delivered' LIMIT 1`).length === 0, 10_000)
    expect(await c.sql`SELECT status, count(*)::int AS n FROM weir_messages GROUP BY status`).toEqual([{ status: 'delivered', n: TOTAL }])
    for (const e of [engines[0]!, engines[2]!]) {
      e.child.kill('SIGTERM')
      expect((await e.exited).code).toBe(0)
    }
    expect(await c.sql`SELECT id FROM weir_engines`).toEqual([])
    console.log(`cluster failover (seed ${seed}): ${TOTAL} acknowledged over 3 engines, killed one holding ${claimed} claims with ${deliveredAtKill} delivered; takeover after ${takeoverMs} ms (lease ${LEASE_MS} ms); ${redelivered} redeliveries; ${s.refused} answered 503`)
  }, 420_000)
})

describe('operator pauses in a cluster', () => {
  it('two operators pausing (then resuming) two destinations at once on two engines: neither change is lost', async () => {
    const url = await fixture.server.createDatabase('pause_race')
    const api = await startApi()
    const dir = await tempDir()
    const a = await openPostgresStore({ url, leaseMs: LEASE_MS })
    const b = await openPostgresStore({ url, leaseMs: LEASE_MS })
    const adt = () => channel({ name: 'adt', dir: dir.path, source: feedSource().definition, destinations: [destination('d1', api.url), destination('d2', api.url)] })
    // No periodic re-read: what each engine writes must rest on what the store holds, not on a recent load.
    const onA = await startChannel(adt(), { store: a, log: silentLogger, dataDir: dir.path, pauseSyncMs: 60_000 })
    const onB = await startChannel(adt(), { store: b, log: silentLogger, dataDir: dir.path, pauseSyncMs: 60_000 })
    try {
      const lost: string[] = []
      for (let round = 0; round < 20; round++) {
        // Operator 1 on engine A's dashboard pauses d1, operator 2 on engine B's pauses d2, at the same moment.
        await Promise.all([onA.pause('d1'), onB.pause('d2')])
        const paused = await readPauses(a, 'adt')
        if (paused.destinations.length !== 2) lost.push(`round ${round}: paused ${JSON.stringify(paused.destinations)}`)
        await Promise.all([onA.resume('d1'), onB.resume('d2')])
        const resumed = await readPauses(a, 'adt')
        if (resumed.destinations.length !== 0) lost.push(`round ${round}: resumed, still paused ${JSON.stringify(resumed.destinations)}`)
        for (const d of resumed.destinations) await onA.resume(d)
      }
      expect(lost).toEqual([])
    } finally {
      await onA.stop({ timeoutMs: 200 })
      await onB.stop({ timeoutMs: 200 })
      await a.close()
      await b.close()
      await api.close()
      await dir.remove()
    }
  }, 60_000)
})
