import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runCli } from '../_cli.ts'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import { openPostgresStore, openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { scrubShown, shownMessage } from '../../engine/message-view.ts'

// Found by walkthroughs of `weir messages` and `weir cluster` on both stores.

const BIN = fileURLToPath(new URL('../../bin/weir.js', import.meta.url))

/** Received times as a cluster's engines give them: equal ones, and later messages stored before earlier ones. */
const TIMES = [5000, 5000, 3000, 7000, 5000, 1000, 7000, 2000, 2000, 9000, 4000, 5000, 6000, 1000, 8000, 3000, 5000, 5000, 0, 7000, 2000, 6000, 5000]

/** Enqueues one message per time of TIMES (each `now()` of the store gives the next) and returns the ids. */
async function fill(store: MessageStore, clock: { i: number }): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < TIMES.length; i++) {
    clock.i = i
    ids.push((await store.enqueue('c', { body: i })).id)
  }
  return ids
}

/** Follows the hints of `weir messages list --limit 4` from the first page to the last; every id listed, in order. */
async function pageThrough(args: string[]): Promise<{ ids: string[]; received: string[] }> {
  const ids: string[] = []
  const received: string[] = []
  let cursor: string[] = []
  for (let page = 0; page < 50; page++) {
    const r = await runCli(['messages', 'list', '--limit', '4', '--json', ...args, ...cursor])
    expect(r.code).toBe(0)
    const rows = JSON.parse(r.out) as Array<{ id: string; receivedAt: string }>
    ids.push(...rows.map((m) => m.id))
    received.push(...rows.map((m) => m.receivedAt))
    const next = /see older ones.* with (--\S+) (\S+)$/m.exec(r.err)
    if (!next) return { ids, received }
    cursor = [next[1]!, next[2]!]
  }
  throw new Error('no last page')
}

