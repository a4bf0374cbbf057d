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
  // 2: a message's immutable content (the ~1 KB body) in a row written once, its mutable status in a
  // small row updated on claim and completion, so status changes no longer rewrite the body into the
  // WAL. `messages` becomes a view joining the two, with the columns of the old table.
  (db) => db.exec(`
    CREATE TABLE message_content (
      seq INTEGER PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      channel TEXT NOT NULL,
      body TEXT NOT NULL,
      content_type TEXT NOT NULL,
      attributes TEXT NOT NULL,
      dedupe_key TEXT,
      received_at INTEGER NOT NULL
    );
    CREATE TABLE message_status (
      seq INTEGER PRIMARY KEY,
      channel TEXT NOT NULL,
      status TEXT NOT NULL,
      updated_at INTEGER NOT NULL,
      error TEXT
    );
    INSERT INTO message_content (seq, id, channel, body, content_type, attributes, dedupe_key, received_at)
      SELECT seq, id, channel, body, content_type, attributes, dedupe_key, received_at FROM messages ORDER BY seq;
    INSERT INTO message_status (seq, channel, status, updated_at, error)
      SELECT seq, channel, status, updated_at, error FROM messages ORDER BY seq;
    DROP TABLE messages;
    CREATE UNIQUE INDEX message_content_dedupe ON message_content (channel, dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE INDEX message_content_received ON message_content (received_at);
    CREATE INDEX message_status_queue ON message_status (channel, status, seq);
    CREATE VIEW messages AS
      SELECT s.seq AS seq, c.id AS id, s.channel AS channel, s.status AS status, c.body AS body, c.content_type AS content_type,
        c.attributes AS attributes, c.dedupe_key AS dedupe_key, c.received_at AS received_at, s.updated_at AS updated_at, s.error AS error
      FROM message_status s JOIN message_content c ON c.seq = s.seq;
  `),
  // 3: the message's order key (options.orderBy), kept with its immutable content so order per key survives a restart.
  (db) => db.exec(`
    ALTER TABLE message_content ADD COLUMN order_key TEXT;
    DROP VIEW messages;
    CREATE VIEW messages AS
      SELECT s.seq AS seq, c.id AS id, s.channel AS channel, s.status AS status, c.body AS body, c.content_type AS content_type,
        c.attributes AS attributes, c.dedupe_key AS dedupe_key, c.received_at AS received_at, s.updated_at AS updated_at, s.error AS error,
        c.order_key AS order_key
      FROM message_status s JOIN message_content c ON c.seq = s.seq;
  `),
  // 4: search keys (options.searchKeys): one row per value, found by (name, value) with or without the channel.
  (db) => db.exec(`
    CREATE TABLE message_keys (
      name TEXT NOT NULL,
      value TEXT NOT NULL,
      channel TEXT NOT NULL,
      seq INTEGER NOT NULL,
      PRIMARY KEY (name, value, channel, seq)
    ) WITHOUT ROWID;
    CREATE INDEX message_keys_seq ON message_keys (seq);
  `),
  // 5: the audit log of operator actions (pause, resume, resubmit…): who, what, when, how many.
  (db) => db.exec(`
    CREATE TABLE audit_log (
      seq INTEGER PRIMARY KEY,
      at INTEGER NOT NULL,
      actor TEXT NOT NULL,
      action TEXT NOT NULL,
      target TEXT NOT NULL,
      count INTEGER NOT NULL
    );
    CREATE INDEX audit_log_at ON audit_log (at);
  `),
  // 6: a delivered attempt is kept in its delivery's row (last_attempt_at, last_ended_at, response
  // status and excerpt) instead of a row of its own in attempts: one write fewer per message. Should
  // another attempt follow (a resubmission), the trigger first moves the kept one into attempts.
  (db) => db.exec(`
    ALTER TABLE deliveries ADD COLUMN last_ended_at INTEGER;
    CREATE TRIGGER deliveries_keep_attempt BEFORE UPDATE OF attempts ON deliveries
      WHEN OLD.last_ended_at IS NOT NULL AND NEW.attempts > OLD.attempts
    BEGIN
      INSERT INTO attempts (message_id, destination, part, attempt, started_at, ended_at, outcome, response_status, error, excerpt)
        VALUES (OLD.message_id, OLD.destination, OLD.part, OLD.attempts, OLD.last_attempt_at, OLD.last_ended_at, 'delivered', OLD.response_status, NULL, OLD.response_excerpt);
    END;
  `),
  // 7: how many unclean stops a message was under way at (crash recovery counts them; see MAX_INTERRUPTIONS).
  (db) => db.exec('ALTER TABLE message_status ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0'),
  // 8: the messages in error by channel and time, for countErrors (the alerts' messages-failing
  // check): it read every retained error of its channel through message_status_queue, and now reads
  // only those since the window's start, from the index alone.
  (db) => db.exec(`CREATE INDEX message_status_errors ON message_status (channel, updated_at) WHERE status = 'error'`),
  // 9: the retry budget a resubmission starts afresh: the attempts made before it, and when the
  // first attempt after it started (attempts itself keeps counting, as the attempt history does).
  (db) => db.exec(`
    ALTER TABLE deliveries ADD COLUMN budget_attempts INTEGER;
    ALTER TABLE deliveries ADD COLUMN budget_since INTEGER;
  `),
  // 10: a search key's value out of the audit entries of a resubmit by filter that an earlier weir
  // wrote (`orders: status error, mrn=MRN12`): the key is the filter's last part and no other part
  // holds a "=", so what follows the first "=" is the value, withheld as weir writes it now
  // (`mrn=(value withheld)`). The old values are overwritten in their pages (secure_delete).
  (db) => {
    db.pragma('secure_delete = ON')
    db.exec(`UPDATE audit_log SET target = substr(target, 1, instr(target, '=')) || '(value withheld)'
      WHERE action = 'resubmit' AND instr(target, '=') > 0 AND instr(target, '(value withheld)') = 0`)
  },
  // 11: the retry of a message's filters (a filter failed retryably): the attempts and time charged
  // to its retry budget by the next attempt, and when that attempt is due, so that a restart goes on
  // from them. In the small status row, beside the other state of a message under way.
  (db) => db.exec(`
    ALTER TABLE message_status ADD COLUMN filter_attempts INTEGER;
    ALTER TABLE message_status ADD COLUMN filter_elapsed INTEGER;
    ALTER TABLE message_status ADD COLUMN filter_next_attempt_at INTEGER;
    DROP VIEW messages;
    CREATE VIEW messages AS
      SELECT s.seq AS seq, c.id AS id, s.channel AS channel, s.status AS status, c.body AS body, c.content_type AS content_type,
        c.attributes AS attributes, c.dedupe_key AS dedupe_key, c.received_at AS received_at, s.updated_at AS updated_at, s.error AS error,
        c.order_key AS order_key, s.filter_attempts AS filter_attempts, s.filter_elapsed AS filter_elapsed, s.filter_next_attempt_at AS filter_next_attempt_at
      FROM message_status s JOIN message_content c ON c.seq = s.seq;
  `),
]

