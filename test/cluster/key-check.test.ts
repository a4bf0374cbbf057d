import { randomBytes } from 'node:crypto'
import type { ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import { createTokenProvider, importRefreshToken, TokenCache } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { keyIdOf } from '../../shared/store/keyring.ts'
import { openDb, type Db } from '../../shared/store/postgres/db.ts'
import { migrate } from '../../shared/store/postgres/migrations.ts'
import { createPostgresTokenState, verifyClusterKey, wrongClusterKey } from '../../shared/store/postgres/oauth-state.ts'
import { spawnWeirRun, startWeirRun, tempDir } from '../runtime/_helpers.ts'
import { testChannel } from './_cluster.ts'

// Passphrases and keys are random and never printed: assertions compare them by inclusion only.
const RIGHT = `right ${randomBytes(12).toString('base64url')}`
const WRONG = `wrong ${randomBytes(12).toString('base64url')}`
let pg: EmbeddedPostgresServer
let databases = 0
const pools: Db[] = []
const children = new Set<ChildProcess>()
const saved = { ...process.env }

beforeAll(async () => { pg = await startEmbeddedPostgres({ volatile: true }) }, 60_000)
afterEach(async () => {
  process.env = { ...saved }
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
  await Promise.all(pools.splice(0).map((p) => p.end()))
})
afterAll(async () => { await pg?.stop() })

async function database(): Promise<{ url: string; db: Db }> {
  const url = await pg.createDatabase(`keycheck_${++databases}`)
  const db = openDb(url, { max: 2 })
  pools.push(db)
  await migrate(db, { allowMigration: true })
  return { url, db }
}

/** A database as an older weir left it: the salt, an OAuth entry sealed with `secretKey`, no key check. */
async function olderDatabase(secretKey: string | undefined): Promise<Db> {
  const { db } = await database()
  if (secretKey) await importRefreshToken(createPostgresTokenState({ db, secretKey }), 'crm', 'refresh-token-of-older-weir')
  else await db.sql`INSERT INTO weir_oauth_salt (salt) VALUES (${randomBytes(16).toString('base64')})`
  await db.sql`UPDATE weir_oauth_salt SET key_check = NULL`
  return db
}

const keyCheck = async (db: Db) => (await db.query<{ key_check: string | null }>('SELECT key_check FROM weir_oauth_salt'))[0]?.key_check ?? null

describe('cluster key check (WEIR_SECRET_KEY)', () => {
  it('an engine whose WEIR_SECRET_KEY is not the cluster\'s exits 1 with one line, before it claims anything', async () => {
    const { url, db } = await database()
    const dir = await tempDir('weir-keycheck-')
    try {
      const file = join(dir.path, 'channel.json')
      await writeFile(file, JSON.stringify(testChannel('http://127.0.0.1:9/none', {}, 'a.port')))
      process.env.WEIR_SECRET_KEY = RIGHT
      const a = await startWeirRun(file, join(dir.path, 'a'), '../a.port', children, ['--store', url])
      const check = await keyCheck(db)
      expect(check).toMatch(/^v1:/)
      await db.sql`INSERT INTO weir_messages (id, channel, status, content_type, attributes, received_at, updated_at) VALUES ('m1', 'paused-elsewhere', 'queued', 'text/plain', '{}', 0, 0)`
      process.env.WEIR_SECRET_KEY = WRONG
      const b = spawnWeirRun(file, join(dir.path, 'b', 'data'), children, ['--store', url])
      const exit = await b.exited
      // The admin server's warning (A holds the default address) is a JSON log line; the refusal is the one plain line.
      const lines = b.output().split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'))
      expect({ code: exit.code, lines: lines.length }, lines.map((l) => l.slice(0, 200)).join("\n")).toEqual({ code: 1, lines: 1 })
      expect(lines[0]).toBe(`weir run: ${wrongClusterKey}`)
      expect(b.output()).not.toMatch(/\n\s+at /)
      expect(b.output().includes(WRONG) || b.output().includes(RIGHT)).toBe(false)
      expect(await db.sql`SELECT status, owner FROM weir_messages WHERE id = 'm1'`).toEqual([{ status: 'queued', owner: null }])
      expect(await keyCheck(db)).toBe(check)
      expect(a.child.exitCode).toBeNull()
    } finally {
      await dir.remove()
    }
  }, 60_000)

  it('a database of an older weir (salt, no key check): refuses a key that cannot open its OAuth state, then writes the check for the right one', async () => {
    const db = await olderDatabase(RIGHT)
    await expect(verifyClusterKey(db, WRONG)).rejects.toMatchObject({ code: 'ERR_STORE', message: wrongClusterKey })
    expect(await keyCheck(db)).toBeNull()
    await verifyClusterKey(db, RIGHT)
    const check = await keyCheck(db)
    expect(check).toMatch(/^v1:/)
    await verifyClusterKey(db, RIGHT)
    await expect(verifyClusterKey(db, WRONG)).rejects.toMatchObject({ code: 'ERR_STORE', message: wrongClusterKey })
    expect(await keyCheck(db)).toBe(check)
  })

  it('a database of an older weir with nothing sealed: the first key writes the check; a sealed message body of another key is refused', async () => {
    const empty = await olderDatabase(undefined)
    await verifyClusterKey(empty, RIGHT)
    await expect(verifyClusterKey(empty, WRONG)).rejects.toMatchObject({ message: wrongClusterKey })
    const withBody = await olderDatabase(undefined)
    const [right, wrong] = [randomBytes(32), randomBytes(32)]
    await withBody.sql`INSERT INTO weir_message_bodies (seq, body) VALUES (1, ${JSON.stringify(`weir:enc:v2:${keyIdOf(right)}:AAAA`)})`
    await expect(verifyClusterKey(withBody, wrong.toString('base64'))).rejects.toMatchObject({ message: wrongClusterKey })
    expect(await keyCheck(withBody)).toBeNull()
    await verifyClusterKey(withBody, right.toString('base64'))
    expect(await keyCheck(withBody)).toMatch(/^v1:/)
  })

  it('an OAuth entry that cannot be decrypted at run time is a retryable failure: the credential reports failing, never fails fast', async () => {
    const { db } = await database()
    await importRefreshToken(createPostgresTokenState({ db, secretKey: RIGHT }), 'crm', 'refresh-token-sealed-with-the-right-key')
    const wrongState = createPostgresTokenState({ db, secretKey: WRONG })
    await expect(wrongState.read('crm')).rejects.toMatchObject({ code: 'ERR_STORE', retryable: true })
    const provider = createTokenProvider('crm', { grant: 'refresh_token', tokenUrl: 'http://127.0.0.1:9/token', clientId: 'c', maxAttempts: 1, clientAuth: { method: 'client_secret_post', secret: new Secret('s') } } as never, { shared: wrongState, cache: new TokenCache() })
    try {
      for (let i = 0; i < 2; i++) await expect(provider.getToken()).rejects.toMatchObject({ code: 'ERR_STORE', retryable: true })
      expect(provider.status!().lastFailure).toMatchObject({ code: 'ERR_STORE' })
    } finally {
      await provider.close()
    }
  })
})
