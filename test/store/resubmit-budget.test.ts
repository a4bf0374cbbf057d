import { describe, expect, it } from 'vitest'
import type { MessageStore } from '../../shared/store/index.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'
import { fromPostgresSchema, fromSqliteSchema } from './_migrated.ts'

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
    await fromSqliteSchema(8, (db) => db.exec(`INSERT INTO message_content (seq, id, channel, body, content_type, attributes, received_at) VALUES (1, 'old', 'c', '1', 'application/json', '{}', 1);
      INSERT INTO message_status (seq, channel, status, updated_at, error) VALUES (1, 'c', 'error', 2000, 'api: gave up');
      INSERT INTO deliveries (message_id, destination, part, status, attempts, first_attempt_at, last_attempt_at, last_error, response_status)
        VALUES ('old', 'api', 0, 'error', 2, 1000, 2000, 'http 503', 503);`), expectMigrated)
  })

  describe('PostgreSQL', () => {
    const pg = useEmbeddedPostgres()

    it('schema 9 → 10', async () => {
      await fromPostgresSchema(pg, 'budget_migration', 9, async (tx) => {
        await tx.query(`INSERT INTO weir_messages (seq, id, channel, status, content_type, attributes, received_at, updated_at, error)
          VALUES (1, 'old', 'c', 'error', 'application/json', '{}', 1, 2000, 'api: gave up')`)
        await tx.query(`INSERT INTO weir_message_bodies (seq, body) VALUES (1, '1')`)
        await tx.query(`INSERT INTO weir_deliveries (message_id, destination, part, status, attempts, first_attempt_at, last_attempt_at, last_error, response_status)
          VALUES ('old', 'api', 0, 'error', 2, 1000, 2000, 'http 503', 503)`)
      }, expectMigrated)
    })
  })
})
