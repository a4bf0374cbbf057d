import type { Db } from './db.ts'
import { StoreError } from '../errors.ts'

/**
 * Schema migrations of the PostgreSQL store, applied in order; `weir_schema.version` holds how many
 * have run. Append only: never edit a released migration, add the next one.
 */
export const migrations: readonly string[] = [
  // 1: the queue and message log in one table (the body is written once; status changes rewrite a
  // ~1 KB row, which PostgreSQL's MVCC does anyway), per-destination outcomes, attempt history,
  // component state, the engines of the cluster with their leases, poller leaderships.
  `
  CREATE TABLE weir_messages (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    channel text NOT NULL,
    status text NOT NULL,
    body text NOT NULL,
    content_type text NOT NULL,
    attributes text NOT NULL,
    dedupe_key text,
    order_key text,
    received_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    error text,
    owner text
  );
  CREATE UNIQUE INDEX weir_messages_dedupe ON weir_messages (channel, dedupe_key) WHERE dedupe_key IS NOT NULL;
  CREATE INDEX weir_messages_queued ON weir_messages (channel, seq) WHERE status = 'queued';
  CREATE INDEX weir_messages_claimed ON weir_messages (channel, order_key) WHERE status IN ('in-flight', 'retrying');
  CREATE INDEX weir_messages_owner ON weir_messages (owner) WHERE owner IS NOT NULL;
  CREATE INDEX weir_messages_status ON weir_messages (channel, status, seq);
  CREATE INDEX weir_messages_updated ON weir_messages (updated_at) WHERE status IN ('delivered', 'filtered', 'error');
  CREATE INDEX weir_messages_received ON weir_messages (received_at);
  CREATE TABLE weir_deliveries (
    message_id text NOT NULL REFERENCES weir_messages (id) ON DELETE CASCADE,
    destination text NOT NULL,
    part integer NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    first_attempt_at bigint,
    last_attempt_at bigint,
    next_attempt_at bigint,
    last_error text,
    response_status integer,
    response_excerpt text,
    PRIMARY KEY (message_id, destination, part)
  );
  CREATE TABLE weir_attempts (
    message_id text NOT NULL REFERENCES weir_messages (id) ON DELETE CASCADE,
    destination text NOT NULL,
    part integer NOT NULL,
    attempt integer NOT NULL,
    started_at bigint NOT NULL,
    ended_at bigint NOT NULL,
    outcome text NOT NULL,
    response_status integer,
    error text,
    excerpt text
  );
  CREATE INDEX weir_attempts_message ON weir_attempts (message_id);
  CREATE TABLE weir_state (
    channel text NOT NULL,
    component text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (channel, component, key)
  );
  CREATE TABLE weir_engines (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_until timestamptz NOT NULL
  );
  CREATE TABLE weir_leaders (
    name text PRIMARY KEY,
    engine_id text NOT NULL,
    lease_until timestamptz NOT NULL
  );
  `,
  // 2: OAuth state shared by the engines: per key (a refresh-token credential's store key, or a
  // grant's cache key) the AES-256-GCM sealed entry (access token, refresh token, last refusal),
  // its version for compare-and-swap, and the lease of the one engine fetching a token now; the
  // scrypt salt of a WEIR_SECRET_KEY passphrase, the same for every engine.
  `
  CREATE TABLE weir_oauth_state (
    key text PRIMARY KEY,
    version integer NOT NULL DEFAULT 0,
    sealed text,
    holder text,
    lease_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
  );
  CREATE TABLE weir_oauth_salt (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    salt text NOT NULL
  );
  `,
  // 3: search keys (options.searchKeys): one row per value, found by (name, value) with or without
  // the channel, deleted with the message.
  `
  CREATE TABLE weir_message_keys (
    name text NOT NULL,
    value text NOT NULL,
    channel text NOT NULL,
    seq bigint NOT NULL REFERENCES weir_messages (seq) ON DELETE CASCADE,
    PRIMARY KEY (name, value, channel, seq)
  );
  CREATE INDEX weir_message_keys_seq ON weir_message_keys (seq);
  `,
  // 4: the audit log of operator actions (pause, resume, resubmit…): who, what, when, how many.
  `
  CREATE TABLE weir_audit_log (
    seq bigserial PRIMARY KEY,
    at bigint NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    count integer NOT NULL
  );
  CREATE INDEX weir_audit_log_at ON weir_audit_log (at);
  `,
  // 5: bodies in a table of their own, written once: a message's status changes (claimed,
  // delivered) rewrite a row of ~150 bytes instead of copying its ~1 KB body, in the table and in
  // the WAL. The store deletes a body with its message (no foreign key: its check would lock the
  // message row, one more WAL record per message).
  `
  CREATE TABLE weir_message_bodies (
    seq bigint PRIMARY KEY,
    body text NOT NULL
  );
  INSERT INTO weir_message_bodies (seq, body) SELECT seq, body FROM weir_messages;
  ALTER TABLE weir_messages DROP COLUMN body;
  `,
  // 6: less work per message for PostgreSQL (each index entry and row lock is a WAL record; a claim
  // and a completion each write a new row version, with an entry in every index of the table):
  // - no foreign keys to weir_messages: each check locked the message row (one WAL record per
  //   delivery outcome and per attempt); the purge deletes a message's rows in every table;
  // - the index by status holds only the outcomes a search needs it for (filtered, error): queued
  //   and claimed messages have partial indexes of their own, and delivered ones are most rows;
  // - received_at in a BRIN index (a few bytes per range of pages, not an entry per row version):
  //   rows are appended in the order received, which is what a BRIN index needs;
  // - no index by owner: a message has an owner exactly while it is claimed (in flight or
  //   retrying), and the claimed index holds those rows.
  `
  ALTER TABLE weir_deliveries DROP CONSTRAINT IF EXISTS weir_deliveries_message_id_fkey;
  ALTER TABLE weir_attempts DROP CONSTRAINT IF EXISTS weir_attempts_message_id_fkey;
  ALTER TABLE weir_message_keys DROP CONSTRAINT IF EXISTS weir_message_keys_seq_fkey;
  DROP INDEX weir_messages_status;
  CREATE INDEX weir_messages_outcome ON weir_messages (channel, status, seq) WHERE status IN ('filtered', 'error');
  DROP INDEX weir_messages_received;
  CREATE INDEX weir_messages_received ON weir_messages USING brin (received_at);
  DROP INDEX weir_messages_owner;
  `,
  // 7: the cluster's key check (a MAC of the key WEIR_SECRET_KEY derives, never the key), written
  // by the first engine that has the key: an engine with another WEIR_SECRET_KEY refuses to start.
  `
  ALTER TABLE weir_oauth_salt ADD COLUMN key_check text;
  `,
  // 8: how many unclean stops a message was under way at (a sweep counts them; see MAX_INTERRUPTIONS).
  `
  ALTER TABLE weir_messages ADD COLUMN interrupted int NOT NULL DEFAULT 0;
  `,
  // 9: the fingerprint of each channel an engine runs ({"name": "sha256:…"}; NULL for an engine of
  // an older weir), compared as engines join (see EngineLease); the messages in error by channel and
  // time, for countErrors (the alerts' messages-failing check): it read every retained error of its
  // channel through weir_messages_outcome, and now reads only those since the window's start.
  `
  ALTER TABLE weir_engines ADD COLUMN channels jsonb;
  CREATE INDEX weir_messages_errors ON weir_messages (channel, updated_at) WHERE status = 'error';
  `,
  // 10: the retry budget a resubmission starts afresh: the attempts made before it, and when the
  // first attempt after it started (attempts itself keeps counting, as the attempt history does).
  `
  ALTER TABLE weir_deliveries ADD COLUMN budget_attempts integer, ADD COLUMN budget_since bigint;
  `,
  // 11: the outline of each channel's definition an engine runs ({"name": {"/json/pointer": "digest"}};
  // NULL for an engine of an older weir): a refused engine is told where its definition differs.
  // A column of its own: an older weir reads every value of `channels` as a fingerprint.
  `
  ALTER TABLE weir_engines ADD COLUMN outlines jsonb;
  `,
  // 12: a search key's value out of the audit entries of a resubmit by filter that an earlier weir
  // wrote (`orders: status error, mrn=MRN12`): the key is the filter's last part and no other part
  // holds a "=", so what follows the first "=" is the value, withheld as weir writes it now
  // (`mrn=(value withheld)`). The old row versions stay in the table's pages until (auto)vacuum.
  `
  UPDATE weir_audit_log SET target = substr(target, 1, strpos(target, '=')) || '(value withheld)'
    WHERE action = 'resubmit' AND strpos(target, '=') > 0 AND strpos(target, '(value withheld)') = 0;
  `,
  // 13: the retry of a message's filters (a filter failed retryably): the attempts and time charged
  // to its retry budget by the next attempt, and when that attempt is due, so that a restart or a
  // takeover by another engine goes on from them. Nullable, no default: no rewrite of the table.
  `
  ALTER TABLE weir_messages ADD COLUMN filter_attempts integer, ADD COLUMN filter_elapsed bigint, ADD COLUMN filter_next_attempt_at bigint;
  `,
]

