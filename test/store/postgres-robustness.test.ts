import { createServer, connect, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { openPostgresStore, type PostgresMessageStore } from '../../shared/store/index.ts'
import { openDb, type Db } from '../../shared/store/postgres/db.ts'
import { clusterTokenState } from '../../shared/store/postgres/oauth-state.ts'
import type { EnqueueOptions } from '../../shared/store/types.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

let dbs = 0
const pg = useEmbeddedPostgres()

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const closers: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {})
})

/** ReadyForQuery, idle: the server has finished the request, its implicit or explicit transaction committed or rolled back. */
const READY_IDLE = Buffer.from([0x5a, 0, 0, 0, 5, 0x49])

/**
 * A TCP proxy to PostgreSQL on 127.0.0.1. `loseAnswerTo(marker)`: the next connection that sends
 * bytes containing `marker` gets no answer: the proxy swallows what the server sends back until the
 * server is idle again (its transaction over), then cuts both sides, as a connection lost after
 * COMMIT was sent and before its answer arrived. `cutBefore(marker)`: the next connection that sends
 * bytes containing `marker` is cut instead, those bytes never forwarded (lost on their way to the
 * server). `blackhole()`: every byte dropped, nothing closed (a peer gone without a FIN).
 */
async function proxyTo(port: number) {
  let marker: Buffer | undefined
  let cut: Buffer | undefined
  let hole = false
  let lost = 0
  const sockets = new Set<Socket>()
  const proxy = createServer((client) => {
    const upstream = connect(port, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {}).on('close', () => sockets.delete(s))
    }
    let swallowed: Buffer | undefined
    client.on('data', (d: Buffer) => {
      if (hole) return
      if (cut && d.includes(cut)) {
        cut = undefined
        lost++
        client.destroy()
        return void upstream.destroy()
      }
      if (marker && d.includes(marker)) {
        marker = undefined
        swallowed = Buffer.alloc(0)
      }
      upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => {
      if (hole) return
      if (!swallowed) return void client.write(d)
      swallowed = Buffer.concat([swallowed, d])
      if (swallowed.subarray(-READY_IDLE.length).equals(READY_IDLE)) {
        lost++
        client.destroy()
        upstream.destroy()
      }
    })
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', () => ok()))
  const proxyPort = (proxy.address() as { port: number }).port
  return {
    /** `url` (a database of the embedded server) through the proxy. */
    via: (url: string) => url.replace(`:${port}/`, `:${proxyPort}/`),
    loseAnswerTo(text: string) { marker = Buffer.from(text) },
    cutBefore(text: string) { cut = Buffer.from(text) },
    /** Answers swallowed (or connections cut) so far. */
    lost: () => lost,
    blackhole() { hole = true },
    close: () => new Promise<void>((ok) => { for (const s of sockets) s.destroy(); proxy.close(() => ok()) }),
  }
}

async function setUp(name: string) {
  const url = await pg.server.createDatabase(`${name}_${++dbs}`)
  const proxy = await proxyTo(pg.server.port)
  closers.push(proxy.close)
  const direct = openDb(url, { max: 1 })
  closers.push(() => direct.end())
  return { url, proxy, direct }
}

async function open(url: string, o: Partial<Parameters<typeof openPostgresStore>[0]> = {}): Promise<PostgresMessageStore> {
  const store = await openPostgresStore({ url, ...o })
  closers.push(() => store.close())
  return store
}

const inFlight = (db: Db, owner: string) => db.sql<{ n: number }>`SELECT count(*)::int AS n FROM weir_messages WHERE owner = ${owner} AND status = 'in-flight'`.then((r) => r[0]!.n)
const queued = (db: Db) => db.sql<{ n: number }>`SELECT count(*)::int AS n FROM weir_messages WHERE status = 'queued'`.then((r) => r[0]!.n)

describe('a claim whose COMMIT answer is lost', () => {
  // The unordered claim is one statement committed on its own (the group commit's one-statement batch); the ordered one a transaction ending in COMMIT.
  for (const [order, marker] of [['none', 'weir_batch_k\0'], ['key', 'COMMIT']] as const) {
    it(`(order: ${order}) the claim fails although the database committed it; the engine's next claim first returns to the queue what it does not hold, then claims it again`, async () => {
      const { proxy, direct, url } = await setUp(`lost_claim_${order}`)
      const a = await open(proxy.via(url), { leaseMs: 60_000 })
      for (const n of [1, 2]) await a.enqueue('c', { body: n })
      const held = await a.claim('c', 2, { order })
      expect(held.map((m) => m.body)).toEqual([1, 2])
      for (const n of [3, 4, 5]) await a.enqueue('c', { body: n })
      proxy.loseAnswerTo(marker)
      await expect(a.claim('c', 10, { order })).rejects.toThrow(/PostgreSQL store at 127\.0\.0\.1/)
      expect(proxy.lost()).toBe(1)
      // The database has all five in flight under this live engine's id: no sweep would ever return the three it does not hold.
      expect(await inFlight(direct, a.engineId!)).toBe(5)
      const again = await a.claim('c', 10, { order })
      expect(again.map((m) => m.body)).toEqual([3, 4, 5])
      // The two it held stayed its claims: completing them works.
      for (const m of held) await a.complete(m.id, 'delivered')
      expect((await a.stats('c')).delivered).toBe(2)
    }, 30_000)
  }

  it('with no further write, the engine reconciles on its own within seconds; messages it holds stay in flight', async () => {
    const { proxy, direct, url } = await setUp('lost_claim_idle')
    const a = await open(proxy.via(url), { leaseMs: 60_000 })
    await a.enqueue('c', { body: 1 })
    const [held] = await a.claim('c', 1)
    for (const n of [2, 3]) await a.enqueue('c', { body: n })
    proxy.loseAnswerTo('weir_batch_k\0')
    await expect(a.claim('c', 10)).rejects.toThrow()
    expect(await inFlight(direct, a.engineId!)).toBe(3)
    const t0 = Date.now()
    while ((await queued(direct)) < 2 && Date.now() - t0 < 5_000) await sleep(50)
    expect(await queued(direct)).toBe(2)
    const [row] = await direct.sql`SELECT status, owner FROM weir_messages WHERE id = ${held!.id}`
    expect(row).toEqual({ status: 'in-flight', owner: a.engineId })
  }, 30_000)
})

describe('timeouts and keepalive of the connections', () => {
  it('a query on a half-open connection (the proxy drops every byte, closes nothing) fails with a clear error within its timeout instead of hanging', async () => {
    const { proxy, url } = await setUp('halfopen')
    // Two pools of one connection each, both connected before the proxy stops forwarding.
    const db = openDb(proxy.via(url), { max: 1, timeouts: { queryMs: 300 } })
    const other = openDb(proxy.via(url), { max: 1, timeouts: { queryMs: 300 } })
    closers.push(async () => { await proxy.close(); await Promise.all([db.end(), other.end()]) })
    expect(await db.query('SELECT 1 AS one')).toEqual([{ one: 1 }])
    expect(await other.query('SELECT 1 AS one')).toEqual([{ one: 1 }])
    proxy.blackhole()
    const t0 = Date.now()
    const outcome = await Promise.race([db.query('SELECT 2').then(() => 'answered', (e: Error) => e.message), sleep(5_000).then(() => 'still hanging after 5 s')])
    expect(outcome).toMatch(/timeout/i)
    expect(Date.now() - t0).toBeLessThan(2_000)
    // Inside a transaction too: no ROLLBACK is attempted on the dead connection (it would hang as long again).
    const t1 = Date.now()
    const tx = await Promise.race([other.transaction((q) => q.query('SELECT 3')).then(() => 'answered', (e: Error) => e.message), sleep(5_000).then(() => 'still hanging after 5 s')])
    expect(tx).toMatch(/timeout/i)
    expect(Date.now() - t1).toBeLessThan(2_000)
  }, 30_000)

  it('the store on a half-open connection: a read fails with a StoreError naming the server, in time', async () => {
    const { proxy, url } = await setUp('halfopen_store')
    const a = await openPostgresStore({ url: proxy.via(url), leaseMs: 60_000, timeouts: { queryMs: 300 } })
    closers.push(async () => { await proxy.close(); await a.abandon() })
    proxy.blackhole()
    const t0 = Date.now()
    const outcome = await Promise.race([a.stats().then(() => 'answered', (e: Error) => `${e.name}: ${e.message}`), sleep(5_000).then(() => 'still hanging after 5 s')])
    expect(outcome).toMatch(/^StoreError: PostgreSQL store at 127\.0\.0\.1:\d+\/halfopen_store_\d+: .*timeout/i)
    expect(Date.now() - t0).toBeLessThan(2_000)
  }, 30_000)

  it('PostgreSQL cancels a statement that runs past the timeout (the connection stays usable) and ends a session left idle in a transaction', async () => {
    const { url, direct } = await setUp('timeouts')
    const db = openDb(url, { max: 1, timeouts: { queryMs: 300, idleInTransactionMs: 300 } })
    closers.push(() => db.end())
    await expect(db.query('SELECT pg_sleep(4)')).rejects.toThrow(/statement timeout/)
    expect(await db.query('SELECT 1 AS one')).toEqual([{ one: 1 }])
    await direct.query('CREATE TABLE t (id int PRIMARY KEY)')
    await direct.query('INSERT INTO t VALUES (1)')
    // A transaction that locks a row and then idles (its process frozen): the session is ended and the lock released.
    await expect(db.transaction(async (tx) => {
      await tx.query('SELECT * FROM t WHERE id = 1 FOR UPDATE')
      await sleep(1_000)
      await tx.query('SELECT 1')
    })).rejects.toThrow(/idle-in-transaction|terminat|connection error/i)
    expect(await direct.query('SELECT id FROM t WHERE id = 1 FOR UPDATE NOWAIT')).toEqual([{ id: 1 }])
    // Migrations are exempt: a transaction opened `unbounded` may run past the statement timeout.
    await db.transaction((tx) => tx.query('SELECT pg_sleep(0.5)'), { unbounded: true })
  }, 30_000)

  it('the store\'s sessions have the documented defaults, and its sockets TCP keepalive', async () => {
    const { url } = await setUp('defaults')
    const a = await open(url)
    expect(await a.pool.query('SHOW statement_timeout')).toEqual([{ statement_timeout: '1min' }])
    expect(await a.pool.query('SHOW idle_in_transaction_session_timeout')).toEqual([{ idle_in_transaction_session_timeout: '15s' }])
    const [{ port }] = (await a.pool.query<{ port: number }>('SELECT inet_client_port() AS port')) as [{ port: number }]
    // The kernel's view of the socket (the client side of the connection just used): a keepalive timer armed.
    const { execFileSync } = await import('node:child_process')
    const sockets = execFileSync('ss', ['-tno', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' })
    expect(sockets).toMatch(/timer:\(keepalive,/)
  }, 30_000)

  it('refuses a timeout that is not a whole, positive number of milliseconds, saying which', async () => {
    expect(() => openDb('postgres://x@127.0.0.1:1/x', { timeouts: { queryMs: -1 } })).toThrow(/queryMs must be a whole number of milliseconds from 1 to 86400000, not -1/)
    await expect(openPostgresStore({ url: 'postgres://x@127.0.0.1:1/x', timeouts: { keepAliveMs: 1.5 } })).rejects.toThrow(/keepAliveMs must be a whole number/)
  })
})

/**
 * Holds every connection of `a`'s message pool (two) with a long `pg_sleep`, until the sleeps show in
 * `pg_stat_activity`. `release` cancels them; `busy()` tells whether they are still running.
 */
async function holdMessagePool(a: PostgresMessageStore, direct: Db) {
  const text = 'SELECT pg_sleep(20)'
  let settled = false
  const long = Promise.allSettled([a.pool.query(text), a.pool.query(text)]).finally(() => { settled = true })
  const active = async () => (await direct.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1 AND state = 'active'`, [text]))[0]!.n
  const t0 = Date.now()
  while ((await active()) < 2 && Date.now() - t0 < 5_000) await sleep(20)
  expect(await active()).toBe(2)
  return {
    busy: async () => !settled && (await active()) === 2,
    async release() {
      await direct.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = $1`, [text])
      await long
    },
  }
}

describe('lease renewals', () => {
  it('renew on connections of their own: with every connection of the message pool held by long queries, a heartbeat and a leadership renewal complete at once', async () => {
    const { url, direct } = await setUp('renewals')
    const a = await open(url, { leaseMs: 60_000, poolSize: 2 })
    const held = await holdMessagePool(a, direct)
    try {
      const [before] = await direct.sql<{ at: Date }>`SELECT heartbeat_at AS at FROM weir_engines WHERE id = ${a.engineId}`
      await a.heartbeat()
      expect(await a.leadership!.lead('poller')).toBe(true)
      // Behind the message pool they would have waited for a connection, until the sleeps ended.
      expect(await held.busy()).toBe(true)
      const [after] = await direct.sql<{ at: Date }>`SELECT heartbeat_at AS at FROM weir_engines WHERE id = ${a.engineId}`
      expect(after!.at.getTime()).toBeGreaterThan(before!.at.getTime())
    } finally {
      await held.release()
    }
  }, 30_000)

  it('an OAuth token lease (the cluster\'s token state) renews on them too: with the message pool held by long queries, the renewal completes at once', async () => {
    const { url, direct } = await setUp('oauth_renewals')
    const a = await open(url, { leaseMs: 60_000, poolSize: 2 })
    const state = clusterTokenState(a, { secretKey: 'a passphrase every engine shares', leaseMs: 60_000 })!
    const leaseUntil = async () => (await direct.sql<{ at: Date }>`SELECT lease_until AS at FROM weir_oauth_state WHERE key = 'crm'`)[0]!.at.getTime()
    await state.withLease('crm', async (lease) => {
      const before = await leaseUntil()
      const held = await holdMessagePool(a, direct)
      try {
        await lease!.confirm()
        expect(await held.busy()).toBe(true)
        expect(await leaseUntil()).toBeGreaterThan(before)
      } finally {
        await held.release()
      }
    })
  }, 30_000)
})

const rowsOf = (db: Db, id: string) => db.sql<{ n: number }>`SELECT count(*)::int AS n FROM weir_messages WHERE id = ${id}`.then((r) => r[0]!.n)
const allRows = (db: Db) => db.sql<{ n: number }>`SELECT count(*)::int AS n FROM weir_messages`.then((r) => r[0]!.n)

describe('a batch whose COMMIT answer is lost (the database may well have committed it)', () => {
  // A transaction ending in COMMIT (enqueues with search keys), the one-statement batch, and a batch of one (a lone enqueue).
  const cases: Array<[string, string, number, EnqueueOptions]> = [
    ['a transaction of two enqueues', 'COMMIT', 2, { searchKeys: { mrn: ['m1'] } }],
    ['the one-statement batch of two enqueues', 'weir_batch_e\0', 2, {}],
    ['a lone enqueue', 'weir_batch_e\0', 1, {}],
  ]
  for (const [what, marker, n, opts] of cases) {
    it(`${what}: every enqueue resolves as stored, once (not rejected, no second row)`, async () => {
      const { proxy, direct, url } = await setUp(`lost_enqueue_${marker.startsWith('COMMIT') ? 'tx' : 'one'}_${n}`)
      const a = await open(proxy.via(url), { leaseMs: 60_000 })
      await a.enqueue('c', { body: 0 })
      proxy.loseAnswerTo(marker)
      const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => a.enqueue('c', { body: i + 1 }, opts)))
      expect(proxy.lost()).toBe(1)
      expect(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'stored'))).toEqual(results.map(() => 'stored'))
      const stored = results.map((r) => (r as PromiseFulfilledResult<{ id: string; duplicate: boolean }>).value)
      for (const r of stored) {
        expect(r.duplicate).toBe(false)
        expect(await rowsOf(direct, r.id)).toBe(1)
        expect((await a.get(r.id))?.message.status).toBe('queued')
      }
      expect(await allRows(direct)).toBe(n + 1)
      expect(a.pending('c')).toBe(n + 1)
      // Each is claimed and delivered once.
      const claimed = await a.claim('c', 10)
      expect(claimed.map((m) => m.body).sort()).toEqual(Array.from({ length: n + 1 }, (_, i) => i))
    }, 30_000)
  }

  it('with a dedupe key: the enqueue resolves as stored (not as a duplicate of itself); a resend is the duplicate', async () => {
    const { proxy, direct, url } = await setUp('lost_enqueue_dedupe')
    const a = await open(proxy.via(url), { leaseMs: 60_000 })
    await a.enqueue('c', { body: 0 })
    proxy.loseAnswerTo('weir_batch_ep\0')
    const [first, other] = await Promise.all([a.enqueue('c', { body: 1, dedupeKey: 'k1' }), a.enqueue('c', { body: 2, dedupeKey: 'k2' })])
    expect(proxy.lost()).toBe(1)
    expect([first.duplicate, other.duplicate]).toEqual([false, false])
    expect(await rowsOf(direct, first.id)).toBe(1)
    expect(await a.enqueue('c', { body: 1, dedupeKey: 'k1' })).toEqual({ id: first.id, duplicate: true })
    expect(await allRows(direct)).toBe(3)
    expect(a.pending('c')).toBe(3)
  }, 30_000)

  it('completions, delivery outcomes and filters\' retries of the lost batch resolve, counted once: no second attempt, the finished message off the pending count', async () => {
    const { proxy, direct, url } = await setUp('lost_complete')
    const a = await open(proxy.via(url), { leaseMs: 60_000 })
    for (const n of [1, 2, 3]) await a.enqueue('c', { body: n })
    const [x, y, z] = await a.claim('c', 3)
    expect(a.pending('c')).toBe(3)
    const attempt = (at: number, outcome: 'delivered' | 'retryable') => ({ startedAt: at, endedAt: at + 1, outcome, ...(outcome === 'retryable' ? { error: 'HTTP 503' } : { responseStatus: 200 }) })
    proxy.loseAnswerTo('COMMIT')
    const results = await Promise.allSettled([
      a.recordDelivery(x!.id, { destination: 'api', part: 0, status: 'retrying', attempt: attempt(10, 'retryable'), nextAttemptAt: 1_000 }),
      a.complete(y!.id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: attempt(20, 'delivered') }]),
      a.enqueue('c', { body: 4 }),
      a.recordFilterRetry(z!.id, { charged: 1, elapsedMs: 100, nextAttemptAt: 2_000 }),
    ])
    expect(proxy.lost()).toBe(1)
    expect(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))).toEqual(['ok', 'ok', 'ok', 'ok'])
    expect((await a.get(z!.id))?.message.filterRetry).toEqual({ charged: 1, elapsedMs: 100, nextAttemptAt: 2_000 })
    const attempts = await direct.sql<{ message_id: string; n: number }>`SELECT message_id, count(*)::int AS n FROM weir_attempts GROUP BY message_id ORDER BY message_id`
    expect(attempts).toEqual([{ message_id: x!.id, n: 1 }, { message_id: y!.id, n: 1 }].sort((p, q) => (p.message_id < q.message_id ? -1 : 1)))
    const deliveries = await direct.sql<{ message_id: string; status: string; attempts: number }>`SELECT message_id, status, attempts FROM weir_deliveries`
    expect(new Map(deliveries.map((d) => [d.message_id, [d.status, d.attempts]]))).toEqual(new Map([[x!.id, ['retrying', 1]], [y!.id, ['delivered', 1]]]))
    expect((await a.get(y!.id))?.message.status).toBe('delivered')
    // x and z still claimed, and the new message queued: y is off the count.
    expect(a.pending('c')).toBe(3)
    // A complete of the lone kind too: run again, it finds its own outcome and counts it.
    proxy.loseAnswerTo('weir_batch_c\0')
    await a.complete(z!.id, 'filtered')
    expect(proxy.lost()).toBe(2)
    expect(a.pending('c')).toBe(2)
    expect((await a.stats('c'))).toMatchObject({ delivered: 1, filtered: 1 })
  }, 30_000)
})

