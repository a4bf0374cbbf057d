import { writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openPostgresStore, type PostgresMessageStore, type PostgresStoreOptions } from '../../shared/store/index.ts'
import { startWeirRun, tempDir, until } from '../runtime/_helpers.ts'
import { clusterFixture, testChannel, useClusterResources } from './_cluster.ts'

/** Short, so that a stall longer than the lease takes a second or two. */
const LEASE_MS = 1500
const NOWHERE = 'http://127.0.0.1:9/none'

const fixture = clusterFixture()
const { stores, children, dirs, database } = useClusterResources(() => fixture.server, 'refused')
beforeAll(() => fixture.startServer(), 60_000)
afterAll(() => fixture.stopServer())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** What an engine's store logged and was told: its warnings, errors and refusals. */
function observed() {
  const warnings: string[] = []
  const errors: string[] = []
  const refusals: Error[] = []
  const log = { info() {}, warn: (_: unknown, msg?: string) => void warnings.push(msg ?? ''), error: (_: unknown, msg?: string) => void errors.push(msg ?? '') }
  return { warnings, errors, refusals, options: { log, onRefused: (e: Error) => void refusals.push(e) } satisfies Partial<PostgresStoreOptions> }
}

async function engine(options: PostgresStoreOptions): Promise<PostgresMessageStore> {
  const store = await openPostgresStore(options)
  stores.push(store)
  return store
}

const conflictOf = (c: { channel: string; id: string; pid: number; at?: string }) =>
  `this engine's lease ran out (it was frozen or cut off from the database longer than the lease) and it may not rejoin the cluster: ` +
  `this engine's definition of channel "${c.channel}" differs from that of the live engine ${c.id} (host ${hostname()}, pid ${c.pid})${c.at ? ` at ${c.at}` : ''}: ` +
  'every engine of a cluster must run the same definition of a channel (its file and the modules it loads), or each processes the messages it claims its own way. ' +
  'To change a channel, stop every engine, change the file everywhere and start them again; or deploy the new definition under a new channel name ' +
  '(an engine that died counts until its lease runs out)'

