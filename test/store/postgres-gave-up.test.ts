import { describe, expect, it } from 'vitest'
import { openPostgresStore, type StoreFailure } from '../../shared/store/index.ts'
import { openDb } from '../../shared/store/postgres/db.ts'
import { INTERRUPTED_ERROR, MAX_INTERRUPTIONS } from '../../shared/store/types.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { channel, destination, feedSource, startApi, tempDir, until } from '../runtime/_helpers.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

const pg = useEmbeddedPostgres()

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('PostgreSQL: a message the sweep gives up on (under way at every unclean stop)', () => {
  it('is told to the sweeping engine\'s channel once, which counts it as an error', async () => {
    const url = await pg.server.createDatabase('gave_up')
    const live = await openPostgresStore({ url, leaseMs: 300 })
    const dir = await tempDir()
    const api = await startApi()
    try {
      const { id } = await live.enqueue('test', { body: { i: 'suspect' } })
      await sleep(350) // a joining engine sweeps only once it has held its lease for a lease
      for (let i = 0; i < MAX_INTERRUPTIONS; i++) {
        const dying = await openPostgresStore({ url, leaseMs: 300 })
        expect((await dying.claim('test', 1)).map((m) => m.id)).toEqual([id])
        const engine = dying.engineId!
        await dying.abandon()
        const db = openDb(url, { max: 1 })
        await db.sql`UPDATE weir_engines SET lease_until = clock_timestamp() - interval '1 second' WHERE id = ${engine}`
        await db.end()
        await live.heartbeat()
        await live.heartbeat()
      }
      expect((await live.get(id))!.message).toMatchObject({ status: 'error', error: INTERRUPTED_ERROR })

      const src = feedSource()
      const h = await startChannel(channel({ dir: dir.path, source: src.definition, destinations: [destination('api', api.url)] }), { store: live, log: silentLogger, dataDir: dir.path })
      try {
        await until(() => h.counters().errors === 1)
        // Told once: a later listener of the channel hears nothing more.
        const later: StoreFailure[] = []
        live.watchFailures!('test', (f) => later.push(f))()
        expect(later).toEqual([])
      } finally {
        await h.stop()
      }
    } finally {
      await api.close()
      await live.close()
      await dir.remove()
    }
  }, 60_000)
})
