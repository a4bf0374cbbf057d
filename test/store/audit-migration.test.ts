import Database from 'better-sqlite3'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openPostgresStore, openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { openDb } from '../../shared/store/postgres/db.ts'
import { migrations as pgMigrations } from '../../shared/store/postgres/migrations.ts'
import { migrations as sqliteMigrations } from '../../shared/store/sqlite/migrations.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

/** Audit entries as an earlier weir wrote them: a resubmit by key with the key's value, and others that hold no value. */
const OLD_ENTRIES: Array<[at: number, action: string, target: string]> = [
  [1, 'resubmit', 'orders: status error, mrn=MRN-7731, X'],
  [2, 'resubmit', 'orders: received since 2026-11-01T00:00:00.000Z, order_no=A=B'],
  [3, 'resubmit', 'orders: status error, mrn=(value withheld); 01JABC'],
  [4, 'resubmit', '01JABC 01JDEF'],
  [5, 'pause', 'orders'],
  [6, 'purge', 'orders: finished before 2026-11-01T00:00:00.000Z'],
]

/** What the migrated store's audit log shows: each value withheld, everything else as it was (newest first). */
async function expectWithheld(store: MessageStore): Promise<void> {
  expect((await store.auditLog()).map((e) => [e.at, e.action, e.target])).toEqual([
    [6, 'purge', 'orders: finished before 2026-11-01T00:00:00.000Z'],
    [5, 'pause', 'orders'],
    [4, 'resubmit', '01JABC 01JDEF'],
    [3, 'resubmit', 'orders: status error, mrn=(value withheld); 01JABC'],
    [2, 'resubmit', 'orders: received since 2026-11-01T00:00:00.000Z, order_no=(value withheld)'],
    [1, 'resubmit', 'orders: status error, mrn=(value withheld)'],
  ])
}

describe('audit entries an earlier weir wrote with a search key\'s value get it withheld by the migration', () => {
  it('SQLite: schema 9 → 10; the value is not left in the database file either', async () => {
    const dir = await tempDir('weir-audit-migration-')
    try {
      const db = new Database(join(dir.path, 'weir.db'))
      for (const m of sqliteMigrations.slice(0, 9)) m(db)
      db.pragma('user_version = 9')
      const insert = db.prepare('INSERT INTO audit_log (at, actor, action, target, count) VALUES (?, ?, ?, ?, 1)')
      for (const [at, action, target] of OLD_ENTRIES) insert.run(at, 'cli:ops', action, target)
      db.close()
      const store = openSqliteStore({ dataDir: dir.path })
      try {
        await expectWithheld(store)
      } finally {
        await store.close()
      }
      const file = await readFile(join(dir.path, 'weir.db'))
      expect(file.includes('MRN-7731')).toBe(false)
    } finally {
      await dir.remove()
    }
  })

  describe('PostgreSQL', () => {
    const pg = useEmbeddedPostgres()

    it('schema 11 → 12', async () => {
      const url = await pg.server.createDatabase('audit_migration')
      const db = openDb(url, { max: 1 })
      try {
        await db.transaction(async (tx) => {
          await tx.query('CREATE TABLE weir_schema (version integer NOT NULL)')
          for (const m of pgMigrations.slice(0, 11)) await tx.query(m)
          await tx.query('INSERT INTO weir_schema (version) VALUES (11)')
          for (const [at, action, target] of OLD_ENTRIES) {
            await tx.query('INSERT INTO weir_audit_log (at, actor, action, target, count) VALUES ($1, $2, $3, $4, 1)', [at, 'cli:ops', action, target])
          }
        })
        const store = await openPostgresStore({ url })
        try {
          await expectWithheld(store)
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
