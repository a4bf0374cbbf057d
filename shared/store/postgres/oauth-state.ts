import { setTimeout as sleep } from 'node:timers/promises'
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { holdLease, keysOf, openEntry, sealEntry, type Lease, type RefreshTokenStore, type StoreKeys, type StoredTokens, type StoredTokensInput } from '../../oauth/refresh-store.ts'
import { StoreError } from '../errors.ts'
import { sealedKeyId } from '../encrypted.ts'
import { keyIdOf } from '../keyring.ts'
import type { MessageStore } from '../types.ts'
import type { Db } from './db.ts'
import { migrate } from './migrations.ts'
import { connect, type PostgresMessageStore, type PostgresStoreOptions } from './open.ts'

export interface PostgresTokenStateOptions {
  db: Db
  /**
   * Connections for the lease renewals, apart from `db`'s traffic (the store's renewal pool, see
   * `PostgresMessageStore.renewals`): a renewal must not wait behind messages past the lease. Default `db`.
   */
  renewals?: Db | undefined
  /**
   * The key every engine of the cluster shares (`WEIR_SECRET_KEY`): 32 bytes (a Buffer, or base64
   * text), or a passphrase, stretched with scrypt and a salt kept in the database.
   */
  secretKey: string | Buffer | undefined
  /** A fetcher's lease outlives its last renewal by this long (renewed every third of it). Default 15,000 ms, like an engine's. */
  leaseMs?: number
  /** How long to wait for another engine's fetch before failing (retryably). Default 60,000 ms. */
  waitMs?: number
  /** The id of the engine using this state, named in the refusals it records (read when one is recorded: it changes when the engine rejoins). */
  engineId?: () => string | undefined
}

/** What to do when the cluster has no key to seal its tokens with. */
export const missingClusterKey = 'the PostgreSQL store keeps OAuth tokens (and content with encryptContent) encrypted with WEIR_SECRET_KEY: set the same WEIR_SECRET_KEY on every engine of the cluster'

/** The key the cluster's tokens are sealed with; its absence is the operator's to fix, before anything is fetched. */
function givenKey(given: string | Buffer | undefined): string | Buffer {
  if (given === undefined || given.length === 0) throw new StoreError(missingClusterKey)
  return given
}

/** The cluster's scrypt salt, created by the first engine that needs one. */
async function clusterSalt(db: Db): Promise<Buffer> {
  await db.sql`INSERT INTO weir_oauth_salt (salt) VALUES (${randomBytes(16).toString('base64')}) ON CONFLICT DO NOTHING`
  const [row] = await db.query<{ salt: string }>('SELECT salt FROM weir_oauth_salt')
  return Buffer.from(row!.salt, 'base64')
}

/** Why an engine whose WEIR_SECRET_KEY is not the cluster's does not start. */
export const wrongClusterKey = 'WEIR_SECRET_KEY does not match the key this cluster\'s database was set up with: every engine of the cluster needs the same WEIR_SECRET_KEY'

/** The key check kept in the database: a MAC of the derived key over a fixed text (never the key). */
function keyCheckOf(key: Buffer): string {
  return `v1:${createHmac('sha256', key).update('weir cluster key check').digest('base64')}`
}

async function storedKeyCheck(db: Db): Promise<string | null> {
  const [row] = await db.query<{ key_check: string | null }>('SELECT key_check FROM weir_oauth_salt')
  return row?.key_check ?? null
}

/**
 * Whether `keys` open what a database of an older weir (a salt, no key check) already holds: one
 * sealed OAuth state entry, else the key id of one sealed message body. True when it holds nothing sealed.
 */
async function opensWhatIsSealed(db: Db, keys: StoreKeys): Promise<boolean> {
  const [entry] = await db.query<{ key: string; sealed: string }>('SELECT key, sealed FROM weir_oauth_state WHERE sealed IS NOT NULL LIMIT 1')
  if (entry) {
    try {
      openEntry(keys, entry.key, entry.sealed)
      return true
    } catch {
      return false
    }
  }
  const [body] = await db.query<{ head: string }>(`SELECT left(body, 64) AS head FROM weir_message_bodies WHERE body LIKE '"weir:enc:v2:%' LIMIT 1`)
  return !body || sealedKeyId(body.head.slice(1)) === keyIdOf(keys.current)
}

