import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { MessageStore } from '../../shared/store/index.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'
import { fromPostgresSchema, fromSqliteSchema } from './_migrated.ts'

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
    await fromSqliteSchema(9, (db) => {
      const insert = db.prepare('INSERT INTO audit_log (at, actor, action, target, count) VALUES (?, ?, ?, ?, 1)')
      for (const [at, action, target] of OLD_ENTRIES) insert.run(at, 'cli:ops', action, target)
    }, expectWithheld, async (dir) => {
      const file = await readFile(join(dir, 'weir.db'))
      expect(file.includes('MRN-7731')).toBe(false)
    })
  })

  describe('PostgreSQL', () => {
    const pg = useEmbeddedPostgres()

    it('schema 11 → 12', async () => {
      await fromPostgresSchema(pg, 'audit_migration', 11, async (tx) => {
        for (const [at, action, target] of OLD_ENTRIES) {
          await tx.query('INSERT INTO weir_audit_log (at, actor, action, target, count) VALUES ($1, $2, $3, $4, 1)', [at, 'cli:ops', action, target])
        }
      }, expectWithheld)
    })
  })
})