describe('an engine whose lease ran out, refused as it rejoins because a live engine now runs one of its channels with another definition', () => {
  it('is told once (onRefused), heartbeats no more, claims nothing, takes no leadership and cannot vouch for what it held', async () => {
    const { url, db } = await database()
    const seen = observed()
    const a = await engine({ url, leaseMs: LEASE_MS, heartbeatTimer: false, definitions: { orders: 'sha256:x' }, ...seen.options })
    const { id } = await a.enqueue('orders', { body: 1 })
    expect((await a.claim('orders', 10)).map((m) => m.id)).toEqual([id])
    expect(await a.leadership!.lead('orders-poller')).toBe(true)
    const claims = a.leadership!.claims!
    const oldId = a.engineId!
    // A stalls (no heartbeat) past its lease: B, with another definition of the channel, may join then.
    await until(async () => (await db.sql`SELECT 1 FROM weir_engines WHERE id = ${oldId} AND lease_until < clock_timestamp()`).length === 1, LEASE_MS * 4)
    const b = await engine({ url, leaseMs: LEASE_MS, definitions: { orders: 'sha256:y' } })
    // B's heartbeat sweeps A away: A's claim and leadership go with its row.
    await until(async () => (await db.sql`SELECT 1 FROM weir_engines WHERE id = ${oldId}`).length === 0, LEASE_MS * 6)
    await a.heartbeat()
    expect(seen.refusals.map((e) => [(e as { code?: string }).code, e.message])).toEqual([['ERR_STORE', conflictOf({ channel: 'orders', id: b.engineId!, pid: process.pid })]])
    await a.heartbeat()
    await a.heartbeat()
    expect(seen.refusals).toHaveLength(1)
    expect(seen.warnings.filter((w) => w.startsWith('heartbeat failed'))).toEqual([])
    expect(claims.standing(id)).toBe('lost')
    await claims.renewal().settled
    expect(await a.leadership!.lead('orders-poller')).toBe(false)
    await b.enqueue('orders', { body: 2 })
    expect(await a.claim('orders', 10)).toEqual([])
    expect(await db.sql`SELECT id FROM weir_engines`).toEqual([{ id: b.engineId }])
    expect(await db.sql`SELECT name, engine_id FROM weir_leaders`).toEqual([])
    expect((await b.claim('orders', 10)).map((m) => m.body)).toEqual([1, 2])
  }, 30_000)

  it('its row expired but not swept yet: the heartbeat does not bring it back to life beside the other; the row is left to the sweep', async () => {
    const { url, db } = await database()
    const seen = observed()
    const outline = (to: string) => ({ orders: { '/name': 'n', '/destinations/0/config/url': to } })
    const a = await engine({ url, leaseMs: LEASE_MS, heartbeatTimer: false, definitions: { orders: 'sha256:x' }, outlines: outline('u1'), ...seen.options })
    const { id } = await a.enqueue('orders', { body: 1 })
    expect((await a.claim('orders', 10)).map((m) => m.id)).toEqual([id])
    const oldId = a.engineId!
    await until(async () => (await db.sql`SELECT 1 FROM weir_engines WHERE id = ${oldId} AND lease_until < clock_timestamp()`).length === 1, LEASE_MS * 4)
    // B's first sweep comes a lease after it joined: A wakes before.
    const b = await engine({ url, leaseMs: LEASE_MS, heartbeatTimer: false, definitions: { orders: 'sha256:y' }, outlines: outline('u2') })
    await a.heartbeat()
    expect(seen.refusals.map((e) => e.message)).toEqual([conflictOf({ channel: 'orders', id: b.engineId!, pid: process.pid, at: '/destinations/0/config/url' })])
    expect(a.leadership!.claims!.standing(id)).toBe('lost')
    expect(await a.leadership!.lead('orders-poller')).toBe(false)
    expect(await a.claim('orders', 10)).toEqual([])
    expect(await db.sql`SELECT id, lease_until < clock_timestamp() AS expired FROM weir_engines ORDER BY started_at`).toEqual([{ id: oldId, expired: true }, { id: b.engineId, expired: false }])
    await sleep(LEASE_MS)
    await b.heartbeat()
    expect(await db.sql`SELECT id FROM weir_engines`).toEqual([{ id: b.engineId }])
    expect((await b.claim('orders', 10)).map((m) => m.id)).toEqual([id])
    expect(seen.refusals).toHaveLength(1)
  }, 30_000)

  it('on its heartbeat timer: the timer stops at the refusal, nothing is retried', async () => {
    const { url, db } = await database()
    const seen = observed()
    const a = await engine({ url, leaseMs: 600, definitions: { orders: 'sha256:x' }, ...seen.options })
    // The sweep of an engine with another definition, done by hand under the join lock: A's row goes, the other's comes.
    await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('weir:join', 0))`)
      await tx.sql`DELETE FROM weir_engines WHERE id = ${a.engineId!}`
      await tx.sql`INSERT INTO weir_engines (id, host, pid, version, lease_until, channels) VALUES ('other', 'h', 1, '1', clock_timestamp() + interval '1 hour', '{"orders": "sha256:y"}')`
    })
    await until(() => seen.refusals.length === 1, 5_000)
    await sleep(1_500)
    expect(seen.refusals).toHaveLength(1)
    expect(seen.refusals[0]!.message).toContain('differs from that of the live engine other (host h, pid 1)')
    expect(seen.warnings).toEqual([])
    expect(await db.sql`SELECT id FROM weir_engines`).toEqual([{ id: 'other' }])
  }, 30_000)
})

describe('weir run whose lease ran out while an engine with another definition joined', () => {
  it('stops cleanly and exits 1, the refusal logged at error level without a stack', async () => {
    const { url, db } = await database()
    const d = await tempDir('weir-refused-')
    dirs.push(d)
    const channel = (portFile: string, more: boolean) => {
      const ch = testChannel(NOWHERE, {}, portFile) as { destinations: Array<Record<string, unknown>> }
      if (more) ch.destinations.push({ ...ch.destinations[0]!, name: 'audit' })
      return ch
    }
    await writeFile(join(d.path, 'a.json'), JSON.stringify(channel('a.port', true)))
    await writeFile(join(d.path, 'b.json'), JSON.stringify(channel('b.port', false)))
    const args = ['--store', url, '--admin', 'off', '--lease-ms', '3000']
    const a = await startWeirRun(join(d.path, 'a.json'), join(d.path, 'a'), '../a.port', children, args)
    const [{ id: aId }] = await db.sql<{ id: string }>`SELECT id FROM weir_engines WHERE pid = ${a.child.pid!}` as [{ id: string }]
    // A frozen past its lease; B, with one destination fewer, joins and sweeps A's row away.
    a.child.kill('SIGSTOP')
    await until(async () => (await db.sql`SELECT 1 FROM weir_engines WHERE id = ${aId} AND lease_until < clock_timestamp()`).length === 1, 15_000)
    const b = await startWeirRun(join(d.path, 'b.json'), join(d.path, 'b'), '../b.port', children, args)
    const [{ id: bId }] = await db.sql<{ id: string }>`SELECT id FROM weir_engines WHERE pid = ${b.child.pid!}` as [{ id: string }]
    await until(async () => (await db.sql`SELECT 1 FROM weir_engines WHERE id = ${aId}`).length === 0, 20_000)
    a.child.kill('SIGCONT')
    const exit = await Promise.race([a.exited, sleep(20_000).then(() => ({ code: 'still running', output: a.output() }))])
    expect(exit.code).toBe(1)
    const lines = a.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string })
    const refusal = lines.find((l) => l.msg.includes('may not rejoin the cluster'))
    // Level 50: error; a user error, with no stack.
    expect(refusal).toMatchObject({ level: 50, code: 'ERR_STORE', msg: `stopping: ${conflictOf({ channel: 'clustered', id: bId, pid: b.child.pid!, at: '/destinations/1 (added here)' })}` })
    expect(refusal).not.toHaveProperty('err')
    expect(a.output()).not.toContain('heartbeat failed')
    expect(a.output()).not.toMatch(/\n\s+at /)
    expect(await db.sql`SELECT id FROM weir_engines`).toEqual([{ id: bId }])
    expect(b.child.exitCode).toBe(null)
  }, 90_000)
})
