import Database from 'better-sqlite3'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openPostgresStore, openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { openDb } from '../../shared/store/postgres/db.ts'
import { migrations as pgMigrations } from '../../shared/store/postgres/migrations.ts'
import { migrations as sqliteMigrations } from '../../shared/store/sqlite/migrations.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

/** A delivery in error after two attempts, as a store of the schema before the retry budget baseline kept it. */
const OLD_DELIVERY = { destination: 'api', part: 0, status: 'error', attempts: 2, firstAttemptAt: 1000, lastAttemptAt: 2000, lastError: 'http 503', responseStatus: 503 }

/** The store opened on the old database migrated: the old delivery has no baseline, until a resubmission gives it one. */
async function expectMigrated(store: MessageStore): Promise<void> {
  expect((await store.get('old'))!.deliveries).toEqual([OLD_DELIVERY])
  expect(await store.resubmit({ ids: ['old'] })).toEqual(['old'])
  expect((await store.get('old'))!.deliveries).toEqual([{ ...OLD_DELIVERY, status: 'queued', budgetAttempts: 2 }])
}

describe('the retry budget baseline of a resubmission, on a store migrated from the schema before it', () => {
  it('SQLite: schema 8 → 9', async () => {
    const dir = await tempDir('weir-budget-migration-')
    try {
      const db = new Database(join(dir.path, 'weir.db'))
      for (const m of sqliteMigrations.slice(0, 8)) m(db)
      db.pragma('user_version = 8')
      db.exec(`INSERT INTO message_content (seq, id, channel, body, content_type, attributes, received_at) VALUES (1, 'old', 'c', '1', 'application/json', '{}', 1);
        INSERT INTO message_status (seq, channel, status, updated_at, error) VALUES (1, 'c', 'error', 2000, 'api: gave up');
        INSERT INTO deliveries (message_id, destination, part, status, attempts, first_attempt_at, last_attempt_at, last_error, response_status)
          VALUES ('old', 'api', 0, 'error', 2, 1000, 2000, 'http 503', 503);`)
      db.close()
      const store = openSqliteStore({ dataDir: dir.path })
      try {
        await expectMigrated(store)
      } finally {
        await store.close()
      }
      const after = new Database(join(dir.path, 'weir.db'), { readonly: true })
      expect(after.pragma('user_version', { simple: true })).toBe(sqliteMigrations.length)
      after.close()
    } finally {
      await dir.remove()
    }
  })

  describe('PostgreSQL', () => {
    const pg = useEmbeddedPostgres()

    it('schema 9 → 10', async () => {
      const url = await pg.server.createDatabase('budget_migration')
      const db = openDb(url, { max: 1 })
      try {
        await db.transaction(async (tx) => {
          await tx.query('CREATE TABLE weir_schema (version integer NOT NULL)')
          for (const m of pgMigrations.slice(0, 9)) await tx.query(m)
          await tx.query('INSERT INTO weir_schema (version) VALUES (9)')
          await tx.query(`INSERT INTO weir_messages (seq, id, channel, status, content_type, attributes, received_at, updated_at, error)
            VALUES (1, 'old', 'c', 'error', 'application/json', '{}', 1, 2000, 'api: gave up')`)
          await tx.query(`INSERT INTO weir_message_bodies (seq, body) VALUES (1, '1')`)
          await tx.query(`INSERT INTO weir_deliveries (message_id, destination, part, status, attempts, first_attempt_at, last_attempt_at, last_error, response_status)
            VALUES ('old', 'api', 0, 'error', 2, 1000, 2000, 'http 503', 503)`)
        })
        const store = await openPostgresStore({ url })
        try {
          await expectMigrated(store)
        } finally {
          await store.close()
        }
        expect(await db.query('SELECT version FROM weir_schema')).toEqual([{ version: pgMigrations.length }])
      } finally {
        await db.end()
      }
    })
  })
})
