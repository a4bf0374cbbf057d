import Database from 'better-sqlite3'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openPostgresStore, openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { COUNT_ERRORS } from '../../shared/store/postgres/open.ts'
import { migrations } from '../../shared/store/sqlite/migrations.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

const T0 = Date.UTC(2026, 0, 1)

/** Messages in error on two channels, an hour apart each, and many delivered ones: what an alert check counts among. */
async function fill(store: MessageStore): Promise<void> {
  await Promise.all(Array.from({ length: 400 }, (_, i) => store.enqueue(i % 2 ? 'a' : 'b', { body: i }, i % 4 < 2 ? { error: `failed ${i}` } : {})))
}

/** The SQL of the SQLite store's countErrors, as its writer thread prepares it. */
async function sqliteCountErrors(): Promise<string> {
  const source = await readFile(new URL('../../shared/store/sqlite/thread.js', import.meta.url), 'utf8')
  const sql = /countErrors: db\.prepare\(`([^`]+)`\)/.exec(source)?.[1]
  if (!sql) throw new Error('countErrors query not found in thread.js')
  return sql
}

describe('countErrors (the messages-failing alert) reads the errors of its channel since the window start from an index', () => {
  it('SQLite: EXPLAIN QUERY PLAN searches message_status_errors (channel, updated_at), covering: no other row is read', async () => {
    const dir = await tempDir('weir-count-errors-')
    try {
      let t = T0
      const store = openSqliteStore({ dataDir: dir.path, now: () => (t += 1000) })
      await fill(store)
      expect(await store.countErrors!('a', T0 + 200_000)).toBe(50)
      await store.close()
      const db = new Database(join(dir.path, 'weir.db'), { readonly: true })
      try {
        const plan = db.prepare(`EXPLAIN QUERY PLAN ${await sqliteCountErrors()}`).all('a', T0).map((r) => (r as { detail: string }).detail)
        expect(plan).toEqual(['SEARCH message_status USING COVERING INDEX message_status_errors (channel=? AND updated_at>?)'])
      } finally {
        db.close()
      }
    } finally {
      await dir.remove()
    }
  })

  it('SQLite: a database at schema version 7 (before the index) gets the index', async () => {
    const dir = await tempDir('weir-count-errors-')
    try {
      const db = new Database(join(dir.path, 'weir.db'))
      for (const m of migrations.slice(0, 7)) m(db)
      db.pragma('user_version = 7')
      db.close()
      const store = openSqliteStore({ dataDir: dir.path })
      expect(await store.countErrors!('a', 0)).toBe(0)
      await store.close()
      const after = new Database(join(dir.path, 'weir.db'), { readonly: true })
      expect([after.pragma('user_version', { simple: true }), after.prepare(`SELECT sql FROM sqlite_master WHERE name = 'message_status_errors'`).pluck().get()])
        .toEqual([migrations.length, `CREATE INDEX message_status_errors ON message_status (channel, updated_at) WHERE status = 'error'`])
      after.close()
    } finally {
      await dir.remove()
    }
  })

  describe('PostgreSQL', () => {
    const pg = useEmbeddedPostgres()

    it('EXPLAIN reads weir_messages_errors (channel, updated_at), never the whole channel\'s outcomes', async () => {
      let t = T0
      const store = await openPostgresStore({ url: await pg.server.createDatabase('count_errors'), now: () => (t += 1000) })
      try {
        await fill(store)
        expect(await store.countErrors!('a', T0 + 200_000)).toBe(50)
        await store.pool.query('VACUUM ANALYZE weir_messages')
        // With sequential scans priced out (the table is small), the plan shows the index a large table gets.
        const plan = await store.pool.transaction(async (tx) => {
          await tx.query('SET LOCAL enable_seqscan = off')
          return (await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${COUNT_ERRORS}`, ['a', T0])).map((r) => r['QUERY PLAN']).join('\n')
        })
        expect(plan).toMatch(/Index (Only )?Scan using weir_messages_errors on weir_messages/)
        expect(plan).toContain('Index Cond: ((channel = \'a\'::text) AND (updated_at >= ')
        expect(plan).not.toMatch(/weir_messages_outcome|Seq Scan/)
      } finally {
        await store.close()
      }
    }, 60_000)
  })
})
