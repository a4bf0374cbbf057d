// Holding an embedded store's write lock from a test: no tests here.
import { join } from 'node:path'
import Database from 'better-sqlite3'

/**
 * Starts `race` while the test holds the write lock of the SQLite store in `dataDir` for `ms`: its
 * writes wait (up to the store's busy timeout, 5 s) while its reads go on, so operations that check
 * and then write (two confirmations of one resubmit) all check before any of them writes.
 */
export async function writesHeld<T>(dataDir: string, ms: number, race: () => Promise<T>): Promise<T> {
  const db = new Database(join(dataDir, 'weir.db'))
  db.exec('BEGIN IMMEDIATE')
  const raced = race()
  try {
    await new Promise((r) => setTimeout(r, ms))
  } finally {
    db.exec('COMMIT')
    db.close()
  }
  return raced
}
