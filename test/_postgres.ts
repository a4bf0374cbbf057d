// An embedded PostgreSQL for the suites of the PostgreSQL store and the cluster: no tests here.
import { afterAll, beforeAll } from 'vitest'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../engine/embedded/postgres.ts'

/** What `useEmbeddedPostgres` gives a suite: the server, started before its tests. */
export interface EmbeddedPostgresFixture { server: EmbeddedPostgresServer }

/** An embedded PostgreSQL (volatile: a fresh data directory) for the suite it is called in: started before its tests, stopped after. */
export function useEmbeddedPostgres(): EmbeddedPostgresFixture {
  const f = {} as EmbeddedPostgresFixture
  beforeAll(async () => { f.server = await startEmbeddedPostgres({ volatile: true }) }, 60_000)
  afterAll(async () => { await f.server?.stop() })
  return f
}
