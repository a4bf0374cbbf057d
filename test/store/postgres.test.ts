import { describe, expect, it } from 'vitest'
import { openPostgresStore, type PostgresMessageStore } from '../../shared/store/index.ts'
import { openDb } from '../../shared/store/postgres/db.ts'
import { migrations } from '../../shared/store/postgres/migrations.ts'
import { PENDING_COUNTS } from '../../shared/store/postgres/open.ts'
import { storeConformance } from './conformance.ts'
import { runCli } from '../_cli.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { defineComponent, type ComponentDefinition } from '../../shared/component.ts'
import { channel, destination, feedSource, tempDir } from '../runtime/_helpers.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

let dbs = 0
let url = ''
const pg = useEmbeddedPostgres()

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Expires an engine's lease at once, as if it had stopped heartbeating a lease ago. */
async function expire(engineId: string): Promise<void> {
  const db = openDb(url, { max: 1 })
  await db.sql`UPDATE weir_engines SET lease_until = clock_timestamp() - interval '1 second' WHERE id = ${engineId}`
  await db.end()
}

/** Has a live engine of the cluster sweep it: one that joined a (short) lease ago, since a joining engine waits one lease before its first sweep. */
async function sweepByLiveEngine(): Promise<void> {
  const engine = await openPostgresStore({ url, leaseMs: 300 })
  await sleep(350)
  // The first heartbeat may be one under way since before the lease passed; the second is not.
  await engine.heartbeat()
  await engine.heartbeat()
  await engine.close()
}

storeConformance({
  name: 'postgres',
  fresh: async () => { url = await pg.server.createDatabase(`conf_${++dbs}`) },
  open: (o) => openPostgresStore({ url, ...o }),
  crash: async (s) => {
    const store = s as PostgresMessageStore
    const id = store.engineId!
    await store.abandon()
    await expire(id)
    await sweepByLiveEngine()
  },
  cleanup: async () => {},
})

