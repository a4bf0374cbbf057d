// An embedded PostgreSQL for the suites of the PostgreSQL store and the cluster: no tests here.
import { afterAll, afterEach, beforeAll } from 'vitest'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../engine/embedded/postgres.ts'
import type { RefreshTokenStore } from '../shared/oauth/index.ts'
import { openDb, type Db } from '../shared/store/postgres/db.ts'
import { migrate } from '../shared/store/postgres/migrations.ts'
import { createPostgresTokenState } from '../shared/store/postgres/oauth-state.ts'

/** What `useEmbeddedPostgres` gives a suite: the server, started before its tests. */
export interface EmbeddedPostgresFixture { server: EmbeddedPostgresServer }

/** An embedded PostgreSQL (volatile: a fresh data directory) for the suite it is called in: started before its tests, stopped after. */
export function useEmbeddedPostgres(): EmbeddedPostgresFixture {
  const f = {} as EmbeddedPostgresFixture
  beforeAll(async () => { f.server = await startEmbeddedPostgres({ volatile: true }) }, 60_000)
  afterAll(async () => { await f.server?.stop() })
  return f
}

/**
 * A maker of token-state clusters for a suite: each call opens a fresh database named `<prefix>_<n>`
 * and gives `n` token states over it, each its own pool, each speaking for engine `engine-<i>`,
 * and a pool of the test's own on that database.
 * The pools are closed after each test.
 */
export function useTokenStateClusters(pg: EmbeddedPostgresFixture, prefix: string, secretKey: string): (n: number) => Promise<{ states: RefreshTokenStore[]; db: Db }> {
  let databases = 0
  const pools: Db[] = []
  afterEach(async () => { await Promise.all(pools.splice(0).map((p) => p.end())) })
  return async (n) => {
    const url = await pg.server.createDatabase(`${prefix}_${++databases}`)
    const db = openDb(url, { max: 2 })
    pools.push(db)
    await migrate(db, { allowMigration: true })
    const states = Array.from({ length: n }, (_, i) => {
      const own = openDb(url, { max: 3 })
      pools.push(own)
      return createPostgresTokenState({ db: own, secretKey, leaseMs: 3000, engineId: () => `engine-${i + 1}` })
    })
    return { states, db }
  }
}
