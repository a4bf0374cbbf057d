import type { Database } from 'better-sqlite3'

/**
 * Schema migrations, applied in order; `PRAGMA user_version` holds how many have run. Append
 * only: never edit a released migration, add the next one.
 */
export const migrations: ReadonlyArray<(db: Database) => void> = [
  // 1: queue + message log, per-destination outcomes, attempt history, component state.
  (db) => db.exec(`
    CREATE TABLE messages (
      seq INTEGER PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      channel TEXT NOT NULL,
      status TEXT NOT NULL,
      body TEXT NOT NULL,
      content_type TEXT NOT NULL,
      attributes TEXT NOT NULL,
      dedupe_key TEXT,
      received_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      error TEXT
    );
    CREATE UNIQUE INDEX messages_dedupe ON messages (channel, dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE INDEX messages_queue ON messages (channel, status, seq);
    CREATE INDEX messages_received ON messages (received_at);
    CREATE TABLE deliveries (
      message_id TEXT NOT NULL,
      destination TEXT NOT NULL,
      part INTEGER NOT NULL,
      status TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      first_attempt_at INTEGER,
      last_attempt_at INTEGER,
      next_attempt_at INTEGER,
      last_error TEXT,
      response_status INTEGER,
      response_excerpt TEXT,
      PRIMARY KEY (message_id, destination, part)
    ) WITHOUT ROWID;
    CREATE TABLE attempts (
      message_id TEXT NOT NULL,
      destination TEXT NOT NULL,
      part INTEGER NOT NULL,
      attempt INTEGER NOT NULL,
      started_at INTEGER NOT NULL,
      ended_at INTEGER NOT NULL,
      outcome TEXT NOT NULL,
      response_status INTEGER,
      error TEXT,
      excerpt TEXT
    );
    CREATE INDEX attempts_message ON attempts (message_id);
    CREATE TABLE component_state (
      channel TEXT NOT NULL,
      component TEXT NOT NULL,
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      updated_at INTEGER NOT NULL,
      PRIMARY KEY (channel, component, key)
    ) WITHOUT ROWID;
  `),
]

/** Brings `db` to the latest schema; each migration runs in its own transaction with the version bump. */
export function migrate(db: Database): number {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > migrations.length) {
    throw new Error(`database schema version ${current} is newer than this weir (${migrations.length}); upgrade weir`)
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      migrations[v]!(db)
      db.pragma(`user_version = ${v + 1}`)
    }).immediate()
  }
  return migrations.length
}
