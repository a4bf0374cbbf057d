import { describe, expect, it } from 'vitest'
import type { MessageStore } from '../../shared/store/index.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'
import { fromPostgresSchema, fromSqliteSchema } from './_migrated.ts'

/**
 * The store opened on the old database migrated: the message an earlier weir left queued (its
 * filters' retry was never stored) is read and claimed without one, and takes one now.
 */
async function expectMigrated(store: MessageStore): Promise<void> {
  expect((await store.list({ channel: 'c' })).map((m) => [m.id, m.status, m.filterRetry])).toEqual([['old', 'queued', undefined]])
  const [claimed] = await store.claim('c', 1)
  expect([claimed!.id, claimed!.body, claimed!.filterRetry]).toEqual(['old', 1, undefined])
  await store.recordFilterRetry('old', { charged: 1, elapsedMs: 1000, nextAttemptAt: 5000 })
  expect((await store.get('old'))!.message).toMatchObject({ id: 'old', status: 'in-flight', body: 1, filterRetry: { charged: 1, elapsedMs: 1000, nextAttemptAt: 5000 } })
}

describe('the retry of a message\'s filters, on a store migrated from the schema before it', () => {
  it('SQLite: schema 10 → 11', async () => {
    await fromSqliteSchema(10, (db) => db.exec(`
      INSERT INTO message_content (seq, id, channel, body, content_type, attributes, received_at) VALUES (1, 'old', 'c', '1', 'application/json', '{}', 1);
      INSERT INTO message_status (seq, channel, status, updated_at) VALUES (1, 'c', 'queued', 2000);`), expectMigrated)
  })

  describe('PostgreSQL', () => {
    const pg = useEmbeddedPostgres()

    it('schema 12 → 13', async () => {
      await fromPostgresSchema(pg, 'filter_retry_migration', 12, async (tx) => {
        await tx.query(`INSERT INTO weir_messages (seq, id, channel, status, content_type, attributes, received_at, updated_at)
          VALUES (1, 'old', 'c', 'queued', 'application/json', '{}', 1, 2000)`)
        await tx.query(`INSERT INTO weir_message_bodies (seq, body) VALUES (1, '1')`)
      }, expectMigrated)
    })
  })
})