/** Any constant: the key of the advisory lock under which one engine at a time migrates. */
const MIGRATION_LOCK = 0x77656972

/**
 * Brings the database to the latest schema under a session advisory lock, so two engines starting
 * together never migrate at once (the second waits, then finds nothing to do). Refuses a schema
 * newer than this weir knows; a reader (`owner: false`) never migrates. No statement timeout: a
 * migration may rewrite a large table, and the engine after it waits for it.
 */
export async function migrate(db: Db, options: { allowMigration: boolean }): Promise<number> {
  return db.transaction(async (tx) => {
    await tx.sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK}::bigint)`
    await tx.query('CREATE TABLE IF NOT EXISTS weir_schema (version integer NOT NULL)')
    const [row] = await tx.query<{ version: number }>('SELECT version FROM weir_schema')
    const current = row?.version ?? 0
    if (current > migrations.length) {
      throw new StoreError(`database schema version ${current} is newer than this weir (${migrations.length}); upgrade weir`)
    }
    if (current < migrations.length && !options.allowMigration) {
      throw new StoreError(`the message store has schema version ${current}; start the engine (weir run) once to bring it to ${migrations.length}`)
    }
    for (let v = current; v < migrations.length; v++) await tx.query(migrations[v]!)
    if (row === undefined) await tx.sql`INSERT INTO weir_schema (version) VALUES (${migrations.length})`
    else await tx.sql`UPDATE weir_schema SET version = ${migrations.length}`
    return migrations.length
  }, { unbounded: true })
}
