import { createServer, type ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startChannel } from '../../engine/runtime/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { openPostgresStore, type PostgresMessageStore } from '../../shared/store/index.ts'
import { openDb } from '../../shared/store/postgres/db.ts'
import { channel, destination, feedSource, tempDir, until } from '../runtime/_helpers.ts'
import { clusterFixture, testChannel } from './_cluster.ts'

/** Short, so that a stall longer than the lease takes a second or two. */
const LEASE_MS = 1500

const fixture = clusterFixture()
let dbs = 0
beforeAll(() => fixture.startServer(), 60_000)
afterAll(() => fixture.stopServer())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * A loopback sink recording every request in arrival order: which engine sent it (its channel's
 * destination URL ends in `/a` or `/b`) and the `{ key, n }` body. Engine A's requests are held
 * unanswered while `holdA`: deliveries on the wire when the engine froze.
 */
async function sink() {
  const arrivals: Array<{ engine: string; key: string; n: number }> = []
  const held: ServerResponse[] = []
  let holdA = true
  const http = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
      const { key, n } = JSON.parse(Buffer.concat(chunks).toString()) as { key: string; n: number }
      const engine = req.url!.slice(-1)
      arrivals.push({ engine, key, n })
      if (engine === 'a' && holdA) held.push(res)
      else res.writeHead(200).end('ok')
    })
  })
  await new Promise<void>((ok) => http.listen(0, '127.0.0.1', () => ok()))
  return {
    url: `http://127.0.0.1:${(http.address() as { port: number }).port}`,
    arrivals, held,
    from: (engine: string) => arrivals.filter((a) => a.engine === engine),
    /** Answers A's held requests with `status`, and A's later ones at once. */
    releaseA(status: number) {
      holdA = false
      for (const r of held.splice(0)) r.writeHead(status).end(status === 200 ? 'ok' : 'busy')
    },
    close: () => new Promise<void>((ok) => { http.closeAllConnections(); http.close(() => ok()) }),
  }
}

/** The first place where a key's messages arrived older after newer (redeliveries of the same one allowed), if any. */
function olderAfterNewer(arrivals: Array<{ engine?: string; key: string; n: number }>): string | undefined {
  const last = new Map<string, number>()
  for (const { engine, key, n } of arrivals) {
    if (n < (last.get(key) ?? -1)) return `key ${key}: ${n}${engine ? ` (from ${engine})` : ''} after ${last.get(key)}`
    last.set(key, n)
  }
  return undefined
}

/** Waits until engine `id`'s row is gone: a peer's heartbeat found its lease expired and took its claims over. */
async function takenOver(url: string, id: string): Promise<void> {
  const db = openDb(url, { max: 1 })
  try {
    await until(async () => (await db.sql`SELECT 1 FROM weir_engines WHERE id = ${id}`).length === 0, LEASE_MS * 6)
  } finally {
    await db.end()
  }
}

