import { afterEach, describe, expect, it } from 'vitest'
import { startRetention, type RetainedChannel, type RetentionTask } from '../../engine/retention.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { openPostgresStore, type PostgresMessageStore } from '../../shared/store/index.ts'
import { until } from '../_setup.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

const DAY = 86_400_000
let dbs = 0
const pg = useEmbeddedPostgres()

const closers: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {})
})

/** An engine of the cluster: its store, and its retention task over `channels` (its own config) at ten days from now. */
async function engine(url: string, channels: string[]): Promise<{ store: PostgresMessageStore; retention: RetentionTask }> {
  const store = await openPostgresStore({ url, leaseMs: 3_000 })
  closers.push(() => store.close())
  const retained: RetainedChannel[] = channels.map((name) => ({ name, retention: { maxAgeDays: 1 } }))
  const retention = startRetention(store, retained, { log: silentLogger, now: () => Date.now() + 10 * DAY, intervalMs: 50 })
  closers.push(() => retention.stop())
  return { store, retention }
}

/** A message of `channel`, delivered now (past its retention ten days later). */
async function delivered(store: PostgresMessageStore, channel: string): Promise<void> {
  const { id } = await store.enqueue(channel, { body: channel })
  const [m] = await store.claim(channel, 1)
  expect(m?.id).toBe(id)
  await store.complete(id, 'delivered')
}

const count = async (store: PostgresMessageStore, channel: string) => (await store.stats(channel)).delivered

describe('retention on a cluster (two engines, one PostgreSQL store)', () => {
  it('purges the finished messages of every engine\'s channels, also those only another engine has, each channel by one engine', async () => {
    const url = await pg.server.createDatabase(`retention_${++dbs}`)
    const a = await engine(url, ['only-a', 'shared'])
    const writer = await openPostgresStore({ url, owner: false })
    closers.push(() => writer.close())
    for (const channel of ['only-a', 'shared', 'only-b']) await delivered(a.store, channel)
    await until(async () => (await count(writer, 'only-a')) === 0 && (await count(writer, 'shared')) === 0, 10_000, 'engine a purging its channels')
    // Engine b starts once engine a has run its retention (and leads it): b's own channel is purged too.
    const b = await engine(url, ['only-b', 'shared'])
    await until(async () => (await count(writer, 'only-b')) === 0, 10_000, 'the channel only engine b has purged')
    const leaders = await writer.pool.query<{ name: string; engine_id: string }>(`SELECT name, engine_id FROM weir_leaders WHERE name LIKE 'retention%' ORDER BY name`)
    expect(leaders).toEqual([
      { name: 'retention:only-a', engine_id: a.store.engineId },
      { name: 'retention:only-b', engine_id: b.store.engineId },
      { name: 'retention:shared', engine_id: a.store.engineId },
    ])
  }, 60_000)

  it('when the engine leading a channel\'s retention stops, another engine with that channel takes it over', async () => {
    const url = await pg.server.createDatabase(`retention_${++dbs}`)
    const a = await engine(url, ['shared'])
    await delivered(a.store, 'shared')
    await until(async () => (await count(a.store, 'shared')) === 0, 10_000, 'engine a purging')
    const b = await engine(url, ['shared'])
    await a.retention.stop()
    await a.store.close()
    await delivered(b.store, 'shared')
    await until(async () => (await count(b.store, 'shared')) === 0, 10_000, 'engine b taking the channel over')
    const leaders = await b.store.pool.query<{ name: string; engine_id: string }>(`SELECT name, engine_id FROM weir_leaders WHERE name LIKE 'retention%'`)
    expect(leaders).toEqual([{ name: 'retention:shared', engine_id: b.store.engineId }])
  }, 60_000)
})