describe('openPostgresStore', () => {
  it('groups a burst of enqueues into one commit, resolving all after it', async () => {
    url = await pg.server.createDatabase(`burst_${++dbs}`)
    const store = await openPostgresStore({ url })
    try {
      const before = (await store.diagnostics()).commits
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.enqueue('c', { body: i })))
      expect((await store.diagnostics()).commits - before).toBe(1)
      expect(new Set(results.map((r) => r.id)).size).toBe(50)
    } finally {
      await store.close()
    }
  })

  it('under load, paced commits wait for company: a trickle of writes shares far fewer commits; a lone write after a quiet spell does not wait', async () => {
    const commitsFor = async (commitPacing: { delayMs: number; batch: number }) => {
      url = await pg.server.createDatabase(`pacing_${++dbs}`)
      const store = await openPostgresStore({ url, commitPacing })
      try {
        const before = (await store.diagnostics()).commits
        const writes: Array<Promise<unknown>> = []
        for (let i = 0; i < 80; i++) {
          writes.push(store.enqueue('c', { body: i }))
          await new Promise((r) => setTimeout(r, 1))
        }
        await Promise.all(writes)
        const trickle = (await store.diagnostics()).commits - before
        await new Promise((r) => setTimeout(r, 400)) // quiet for longer than the pacing delay
        const lone = await Promise.race([store.enqueue('c', { body: 'lone' }).then(() => 'committed'), new Promise((r) => setTimeout(r, 250, 'waited'))])
        return { trickle, lone }
      } finally {
        await store.close()
      }
    }
    const plain = await commitsFor({ delayMs: 0, batch: 0 })
    const paced = await commitsFor({ delayMs: 300, batch: 20 })
    expect(plain.lone).toBe('committed')
    expect(paced.lone).toBe('committed') // the pacing delay is 300 ms: a lone write did not wait for it
    expect(paced.trickle).toBeLessThanOrEqual(6) // about 80 / 20, the first one alone
    expect(paced.trickle * 3).toBeLessThan(plain.trickle)
  })

  it('migrates under an advisory lock (two engines opening together), refuses a schema newer than it knows, and never migrates as a reader', async () => {
    url = await pg.server.createDatabase(`schema_${++dbs}`)
    const reader = await openPostgresStore({ url, owner: false }).catch((e) => e)
    expect([reader.code, reader.message]).toEqual(['ERR_STORE', expect.stringContaining('schema version 0; start the engine (weir run) once')])
    const [a, b] = await Promise.all([openPostgresStore({ url }), openPostgresStore({ url })])
    await a.close()
    await b.close()
    const db = openDb(url, { max: 1 })
    expect(await db.sql`SELECT version FROM weir_schema`).toEqual([{ version: migrations.length }])
    await db.sql`UPDATE weir_schema SET version = 99`
    await db.end()
    const err = await openPostgresStore({ url }).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_STORE', expect.stringContaining(`database schema version 99 is newer than this weir (${migrations.length}); upgrade weir`)])
  })

  it('moves the bodies of messages stored under schema 4 to their own table, where the store reads and purges them', async () => {
    url = await pg.server.createDatabase(`bodies_${++dbs}`)
    const db = openDb(url, { max: 1 })
    await db.transaction(async (tx) => {
      await tx.query('CREATE TABLE weir_schema (version integer NOT NULL)')
      for (const m of migrations.slice(0, 4)) await tx.query(m)
      await tx.query('INSERT INTO weir_schema (version) VALUES (4)')
      for (const [id, body, status] of [['old-queued', '{"mrn":"Q-1"}', 'queued'], ['old-done', '{"mrn":"D-1"}', 'delivered']]) {
        await tx.query(`INSERT INTO weir_messages (id, channel, status, body, content_type, attributes, received_at, updated_at)
          VALUES ($1, 'adt', $3, $2, 'application/json', '{}', 1, 1)`, [id, body, status])
      }
    })
    const store = await openPostgresStore({ url })
    try {
      expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM weir_message_bodies'))[0]!.n).toBe(2)
      expect((await db.query('SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND column_name = $2', ['weir_messages', 'body'])).length).toBe(0)
      expect((await store.get('old-done'))!.message.body).toEqual({ mrn: 'D-1' })
      expect((await store.list({ channel: 'adt', order: 'asc' })).map((m) => m.body)).toEqual([{ mrn: 'Q-1' }, { mrn: 'D-1' }])
      expect((await store.claim('adt', 10)).map((m) => [m.id, m.body])).toEqual([['old-queued', { mrn: 'Q-1' }]])
      expect(await store.purge({ statuses: ['delivered'] })).toBe(1)
      expect(await db.query('SELECT b.body FROM weir_message_bodies b JOIN weir_messages m USING (seq)')).toEqual([{ body: '{"mrn":"Q-1"}' }])
      expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM weir_message_bodies'))[0]!.n).toBe(1)
    } finally {
      await store.close()
      await db.end()
    }
  })

  it('schema 6: no foreign key locks the message row; a purge deletes a message\'s rows in every table; lookups by status read partial indexes', async () => {
    url = await pg.server.createDatabase(`lean_${++dbs}`)
    const store = await openPostgresStore({ url })
    const db = openDb(url, { max: 1 })
    try {
      expect(await db.query(`SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text LIKE 'weir_%'`)).toEqual([])
      const kept = await store.enqueue('c', { body: { n: 1 } }, { searchKeys: { mrn: ['M1'] } })
      const gone = await store.enqueue('c', { body: { n: 2 } }, { searchKeys: { mrn: ['M2'] } })
      for (const m of await store.claim('c', 10)) {
        await store.complete(m.id, m.id === gone.id ? 'error' : 'delivered', [{ destination: 'api', part: 0, status: m.id === gone.id ? 'error' : 'delivered', attempt: { startedAt: 1, endedAt: 2, outcome: 'delivered', responseStatus: 200 } }])
      }
      expect(await store.purge({ statuses: ['error'] })).toBe(1)
      const left = async (table: string, column: string, value: unknown) => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${column} = $1`, [value]))[0]!.n
      const [seqOf] = await db.query<{ seq: string }>('SELECT seq FROM weir_messages WHERE id = $1', [kept.id])
      expect(await Promise.all([left('weir_deliveries', 'message_id', gone.id), left('weir_attempts', 'message_id', gone.id), left('weir_message_keys', 'value', 'M2')])).toEqual([0, 0, 0])
      expect(await Promise.all([left('weir_deliveries', 'message_id', kept.id), left('weir_attempts', 'message_id', kept.id), left('weir_message_keys', 'value', 'M1'), left('weir_message_bodies', 'seq', seqOf!.seq)])).toEqual([1, 1, 1, 1])
      expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM weir_message_bodies'))[0]!.n).toBe(1)
      // With sequential scans priced out, a query that could use an index shows it: the plan must name the partial indexes.
      const plan = async (sql: string, params: unknown[] = []) => db.transaction(async (tx) => {
        await tx.query('SET LOCAL enable_seqscan = off')
        return (await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params)).map((r) => r['QUERY PLAN']).join('\n')
      })
      const pending = await plan(PENDING_COUNTS, ['c'])
      expect([pending.includes('weir_messages_queued'), pending.includes('weir_messages_claimed'), pending.includes('Seq Scan')]).toEqual([true, true, false])
      const errors = (await store.explainList({ channel: 'c', status: 'error' })).join('\n')
      expect([errors.includes('weir_messages_outcome'), errors.includes('Seq Scan on weir_messages')]).toEqual([true, false])
    } finally {
      await store.close()
      await db.end()
    }
  })

  it('runs the usual batch (enqueues, a completion with its outcome, a claim) as one statement with the same results', async () => {
    url = await pg.server.createDatabase(`onestatement_${++dbs}`)
    const store = await openPostgresStore({ url })
    const db = openDb(url, { max: 1 })
    try {
      const first = await store.enqueue('c', { body: { n: 1 } })
      await store.enqueue('c', { body: { n: 2 } })
      const [claimed] = await store.claim('c', 1)
      const commits = (await store.diagnostics()).commits
      // Asked in one turn: one group commit.
      const [dup, fresh, done, next] = await Promise.all([
        store.enqueue('c', { body: { n: 1 }, dedupeKey: 'k1' }),
        store.enqueue('c', { body: { n: 3 }, dedupeKey: 'k1' }),
        store.complete(claimed!.id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: 5, endedAt: 6, outcome: 'delivered', responseStatus: 200 } }]),
        store.claim('c', 10),
      ])
      expect((await store.diagnostics()).commits).toBe(commits + 1)
      expect([dup.duplicate, fresh]).toEqual([false, { id: dup.id, duplicate: true }])
      // A later batch finds the first one stored before it.
      expect(await store.enqueue('c', { body: { n: 4 }, dedupeKey: 'k1' })).toEqual({ id: dup.id, duplicate: true })
      expect(done).toBeUndefined()
      // The claim saw what was committed before the batch (message 2), not what the batch enqueued.
      expect(next.map((m) => m.body)).toEqual([{ n: 2 }])
      const detail = (await store.get(first.id))!
      expect([detail.message.status, detail.deliveries.map((d) => [d.status, d.attempts]), detail.attempts.map((a) => a.responseStatus)]).toEqual(['delivered', [['delivered', 1]], [200]])
      expect((await store.claim('c', 10)).map((m) => m.body)).toEqual([{ n: 1 }])
    } finally {
      await store.close()
      await db.end()
    }
  })

  it('lists the engines; a dead one shows as expired until a live engine sweeps it, its claims going back to the queue; one that stops cleanly leaves', async () => {
    url = await pg.server.createDatabase(`status_${++dbs}`)
    const a = await openPostgresStore({ url, leaseMs: 60_000, version: '9.9.9' })
    const b = await openPostgresStore({ url, leaseMs: 60_000 })
    try {
      await a.enqueue('c', { body: 1 })
      await a.claim('c', 5)
      expect(await a.leadership!.lead('poll/source')).toBe(true)
      expect(await b.leadership!.lead('poll/source')).toBe(false)
      const live = await runCli(['cluster', 'status', '--store', url])
      expect(live.code).toBe(0)
      expect(live.out).toMatch(new RegExp(`${a.engineId}\\s.*9\\.9\\.9\\s.*live\\s+1\\s+poll/source`))
      expect(live.out).toContain(b.engineId)
      const deadId = a.engineId!
      await a.abandon()
      await expire(deadId)
      const dead = await runCli(['cluster', 'status', '--store', url, '--json'])
      expect(dead.code).toBe(1)
      expect(JSON.parse(dead.out).find((e: { id: string }) => e.id === deadId)).toMatchObject({ expired: true, claimed: 1, leads: ['poll/source'] })
      await sweepByLiveEngine()
      expect((await b.cluster()).map((e) => e.id)).toEqual([b.engineId])
      expect(await b.leadership!.lead('poll/source')).toBe(true)
      expect((await b.claim('c', 5)).map((m) => m.body)).toEqual([1])
    } finally {
      await b.close()
    }
    const reader = await openPostgresStore({ url, owner: false })
    expect(await reader.cluster()).toEqual([])
    await reader.close()
    expect((await runCli(['cluster', 'status', '--store', url])).out).toBe('no engines\n')
  })
})

describe('claims of an engine that has no row', () => {
  it('a claim that comes after a sweep removed its engine (its lease had run out) claims nothing; rejoined under a new id, the engine claims the message', async () => {
    url = await pg.server.createDatabase(`orphan_late_${++dbs}`)
    const a = await openPostgresStore({ url, leaseMs: 60_000 })
    try {
      const { id } = await a.enqueue('c', { body: 1 })
      const oldId = a.engineId!
      // A stalls past its lease (GC, CPU starvation): a live engine sweeps it. A's dispatcher, not yet aware, claims.
      await expire(oldId)
      await sweepByLiveEngine()
      expect(await a.claim('c', 10)).toEqual([])
      await a.heartbeat()
      expect(a.engineId).not.toBe(oldId)
      expect((await a.claim('c', 10)).map((m) => [m.id, m.status])).toEqual([[id, 'in-flight']])
    } finally {
      await a.close()
    }
  })

  it('a sweep returns to the queue the claims of an engine whose row is gone otherwise (removed by hand, or left behind by an older version)', async () => {
    url = await pg.server.createDatabase(`orphan_sweep_${++dbs}`)
    const a = await openPostgresStore({ url, leaseMs: 60_000 })
    const b = await openPostgresStore({ url, leaseMs: 60_000 })
    const db = openDb(url, { max: 1 })
    try {
      const { id } = await a.enqueue('c', { body: 1 })
      await a.claim('c', 10)
      await a.recordDelivery(id, { destination: 'x', part: 0, status: 'delivered', attempt: { startedAt: 1, endedAt: 2, outcome: 'delivered' } })
      await a.abandon()
      await db.sql`DELETE FROM weir_engines WHERE id = ${a.engineId!}`
      await sweepByLiveEngine()
      const [m] = await b.claim('c', 10)
      expect([m?.id, m?.deliveries.map((d) => [d.destination, d.status])]).toEqual([id, [['x', 'delivered']]])
    } finally {
      await db.end()
      await b.close()
    }
  })

  it('weir run stopping while a delivery outlives shutdownTimeoutMs: the engine leaves the cluster with the message back in the queue, and another engine claims it at once', async () => {
    url = await pg.server.createDatabase(`orphan_stop_${++dbs}`)
    const dir = await tempDir()
    const a = await openPostgresStore({ url, leaseMs: 60_000 })
    const b = await openPostgresStore({ url, leaseMs: 60_000 })
    let started = 0
    let ended: Promise<unknown> = Promise.resolve()
    // A destination whose call does not honour the abort signal (a library without one, a hung socket): it ends late.
    const slow = defineComponent({ type: 'slow', kind: 'destination', description: 'slow', configSchema: { type: 'object' },
      create: () => ({ async deliver() { started++; await (ended = sleep(2000)); return { status: 200 } } }) }) as ComponentDefinition<'destination'>
    const feed = feedSource()
    try {
      const h = await startChannel(channel({ name: 'adt', dir: dir.path, source: feed.definition, destinations: [destination('api', '', { definition: slow, config: {} })], options: { shutdownTimeoutMs: 100 } }),
        { store: a, log: silentLogger, dataDir: dir.path })
      const { id } = await feed.emit({ n: 1 })
      while (started === 0) await sleep(10)
      await h.stop() // 100 ms for the work under way, then 1 s for aborted deliveries: the delivery goes on
      await a.close()
      expect((await b.claim('adt', 10)).map((m) => m.id)).toEqual([id])
    } finally {
      await ended
      await b.close()
      await dir.remove()
    }
  })
})

/** `n` messages of channel c finished in error, as a preview pins them: ids with their updatedAt. */
async function errorSet(store: PostgresMessageStore, n: number): Promise<Array<{ id: string; updatedAt: number }>> {
  const ids: string[] = []
  for (let i = 0; i < n; i++) ids.push((await store.enqueue('c', { body: i })).id)
  await store.claim('c', n)
  for (const id of ids) await store.complete(id, 'error', [], 'api: 400')
  return Promise.all(ids.map(async (id) => ({ id, updatedAt: (await store.get(id))!.message.updatedAt })))
}

/** Waits until `n` sessions of the database wait for a lock. */
async function lockWaiters(db: ReturnType<typeof openDb>, n: number): Promise<void> {
  for (let i = 0; i < 400; i++, await sleep(25)) {
    const [row] = await db.sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`
    if (row!.n >= n) return
  }
  throw new Error(`${n} sessions never waited for a lock`)
}

/**
 * Runs `race` while another transaction holds the first message of `previewed` locked, until `n`
 * sessions wait for it: they all read the set as previewed before any of them changes it.
 */
async function heldUntilWaiting<T>(previewed: ReadonlyArray<{ id: string }>, n: number, race: () => Promise<T>): Promise<T> {
  const x = openDb(url, { max: 2 })
  try {
    let raced: Promise<T> | undefined
    await x.transaction(async (tx) => {
      await tx.sql`SELECT 1 FROM weir_messages WHERE id = ${previewed[0]!.id} FOR UPDATE`
      raced = race()
      raced.catch(() => {})
      await lockWaiters(x, n)
    })
    return await raced!
  } finally {
    await x.end()
  }
}

describe('two confirmations of one previewed set at the same instant', () => {
  it('two store handles: both resubmits wait for a lock, each having read the set as previewed; then one queues every message, the other finds them changed and queues none (the conflict)', async () => {
    url = await pg.server.createDatabase(`race_${++dbs}`)
    const a = await openPostgresStore({ url })
    const b = await openPostgresStore({ url, owner: false })
    try {
      const previewed = await errorSet(a, 3)
      const settled = await heldUntilWaiting(previewed, 2, () => Promise.allSettled([a.resubmit({ asPreviewed: previewed }), b.resubmit({ asPreviewed: previewed })]))
      const outcome = settled.map((r) => (r.status === 'fulfilled' ? r.value : { code: r.reason.code, conflict: r.reason.conflict }))
      expect(outcome).toContainEqual(previewed.map((m) => m.id))
      expect(outcome).toContainEqual({ code: 'ERR_STORE', conflict: true })
      await a.refreshPending('c')
      expect((await a.claim('c', 10)).map((m) => m.id)).toEqual(previewed.map((m) => m.id))
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('two weir messages resubmit --confirm of one preview: one resubmits, the other exits 1 saying the set is not as previewed; every message is queued once, audited once', async () => {
    url = await pg.server.createDatabase(`race_cli_${++dbs}`)
    const engine = await openPostgresStore({ url })
    try {
      const previewed = await errorSet(engine, 3)
      const resubmit = (...more: string[]) => runCli(['messages', 'resubmit', '--store', url, '--status', 'error', ...more], {})
      const token = /--confirm (\d+:[0-9a-f]+)/.exec((await resubmit()).out)![1]!
      const runs = await heldUntilWaiting(previewed, 2, () => Promise.all([resubmit('--confirm', token), resubmit('--confirm', token)]))
      expect(runs.map((r) => r.code).sort()).toEqual([0, 1])
      expect(runs.find((r) => r.code === 0)!.out).toMatch(/^resubmitted 3 message\(s\)\n/)
      expect(runs.find((r) => r.code === 1)!.err).toBe(`--confirm ${token} does not match: every channel: status error still matches 3 finished message(s), but not as previewed (this --confirm was used already, or some left the set, others joined it or finished again meanwhile); nothing resubmitted, preview again\n`)
      await engine.refreshPending('c')
      expect((await engine.claim('c', 10)).map((m) => m.id)).toEqual(previewed.map((m) => m.id))
      expect((await engine.auditLog()).map((e) => [e.action, e.count])).toEqual([['resubmit', 3]])
    } finally {
      await engine.close()
    }
  })
})

describe('ordered claims beside a batch that holds a queued message locked', () => {
  it('an ordered claim waits for its key\'s head that another transaction holds locked (as a batch whose enqueue moved a dedupe key does) instead of handing out the next message of the key; an unordered claim skips it', async () => {
    url = await pg.server.createDatabase(`locked_head_${++dbs}`)
    const a = await openPostgresStore({ url, leaseMs: 60_000 })
    const b = await openPostgresStore({ url, leaseMs: 60_000 })
    const x = openDb(url, { max: 1 })
    try {
      const names = new Map<string, string>()
      for (const ch of ['adt', 'lab']) {
        names.set((await a.enqueue(ch, { body: 1, dedupeKey: 'visit-1', dedupeWindowMs: 100 }, { orderKey: 'K' })).id, 'm1')
        names.set((await a.enqueue(ch, { body: 2 }, { orderKey: 'K' })).id, 'm2')
      }
      const named = (ms: Array<{ id: string }>) => ms.map((m) => names.get(m.id))
      let ordered: Promise<Array<string | undefined>> | undefined
      let unordered: Array<string | undefined> = []
      await x.transaction(async (tx) => {
        // A later "visit-1" after the window: the enqueue takes the key from m1, which stays locked until its batch commits.
        await tx.sql`UPDATE weir_messages SET dedupe_key = NULL WHERE dedupe_key = 'visit-1'`
        unordered = named(await b.claim('lab', 10))
        ordered = b.claim('adt', 10, { order: 'key' }).then(named)
        await sleep(300)
      })
      expect(unordered).toEqual(['m2'])
      expect(await ordered).toEqual(['m1', 'm2'])
    } finally {
      await x.end()
      await a.close()
      await b.close()
    }
  })

  it('a batch that moves a dedupe key and claims an ordered channel takes the claim lock before it locks any message: an ordered claim under way on the channel does not wait for it', async () => {
    url = await pg.server.createDatabase(`claim_lock_first_${++dbs}`)
    const a = await openPostgresStore({ url, leaseMs: 60_000 })
    const x = openDb(url, { max: 1 })
    try {
      const m1 = await a.enqueue('adt', { body: 1, dedupeKey: 'visit-1', dedupeWindowMs: 100 }, { orderKey: 'K' })
      await sleep(200) // m1's dedupe window has passed
      let batch: Promise<unknown> | undefined
      const scanned = await x.transaction(async (tx) => {
        // Another engine's ordered claim on adt, under way: it holds the channel's claim lock.
        await tx.sql`SELECT pg_advisory_xact_lock(hashtextextended('weir:claim:' || ${'adt'}, 0))`
        // Engine A's next batch: a re-sent "visit-1" (the key moves from m1 to it) and a claim on adt.
        batch = Promise.all([a.enqueue('adt', { body: 3, dedupeKey: 'visit-1', dedupeWindowMs: 100 }, { orderKey: 'K' }), a.claim('adt', 10, { order: 'key' })])
        await sleep(300)
        // The other claim now reads the queue: had A's batch locked m1 before asking for the claim lock, each would wait for the other.
        await tx.sql`SET LOCAL lock_timeout = '500ms'`
        return tx.sql`SELECT id FROM weir_messages WHERE channel = 'adt' AND status = 'queued' ORDER BY seq FOR UPDATE`.then((rows) => rows.map((r) => r.id), (e: Error) => e.message)
      })
      expect(scanned).toEqual([m1.id])
      const [, claimed] = (await batch) as [unknown, Array<{ id: string }>]
      expect(claimed[0]!.id).toBe(m1.id)
    } finally {
      await x.end()
      await a.close()
    }
  })
})

describe('an engine joining the cluster', () => {
  it('waits one lease before declaring others dead: joining as the database comes back from an outage (every live engine\'s lease looks expired), it leaves their claims alone', async () => {
    url = await pg.server.createDatabase(`join_${++dbs}`)
    const LEASE = 800
    const a = await openPostgresStore({ url, leaseMs: 60_000 })
    const c = await (async () => {
      const { id } = await a.enqueue('adt', { body: 1 })
      expect((await a.claim('adt', 10)).map((m) => m.id)).toEqual([id])
      // The outage outlasted A's lease: A is alive and renews within a third of its lease of the database's return.
      await expire(a.engineId!)
      return openPostgresStore({ url, leaseMs: LEASE })
    })()
    try {
      const joined = Date.now()
      expect(await c.claim('adt', 10)).toEqual([])
      await c.heartbeat()
      expect(await c.claim('adt', 10)).toEqual([])
      expect(Date.now() - joined).toBeLessThan(LEASE) // all of this within C's first lease
      const aId = a.engineId
      await a.heartbeat()
      expect(a.engineId).toBe(aId)
      await sleep(LEASE - (Date.now() - joined) + 50)
      await c.heartbeat()
      expect(await c.claim('adt', 10)).toEqual([])
      // A lease after joining, C does sweep: A dies, and C takes its claim over.
      await a.abandon()
      await expire(aId!)
      await c.heartbeat()
      expect((await c.claim('adt', 10)).length).toBe(1)
    } finally {
      await c.close()
    }
  })
})

describe('content encryption in a cluster', () => {
  it('engines with the same WEIR_SECRET_KEY passphrase (and separate data directories) read what another sealed; the clear text is nowhere in the tables', async () => {
    const { openStoreFor } = await import('../../engine/store.ts')
    const { mkdtemp, rm } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const clusterUrl = await pg.server.createDatabase(`enc_${++dbs}`)
    const dirs = [await mkdtemp(join(tmpdir(), 'weir-enc-a-')), await mkdtemp(join(tmpdir(), 'weir-enc-b-'))]
    const env = { WEIR_SECRET_KEY: 'a passphrase the whole cluster shares' }
    const [a, b] = await Promise.all(dirs.map((dataDir) => openStoreFor({ store: clusterUrl }, { env }, { dataDir, owner: true, encrypt: true })))
    try {
      const { id } = await a!.enqueue('adt', { body: { mrn: 'MRN-7741-CLUSTER' }, attributes: { ward: 'ICU-7741' } })
      const seen = (await b!.get(id))!.message
      expect([seen.body, seen.attributes]).toEqual([{ mrn: 'MRN-7741-CLUSTER' }, { ward: 'ICU-7741' }])
      const db = openDb(clusterUrl, { max: 1 })
      const dump = JSON.stringify([await db.sql`SELECT * FROM weir_messages`, await db.sql`SELECT * FROM weir_message_bodies`])
      await db.end()
      expect(dump).toContain(id)
      expect(dump).not.toContain('7741')
      const noKey = await openStoreFor({ store: clusterUrl }, { env: {} }, { dataDir: dirs[0]!, owner: false })
      await expect(noKey.get(id)).rejects.toMatchObject({ code: 'ERR_STORE', message: expect.stringContaining('WEIR_SECRET_KEY') })
      await noKey.close()
    } finally {
      await Promise.all([a!.close(), b!.close()])
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
    }
  })
})