describe('an admin action (resubmit, purge) whose COMMIT answer is lost', () => {
  /** `n` messages of channel c, finished as `status`; their ids, oldest first. */
  async function finished(a: PostgresMessageStore, n: number, status: 'delivered' | 'error'): Promise<string[]> {
    for (let i = 1; i <= n; i++) await a.enqueue('c', { body: i })
    const claimed = await a.claim('c', n)
    for (const m of claimed) await a.complete(m.id, status)
    return claimed.map((m) => m.id)
  }
  const byStatus = (db: Db) => db.sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM weir_messages GROUP BY status ORDER BY status`

  // Alone (a batch of one), and in a batch with an enqueue (the batch's operations are run again one by one).
  for (const company of [false, true]) {
    const what = company ? 'in a batch with an enqueue' : 'alone'

    it(`${what}: a resubmit resolves with every id it resubmitted, once (the pending count too)`, async () => {
      const { proxy, direct, url } = await setUp(`lost_resubmit_${company ? 'batch' : 'alone'}`)
      const a = await open(proxy.via(url), { leaseMs: 60_000 })
      const ids = await finished(a, 3, 'error')
      expect(a.pending('c')).toBe(0)
      proxy.loseAnswerTo('COMMIT')
      const results = await Promise.allSettled([a.resubmit({ ids }), ...(company ? [a.enqueue('c', { body: 4 })] : [])])
      expect(proxy.lost()).toBe(1)
      expect(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))).toEqual(results.map(() => 'ok'))
      expect((results[0] as PromiseFulfilledResult<string[]>).value).toEqual(ids)
      expect(await byStatus(direct)).toEqual([{ status: 'queued', n: company ? 4 : 3 }])
      expect(a.pending('c')).toBe(company ? 4 : 3)
    }, 30_000)

    it(`${what}: a purge resolves with how many it deleted and deletes no more than asked`, async () => {
      const { proxy, direct, url } = await setUp(`lost_purge_${company ? 'batch' : 'alone'}`)
      const a = await open(proxy.via(url), { leaseMs: 60_000 })
      await finished(a, 5, 'delivered')
      proxy.loseAnswerTo('COMMIT')
      const results = await Promise.allSettled([a.purge({ channel: 'c', limit: 2 }), ...(company ? [a.enqueue('c', { body: 6 })] : [])])
      expect(proxy.lost()).toBe(1)
      expect(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))).toEqual(results.map(() => 'ok'))
      expect((results[0] as PromiseFulfilledResult<number>).value).toBe(2)
      expect(await byStatus(direct)).toEqual([{ status: 'delivered', n: 3 }, ...(company ? [{ status: 'queued', n: 1 }] : [])])
    }, 30_000)
  }

  it('a purge whose COMMIT never reached the server (the transaction rolled back) runs again and deletes what was asked, once', async () => {
    const { proxy, direct, url } = await setUp('cut_purge')
    const a = await open(proxy.via(url), { leaseMs: 60_000 })
    await finished(a, 5, 'delivered')
    proxy.cutBefore('COMMIT')
    expect(await a.purge({ channel: 'c', limit: 2 })).toBe(2)
    expect(proxy.lost()).toBe(1)
    expect(await byStatus(direct)).toEqual([{ status: 'delivered', n: 3 }])
  }, 30_000)

  it('a purge whose batch was rolled back (another operation of it failed) runs again, alone, and deletes what was asked', async () => {
    const { direct, url } = await setUp('rolled_back_purge')
    const a = await open(url, { leaseMs: 60_000 })
    await finished(a, 5, 'delivered')
    // A NUL byte in a key: PostgreSQL refuses the state, after the purge's statement ran in the same transaction.
    const [purged, bad] = await Promise.allSettled([a.purge({ channel: 'c', limit: 2 }), a.setState('c', 'poller', 'bad\0key', 1)])
    expect(bad.status).toBe('rejected')
    expect(purged).toEqual({ status: 'fulfilled', value: 2 })
    expect(await byStatus(direct)).toEqual([{ status: 'delivered', n: 3 }])
  }, 30_000)
})