describe('an engine frozen longer than its lease (SIGSTOP, a paused VM) whose claims another engine took over', () => {
  it('cannot vouch for its claims by its own clock; its next heartbeat finds them lost; the store refuses its outcome, completion and release', async () => {
    const url = await fixture.server.createDatabase(`fenced_${++dbs}`)
    const a = await openPostgresStore({ url, leaseMs: LEASE_MS, heartbeatTimer: false })
    const b = await openPostgresStore({ url, leaseMs: LEASE_MS })
    try {
      const { id } = await a.enqueue('c', { body: 1 }, { orderKey: 'k' })
      expect((await a.claim('c', 10, { order: 'key' })).map((m) => m.id)).toEqual([id])
      const claims = a.leadership!.claims!
      expect(claims.standing(id)).toBe('held')
      const oldId = a.engineId!
      // A stalls: no heartbeat. B, whose timer renews and sweeps, takes its claim over and claims the message.
      await takenOver(url, oldId)
      expect(claims.standing(id)).toBe('unsure')
      expect((await b.claim('c', 10, { order: 'key' })).map((m) => m.id)).toEqual([id])
      // A wakes and writes what it had under way: every write is refused (fenced by owner).
      await a.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 3, attempt: { startedAt: 1, endedAt: 2, outcome: 'retryable', error: 'late' } })
      await a.complete(id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: 1, endedAt: 2, outcome: 'delivered' } }])
      await a.release([id])
      const seen = await b.get(id)
      expect(seen).toMatchObject({ message: { status: 'in-flight' }, deliveries: [], attempts: [] })
      expect((await b.cluster()).find((e) => e.id === b.engineId)!.claimed).toBe(1)
      // Its next heartbeat finds its row gone: it rejoins under a new id, and the claim is lost for good.
      await a.heartbeat()
      expect(a.engineId).not.toBe(oldId)
      expect(claims.standing(id)).toBe('lost')
      await b.complete(id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: 5, endedAt: 6, outcome: 'delivered' } }])
      expect((await b.get(id))!.message.status).toBe('delivered')
    } finally {
      await a.close()
      await b.close()
    }
  }, 30_000)

  it.each([
    ['answered', 200],
    ['refused, retryable', 503],
  ])('deliveries on the wire when it froze, %s on waking: it starts no delivery of a message taken over, and per-key order holds at the receiver', async (_, status) => {
    const url = await fixture.server.createDatabase(`frozen_${++dbs}`)
    const s = await sink()
    const dir = await tempDir()
    const a = await openPostgresStore({ url, leaseMs: LEASE_MS, heartbeatTimer: false })
    const b: PostgresMessageStore = await openPostgresStore({ url, leaseMs: LEASE_MS })
    const def = (engine: string, source = feedSource()) => channel({
      name: 'adt', dir: dir.path, source: source.definition,
      destinations: [destination('api', `${s.url}/${engine}`, { retry: { maxAttempts: 50, initialDelayMs: 5, maxDelayMs: 20, maxElapsedMs: 60_000 } })],
      options: { concurrency: 8, orderBy: 'key' },
    })
    const feed = feedSource()
    const onA = await startChannel(def('a', feed), { store: a, log: silentLogger, dataDir: dir.path })
    let onB: Awaited<ReturnType<typeof startChannel>> | undefined
    try {
      const keys = ['m1', 'm2', 'm3']
      for (let n = 0; n < 10; n++) for (const key of keys) await feed.emit({ key, n })
      // A delivers each key's head and claims ahead; the heads stay on the wire.
      await until(() => s.held.length === 3, 10_000)
      const oldId = a.engineId!
      // A freezes (no heartbeat) longer than its lease; B takes its claims over and delivers every message.
      await takenOver(url, oldId)
      onB = await startChannel(def('b'), { store: b, log: silentLogger, dataDir: dir.path })
      await until(() => s.from('b').length === 30, 20_000)
      // A wakes: its requests on the wire get their answer, then its heartbeat runs.
      s.releaseA(status)
      await sleep(300)
      await a.heartbeat()
      expect(a.engineId).not.toBe(oldId)
      await sleep(300)
      await onA.stop({ timeoutMs: 2000 })
      // A sent nothing more than what was on the wire when it froze.
      expect(s.from('a').map((r) => `${r.key}:${r.n}`).sort()).toEqual(['m1:0', 'm2:0', 'm3:0'])
      expect(olderAfterNewer(s.arrivals)).toBeUndefined()
      // B's outcomes stand: every message delivered once in the log, with B's attempts only.
      const db = openDb(url, { max: 1 })
      try {
        expect(await db.sql`SELECT status, count(*)::int AS n FROM weir_messages GROUP BY status`).toEqual([{ status: 'delivered', n: 30 }])
        expect((await db.sql<{ n: number }>`SELECT count(*)::int AS n FROM weir_attempts`)[0]!.n).toBe(30)
      } finally {
        await db.end()
      }
    } finally {
      await onA.stop({ timeoutMs: 200 })
      await onB?.stop({ timeoutMs: 200 })
      await a.close()
      await b.close()
      await s.close()
      await dir.remove()
    }
  }, 60_000)

  it('a real engine SIGSTOPped longer than its lease, then SIGCONTed: it rejoins without sending again what its peer took over, and per-key order holds at the receiver', async () => {
    // A receiver taking 300 ms per request, recording arrivals in order. It answers nothing until
    // every message is queued: however slow the sending (a loaded machine takes half a minute), the
    // engines deliver only the heads meanwhile, so A freezes with a backlog claimed ahead.
    const arrivals: Array<{ key: string; n: number }> = []
    let gated: Array<() => void> | undefined = []
    const http = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
        const { key, n } = JSON.parse(Buffer.concat(chunks).toString()) as { key: string; n: number }
        arrivals.push({ key, n })
        const answer = () => setTimeout(() => res.writeHead(200).end('ok'), 300)
        if (gated) gated.push(answer)
        else answer()
      })
    })
    await new Promise<void>((ok) => http.listen(0, '127.0.0.1', () => ok()))
    const sinkUrl = `http://127.0.0.1:${(http.address() as { port: number }).port}/in`
    const c = await fixture.create((portFile) => testChannel(sinkUrl, { concurrency: 8, orderBy: 'key' }, portFile), { leaseMs: 3000 })
    try {
      const a = await c.start(0)
      await c.start(1)
      const aId = (await c.engineId(a))!
      const keys = Array.from({ length: 10 }, (_, i) => `m${i}`)
      // Each key's messages in order, the keys side by side.
      await Promise.all(keys.map(async (key) => {
        for (let n = 0; n < 30; n++) {
          const res = await fetch(`http://127.0.0.1:${a.port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key, n }) })
          expect(res.status).toBe(202)
        }
      }))
      const heads = arrivals.length
      for (const answer of gated!.splice(0)) answer()
      gated = undefined
      await until(() => arrivals.length >= heads + 10, 20_000)
      a.child.kill('SIGSTOP')
      // Frozen past its lease: its peer takes its claims over and delivers newer messages of its keys.
      // (A frozen inside a claim's transaction holds its locks until PostgreSQL ends the session: idle_in_transaction_session_timeout, 15 s.)
      await until(async () => (await c.sql`SELECT 1 FROM weir_engines WHERE id = ${aId}`).length === 0, 30_000)
      const before = arrivals.length
      // Most messages are still to come: B has newer messages of A's keys to deliver.
      expect(before).toBeLessThan(200)
      await until(() => arrivals.length >= before + 60, 45_000)
      a.child.kill('SIGCONT')
      await until(() => a.output().includes('rejoined'), 20_000)
      await until(async () => (await c.sql`SELECT 1 FROM weir_messages WHERE status <> 'delivered' LIMIT 1`).length === 0, 90_000)
      await sleep(1000)
      expect(olderAfterNewer(arrivals)).toBeUndefined()
      expect(new Set(arrivals.map((r) => `${r.key}:${r.n}`)).size).toBe(300)
      // What it had claimed ahead and not started was dropped, not sent.
      expect(a.output()).toContain('not started here')
    } finally {
      await c.close()
      await new Promise<void>((ok) => { http.closeAllConnections(); http.close(() => ok()) })
    }
  }, 180_000)
})