/**
 * Refuses (ERR_STORE {@link wrongClusterKey}) a WEIR_SECRET_KEY that is not the cluster's, before
 * an engine claims anything: its derived key against the key check in the database. The first
 * engine writes the check; on a database of an older weir (no check yet), only once its key opens
 * what the database holds sealed. Two engines setting it up at once: the first write wins.
 */
export async function verifyClusterKey(db: Db, secretKey: string | Buffer | undefined): Promise<void> {
  const given = givenKey(secretKey)
  const salt = await clusterSalt(db)
  const keys = await keysOf(given, async () => salt)
  const check = keyCheckOf(keys.current)
  let stored = await storedKeyCheck(db)
  if (stored === null) {
    if (!(await opensWhatIsSealed(db, keys))) throw new StoreError(wrongClusterKey)
    await db.sql`UPDATE weir_oauth_salt SET key_check = ${check} WHERE key_check IS NULL`
    stored = await storedKeyCheck(db)
  }
  const a = Buffer.from(stored ?? '')
  const b = Buffer.from(check)
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new StoreError(wrongClusterKey)
}

/**
 * The OAuth token state of a cluster in its PostgreSQL database (table `weir_oauth_state`): per key
 * one AES-256-GCM sealed entry (bound to its key), written with compare-and-swap on its version,
 * and a lease (`holder`, `lease_until` in the database's clock) that the fetching engine renews, on
 * `renewals` (never behind message traffic); a dead or frozen engine's lease runs out and the next
 * engine takes it over.
 *
 * @example
 * const state = createPostgresTokenState({ db: store.pool, renewals: store.renewals, secretKey: process.env.WEIR_SECRET_KEY })
 * createTokenProvider('crm', config, { shared: state })
 */
export function createPostgresTokenState(options: PostgresTokenStateOptions): RefreshTokenStore {
  const { db } = options
  const renewals = options.renewals ?? db
  const given = givenKey(options.secretKey)
  let keysP: Promise<StoreKeys> | undefined
  const keys = () => (keysP ??= keysOf(given, () => clusterSalt(db)).catch((e) => {
    keysP = undefined
    throw e
  }))
  const leaseMs = options.leaseMs ?? 15_000
  const waitMs = options.waitMs ?? 60_000

  async function read(key: string): Promise<StoredTokens | undefined> {
    const k = await keys()
    const [row] = await db.sql<{ sealed: string | null }>`SELECT sealed FROM weir_oauth_state WHERE key = ${key}`
    if (!row?.sealed) return undefined
    try {
      return openEntry(k, key, row.sealed)
    } catch {
      // Retryable: a key changed under a running cluster is the operator's to fix; the messages wait for it (retrying), not go to error.
      throw new StoreError(`the OAuth state of "${key}" cannot be decrypted: every engine of the cluster needs the same WEIR_SECRET_KEY`, { retryable: true })
    }
  }

  async function write(key: string, value: StoredTokensInput, expectedVersion: number): Promise<StoredTokens> {
    const entry: StoredTokens = { ...value, version: expectedVersion + 1, updatedAt: Date.now() }
    const sealed = sealEntry((await keys()).current, key, entry)
    const rows = expectedVersion === 0
      ? await db.sql`INSERT INTO weir_oauth_state (key, version, sealed) VALUES (${key}, 1, ${sealed})
          ON CONFLICT (key) DO UPDATE SET version = 1, sealed = EXCLUDED.sealed, updated_at = clock_timestamp() WHERE weir_oauth_state.version = 0 RETURNING 1`
      : await db.sql`UPDATE weir_oauth_state SET version = version + 1, sealed = ${sealed}, updated_at = clock_timestamp()
          WHERE key = ${key} AND version = ${expectedVersion}::int RETURNING 1`
    if (rows.length === 0) {
      const [now] = await db.sql<{ version: number }>`SELECT version FROM weir_oauth_state WHERE key = ${key}`
      throw new StoreError(`token store entry "${key}" changed: expected version ${expectedVersion}, found ${now?.version ?? 0}`)
    }
    return entry
  }

  /** Takes the lease if it is free or expired; true when this holder has it. */
  async function take(key: string, holder: string): Promise<boolean> {
    const rows = await db.sql`INSERT INTO weir_oauth_state (key, holder, lease_until) VALUES (${key}, ${holder}, clock_timestamp() + ${leaseMs}::int * interval '1 millisecond')
      ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until
      WHERE weir_oauth_state.holder IS NULL OR weir_oauth_state.lease_until < clock_timestamp() RETURNING 1`
    return rows.length > 0
  }

  async function withLease<T>(key: string, fn: (lease?: Lease) => Promise<T>): Promise<T> {
    const holder = randomUUID()
    const deadline = Date.now() + waitMs
    for (let delay = 10; !(await take(key, holder)); delay = Math.min(200, delay * 2)) {
      if (Date.now() > deadline) throw new StoreError(`timed out after ${waitMs} ms waiting for another engine's token request for "${key}"`, { retryable: true })
      await sleep(delay)
    }
    // Renewed every third of leaseMs; one that finds another holder, or none succeeding for leaseMs, aborts lease.signal.
    const lease = holdLease(key, leaseMs, async () => (await renewals.sql`UPDATE weir_oauth_state SET lease_until = clock_timestamp() + ${leaseMs}::int * interval '1 millisecond'
      WHERE key = ${key} AND holder = ${holder} RETURNING 1`).length > 0)
    try {
      return await fn(lease)
    } finally {
      lease.stop()
      await renewals.sql`UPDATE weir_oauth_state SET holder = NULL, lease_until = NULL WHERE key = ${key} AND holder = ${holder}`.catch(() => undefined)
    }
  }

  return { read, write, withLease, ...(options.engineId ? { engineId: options.engineId } : {}) }
}