/**
 * Brings `db` to the latest schema; each migration runs in its own transaction with the version bump.
 * Only the engine that owns the data directory migrates: a reader (`weir messages`) beside an older
 * running engine must not change the tables under it.
 */
export function migrate(db: Database, options: { allowMigration?: boolean } = {}): number {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > migrations.length) {
    throw new Error(`database schema version ${current} is newer than this weir (${migrations.length}); upgrade weir`)
  }
  if (current > 0 && current < migrations.length && options.allowMigration === false) {
    throw new Error(`the message store has schema version ${current}; start the engine (weir run) once to upgrade it to ${migrations.length}`)
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      migrations[v]!(db)
      db.pragma(`user_version = ${v + 1}`)
    }).immediate()
  }
  // A migration that copied tables leaves their old pages in the WAL: fold it back into the database now.
  if (current > 0 && current < migrations.length) db.pragma('wal_checkpoint(TRUNCATE)')
  return migrations.length
}

/** `PRAGMA auto_vacuum` value of a database whose free pages `PRAGMA incremental_vacuum` gives back in steps. */
const INCREMENTAL = 2

/**
 * Switches the database to incremental vacuum, once: a purge can then give its free pages back to
 * the file system in small steps instead of a full VACUUM that stalls the writer. A database made
 * before takes one VACUUM here, at open (outside any transaction, as VACUUM must be). Owner only.
 * Returns whether the database was switched now.
 */
export function useIncrementalVacuum(db: Database): boolean {
  if (db.pragma('auto_vacuum', { simple: true }) === INCREMENTAL) return false
  db.pragma('auto_vacuum = INCREMENTAL')
  db.exec('VACUUM')
  db.pragma('wal_checkpoint(TRUNCATE)')
  return true
}