let server: EmbeddedPostgresServer
let pgUrl = ''
let dir: string
let dataDir: string
const clock = { i: 0 }
let sqliteIds: string[] = []
let pgIds: string[] = []
const now = () => TIMES[clock.i]! + 1_700_000_000_000

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weir-walk-'))
  dataDir = join(dir, 'data')
  const sqlite = await openSqliteStore({ dataDir, now })
  sqliteIds = await fill(sqlite, clock)
  await sqlite.enqueue('d', { body: 'secret', attributes: { 'x-request-id': 'Bearer OPAQUEACCESSTOKEN-ABC123xyz' } })
  await sqlite.close()
  chmodSync(dataDir, 0o700)
  server = await startEmbeddedPostgres({ volatile: true })
  pgUrl = await server.createDatabase('walk')
  const pg = await openPostgresStore({ url: pgUrl, now })
  pgIds = await fill(pg, clock)
  await pg.close()
}, 90_000)
afterAll(async () => {
  await server?.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** The order the list shows: newest stored first, whatever the receipt times. */
const expectedOrder = (ids: string[]) => [...ids].reverse()

describe('weir messages list: following its hints page after page', () => {
  it('shows every message once, newest stored first (SQLite)', async () => {
    const { ids } = await pageThrough(['--data-dir', dataDir, '--channel', 'c', '--status', 'queued'])
    expect(ids).toEqual(expectedOrder(sqliteIds))
  })

  it('shows every message once, newest stored first (PostgreSQL)', async () => {
    const { ids } = await pageThrough(['--store', pgUrl, '--data-dir', dataDir])
    expect(ids).toEqual(expectedOrder(pgIds))
  })

  it('--until stays a time filter: received before it', async () => {
    const r = await runCli(['messages', 'list', '--json', '--store', pgUrl, '--data-dir', dataDir, '--until', new Date(now() - TIMES[clock.i]! + 2000).toISOString()])
    expect(r.code).toBe(0)
    expect((JSON.parse(r.out) as unknown[]).length).toBe(TIMES.filter((t) => t < 2000).length)
  })

  it('a cursor id the store does not hold is one line, exit 1', async () => {
    const r = await runCli(['messages', 'list', '--data-dir', dataDir, '--older-than', 'NOSUCHID'])
    expect(r.code).toBe(1)
    expect(r.err.trim().split('\n')).toHaveLength(1)
    expect(r.err).toContain('NOSUCHID')
  })
})

describe('weir messages show on the PostgreSQL store', () => {
  it('names the store it looked in for an unknown id, never its password', async () => {
    const u = new URL(pgUrl)
    const password = decodeURIComponent(u.password)
    for (const sub of ['show', 'resubmit']) {
      const r = await runCli(['messages', sub, 'NOSUCHMESSAGE', '--store', pgUrl, '--data-dir', dataDir])
      expect(r.code).toBe(1)
      expect(r.err.trim()).toBe(`no message NOSUCHMESSAGE in the PostgreSQL store at 127.0.0.1:${u.port}/walk`)
      expect(r.err).not.toContain(password)
    }
  })

  it('with no password anywhere, says so plainly', async () => {
    const u = new URL(pgUrl)
    u.password = ''
    const env = { ...process.env }
    delete env.PGPASSWORD
    const saved = process.env.PGPASSWORD
    delete process.env.PGPASSWORD
    try {
      const r = await runCli(['messages', 'show', 'X', '--store', u.href, '--data-dir', dataDir], env)
      expect(r.code).toBe(1)
      expect(r.err.trim()).toBe(`weir messages: PostgreSQL store at 127.0.0.1:${u.port}/walk: no password given for user ${u.username} (the password comes from the URL, PGPASSWORD or --store-password-file)`)
    } finally {
      if (saved !== undefined) process.env.PGPASSWORD = saved
    }
  })
})

describe('a --store URL that is no URL', () => {
  it.each([
    ['messages', ['messages', 'list', '--data-dir', 'DATA']],
    ['cluster', ['cluster', 'status']],
    ['run', ['run', fileURLToPath(new URL('../../channels/adt-mllp-to-fhir.json', import.meta.url)), '--data-dir', 'RUN']],
  ])('weir %s: bad usage, one line naming --store, no password', async (_, args) => {
    const r = await runCli([...args.map((a) => (a === 'DATA' ? dataDir : a === 'RUN' ? join(dir, 'run') : a)), '--store', 'postgres://weir:pw5ecret@127.0.0.1:notaport/weir'])
    expect(r.code).toBe(2)
    expect(r.err.trim().split('\n')).toHaveLength(1)
    expect(r.err).toContain('--store')
    expect(r.err).not.toContain('pw5ecret')
  })

  it('from $WEIR_STORE: names it', async () => {
    const r = await runCli(['messages', 'list', '--data-dir', dataDir], { ...process.env, WEIR_STORE: 'postgres://weir:p/w5ecret@127.0.0.1:99999/weir' })
    expect(r.code).toBe(2)
    expect(r.err).toContain('WEIR_STORE')
    expect(r.err).not.toContain('w5ecret')
  })
})

describe('weir messages show: redacted as the dashboard shows it', () => {
  it('an opaque token after an auth scheme, in an attribute', async () => {
    const [m] = await (async () => {
      const s = await openSqliteStore({ dataDir, create: false })
      try {
        return await s.list({ channel: 'd' })
      } finally {
        await s.close()
      }
    })()
    const r = await runCli(['messages', 'show', m!.id, '--data-dir', dataDir])
    expect(r.code).toBe(0)
    expect(r.out).toContain('"x-request-id":"Bearer [REDACTED]"')
    expect(r.out).not.toContain('OPAQUEACCESSTOKEN')
    expect(shownMessage({ message: m!, deliveries: [], attempts: [] }).attributes).toEqual({ 'x-request-id': 'Bearer [REDACTED]' })
  })

  it.each([
    ['Bearer OPAQUEACCESSTOKEN-ABC123xyz', 'Bearer [REDACTED]'],
    ['authorization failed: DPoP abcdefghij0123456789 was refused', 'authorization failed: DPoP [REDACTED] was refused'],
    ['basic dXNlcjpwYXNzd29yZA==', 'basic [REDACTED]'],
    // Words, not credentials: kept.
    ['Bearer token expired', 'Bearer token expired'],
    ['Basic authentication failed', 'Basic authentication failed'],
    ['Bearer realm="weir", error="invalid_token"', 'Bearer realm="weir", error="invalid_token"'],
    ['Bearer [REDACTED]', 'Bearer [REDACTED]'],
  ])('scrubShown(%j) is %j', (text, shown) => {
    expect(scrubShown(text)).toBe(shown)
  })
})

describe('a closed stdout', () => {
  it('ends the command quietly, status 0 (weir --help | head -0)', async () => {
    const child = spawn(process.execPath, [BIN, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.destroy()
    let err = ''
    child.stderr.on('data', (d) => { err += String(d) })
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    expect(err).toBe('')
    expect(code).toBe(0)
  })
})
