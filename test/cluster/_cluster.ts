import type { ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { afterEach } from 'vitest'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import type { PostgresMessageStore } from '../../shared/store/index.ts'
import { openDb, type Db } from '../../shared/store/postgres/db.ts'
import { spawnWeirRun, startWeirRun, tempDir } from '../runtime/_helpers.ts'

const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')

export type Engine = Awaited<ReturnType<typeof startWeirRun>> & { index: number }

/**
 * A cluster for one test: an embedded PostgreSQL (one per test file, a database per test) and
 * `weir run` children sharing it, each with its own data directory and listener.
 */
export function clusterFixture() {
  let server: EmbeddedPostgresServer
  let databases = 0
  return {
    async startServer() { server = await startEmbeddedPostgres({ volatile: true }) },
    async stopServer() { await server?.stop() },
    get server() { return server },
    async create(channel: (portFile: string) => Record<string, unknown>, options: { leaseMs?: number } = {}) {
      const url = await server.createDatabase(`cluster_${++databases}`)
      const dir = await tempDir('weir-cluster-')
      const children = new Set<ChildProcess>()
      const db = openDb(url, { max: 2 })
      const sql = db.sql
      const engines: Engine[] = []
      return {
        url, dir, sql, engines,
        /** Starts engine `i` (its own channel file, data directory and port file); the channel's name is the same on every engine. */
        async start(i: number, storeUrl = url): Promise<Engine> {
          const file = join(dir.path, `engine-${i}.json`)
          await writeFile(file, JSON.stringify(channel(`engine-${i}.port`)))
          const e = { ...(await startWeirRun(file, join(dir.path, `e${i}`), `../engine-${i}.port`, children, ['--store', storeUrl, '--lease-ms', String(options.leaseMs ?? 3000)])), index: i }
          engines[i] = e
          return e
        },
        /** Starts engine `i` for a channel whose source writes no port file (a poller): waits until it has joined the cluster. */
        async startQuiet(i: number): Promise<Engine> {
          const file = join(dir.path, `engine-${i}.json`)
          await writeFile(file, JSON.stringify(channel(`engine-${i}.port`)))
          const run = spawnWeirRun(file, join(dir.path, `e${i}`, 'data'), children, ['--store', url, '--lease-ms', String(options.leaseMs ?? 3000)])
          await run.until(() => sql`SELECT 1 FROM weir_engines WHERE pid = ${run.child.pid!}`.then((r) => r.length === 1, () => false))
          const e = { child: run.child, port: 0, exited: run.exited, output: run.output, index: i }
          engines[i] = e
          return e
        },
        /** The cluster id of an engine's process, from the engines table. */
        async engineId(e: Engine): Promise<string | undefined> {
          const [row] = await sql`SELECT id FROM weir_engines WHERE pid = ${e.child.pid!}`
          return row?.id as string | undefined
        },
        async close() {
          for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
          await db.end()
          await dir.remove()
        },
      }
    },
  }
}

/**
 * What a test of engines in this process opens on `server()` (databases named `<prefix>_<n>` and
 * their pools, stores, `weir run` children, temporary directories): pushed here by the test, all
 * closed after it.
 */
export function useClusterResources(server: () => EmbeddedPostgresServer, prefix: string) {
  let databases = 0
  const pools: Db[] = []
  const stores: PostgresMessageStore[] = []
  const children = new Set<ChildProcess>()
  const dirs: Array<{ remove(): Promise<void> }> = []
  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    children.clear()
    await Promise.all(stores.splice(0).map((s) => s.close().catch(() => s.abandon())))
    await Promise.all(pools.splice(0).map((p) => p.end()))
    await Promise.all(dirs.splice(0).map((d) => d.remove()))
  })
  /** A fresh database, and a pool of two connections to it. */
  const database = async (): Promise<{ url: string; db: Db }> => {
    const url = await server().createDatabase(`${prefix}_${++databases}`)
    const db = openDb(url, { max: 2 })
    pools.push(db)
    return { url, db }
  }
  return { pools, stores, children, dirs, database }
}

/** A channel of the test HTTP source and POST destination, whose source writes its port to `portFile`. */
export function testChannel(sinkUrl: string, options: Record<string, unknown>, portFile: string): Record<string, unknown> {
  return {
    name: 'clustered',
    source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile } },
    destinations: [{ name: 'api', type: join(fixtures, 'test-post-destination.ts'), config: { url: sinkUrl, timeoutMs: 30_000 }, retry: { maxAttempts: 50, initialDelayMs: 5, maxDelayMs: 40 } }],
    options,
  }
}