/**
 * The token state of the engines sharing `store` when it is the PostgreSQL store (undefined for the
 * embedded store: then each engine keeps its own, as a single engine does); its leases are renewed
 * on the store's renewal pool.
 */
export function clusterTokenState(store: MessageStore, options: Omit<PostgresTokenStateOptions, 'db' | 'renewals' | 'engineId'>): RefreshTokenStore | undefined {
  const pg = store as Partial<PostgresMessageStore>
  const { pool: db, renewals } = pg
  return db ? createPostgresTokenState({ ...options, db, renewals, engineId: () => pg.engineId }) : undefined
}

/**
 * The store key of a cluster (message content encryption, `options.encryptContent`): from the
 * `WEIR_SECRET_KEY` every engine shares, a passphrase stretched with the salt kept in the database,
 * so every engine derives the same key. Undefined for a store that is not a cluster's.
 */
export function clusterStoreKey(store: MessageStore, secretKey: string | Buffer | undefined): (() => Promise<Buffer>) | undefined {
  const db = (store as Partial<PostgresMessageStore>).pool
  if (!db) return undefined
  return async () => (await keysOf(givenKey(secretKey), () => clusterSalt(db))).current
}

/** {@link verifyClusterKey} when `store` is the PostgreSQL store (a cluster's) and a WEIR_SECRET_KEY is given; nothing otherwise. */
export async function verifyStoreClusterKey(store: MessageStore, secretKey: string | undefined): Promise<void> {
  const db = (store as Partial<PostgresMessageStore>).pool
  if (db && secretKey) await verifyClusterKey(db, secretKey)
}

/**
 * The token state of a cluster for a command that is not an engine (`weir credentials import
 * --store`): its own connection, the schema brought up to date first (an import may come before
 * the first engine starts).
 */
export async function openPostgresTokenState(options: Pick<PostgresStoreOptions, 'url' | 'passwordFile'> & Omit<PostgresTokenStateOptions, 'db' | 'renewals'>): Promise<{ state: RefreshTokenStore; close(): Promise<void> }> {
  givenKey(options.secretKey)
  const db = connect({ ...options, poolSize: 2 }, new URL(options.url))
  try {
    await migrate(db, { allowMigration: true })
    await verifyClusterKey(db, options.secretKey)
  } catch (e) {
    await db.end().catch(() => undefined)
    throw e instanceof StoreError ? e : new StoreError(`PostgreSQL store: ${(e as Error).message}`, { cause: e })
  }
  return { state: createPostgresTokenState({ ...options, db }), close: () => db.end() }
}
