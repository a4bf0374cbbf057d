import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import postgres from 'postgres'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import { openPostgresStore, type PostgresMessageStore } from '../../shared/store/index.ts'
import { storeConformance } from './conformance.ts'

let server: EmbeddedPostgresServer
let dbs = 0
let url = ''
beforeAll(async () => { server = await startEmbeddedPostgres({ volatile: true }) }, 60_000)
afterAll(async () => { await server?.stop() })

/** Expires an engine's lease at once, as if it had stopped heartbeating a lease ago. */
async function expire(engineId: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  await sql`UPDATE weir_engines SET lease_until = clock_timestamp() - interval '1 second' WHERE id = ${engineId}`
  await sql.end()
}

storeConformance({
  name: 'postgres',
  fresh: async () => { url = await server.createDatabase(`conf_${++dbs}`) },
  open: (o) => openPostgresStore({ url, ...o }),
  crash: async (s) => {
    const store = s as PostgresMessageStore
    const id = store.engineId!
    await store.abandon()
    await expire(id)
  },
  cleanup: async () => {},
})

describe('openPostgresStore', () => {
  it('groups a burst of enqueues into one commit, resolving all after it', async () => {
    url = await server.createDatabase(`burst_${++dbs}`)
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
})
