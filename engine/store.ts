import { errorCodes } from '../shared/errors.ts'
import type { Logger } from '../shared/log/index.ts'
import { openPostgresStore, openSqliteStore, type MessageStore } from '../shared/store/index.ts'
import { ALLOW_OPEN_DATA_DIR_ENV } from '../shared/store/data-dir.ts'
import { encryptContent, onUnreadable } from '../shared/store/encrypted.ts'
import { StoreError } from '../shared/store/errors.ts'
import { sealedInSqlite } from '../shared/store/sqlite/sealed-scan.ts'
import { refuseKeyringWithoutPendingKeys, refuseNewKeyOverLostOne } from './store-key-guard.ts'
import { clusterStoreKey, verifyStoreClusterKey } from '../shared/store/postgres/oauth-state.ts'
import type { DefinitionOutline } from '../shared/store/postgres/engines.ts'
import { loadStoreKey } from '../shared/oauth/refresh-store.ts'
import { RETIRED_FILE, keyringIn, keyringOf, type StoreKeyring } from '../shared/store/keyring.ts'
import { stat } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { version } from './cli.ts'
import type { CommandIO } from './cli-io.ts'

/** The command-line options that choose the message store, shared by `weir run`, `weir messages` and `weir cluster`. */
/**
 * The PostgreSQL store's commit pacing by default: under load a write waits up to 25 ms for 64
 * operations to share its commit. Measured with `npm run bench -- cluster` (three engines on two
 * cores): about 0.09 commits per message without it, 0.05 with it, at the same throughput.
 */
export const DEFAULT_COMMIT_DELAY_MS = 25

export const storeOptions = {
  store: { type: 'string' },
  'store-password-file': { type: 'string' },
  'lease-ms': { type: 'string' },
  'commit-delay-ms': { type: 'string' },
} as const

export const storeUsage = `  --store URL     a PostgreSQL store shared by a cluster of engines: postgres://user@host:5432/db
                  (also $WEIR_STORE; ?sslmode=require|verify-full honoured; the password from the URL,
                  $PGPASSWORD or --store-password-file)
  --store-password-file F   a file whose first line is the store's password
  --lease-ms N    how long an engine's claims outlive its last heartbeat (PostgreSQL store; default 15000)
  --commit-delay-ms N   under load, how long a write may wait for others to share its commit
                  (PostgreSQL store; default ${DEFAULT_COMMIT_DELAY_MS}; 0: commit at once)`

export interface StoreChoice {
  store?: string | undefined
  'store-password-file'?: string | undefined
  'lease-ms'?: string | undefined
  'commit-delay-ms'?: string | undefined
}

/**
 * A store URL as it may be printed: the password of its user information (up to the last `@`, which
 * may be in a password not percent-encoded) as `***`.
 */
export function maskedUrl(url: string): string {
  // A password in the query (libpq's password=, sslpassword=) is hidden too.
  const masked = url.replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1***')
  const start = /^[a-z][a-z0-9+.-]*:\/\//i.exec(masked)?.[0].length ?? 0
  const at = masked.lastIndexOf('@')
  const colon = masked.indexOf(':', start)
  if (at < 0 || colon < 0 || colon > at) return masked
  return `${masked.slice(0, colon)}:***${masked.slice(at)}`
}

/** The PostgreSQL URL chosen by `--store` or `$WEIR_STORE`, or undefined for the embedded SQLite store. */
export function storeUrlOf(values: StoreChoice, io: Pick<CommandIO, 'env'>): string | undefined {
  const url = values.store ?? io.env.WEIR_STORE
  if (url === undefined || url === '') return undefined
  const flag = values.store !== undefined ? '--store' : '$WEIR_STORE'
  if (!/^postgres(ql)?:\/\//.test(url)) throw new errorCodes.ERR_USAGE(`${flag} must be a postgres:// URL (or omitted for the embedded store in --data-dir); not "${maskedUrl(url)}"`)
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    // The URL parser says only "Invalid URL"; a port is what people get wrong.
    const port = /@[^/@]*:([^/?#]*)(?:[/?#]|$)/.exec(url)?.[1]
    const why = port !== undefined && !/^\d{1,5}$/.test(port) ? `its port "${port}" is not a number` : 'it cannot be parsed (a password with "@", "/", ":" or "#" must be percent-encoded)'
    throw new errorCodes.ERR_USAGE(`${flag} is not a valid URL: ${why}; expected postgres://user@host:5432/database, not "${maskedUrl(url)}"`)
  }
  if (parsed.hostname === '' && !parsed.searchParams.has('host') && !io.env.PGHOST) throw new errorCodes.ERR_USAGE(`${flag} names no host: expected postgres://user@host:5432/database, not "${maskedUrl(url)}"`)
  return url
}

/** Where a command looked for messages, for its messages: `the PostgreSQL store at host:port/db` (no user, no password), or the data directory. */
export function storeWhere(url: string | undefined, dataDir: string): string {
  if (url === undefined) return dataDir
  const u = new URL(url)
  return `the PostgreSQL store at ${u.hostname}:${u.port || 5432}${u.pathname}`
}

/**
 * node-postgres's words for a connection made without a password to a server that wants one
 * (SCRAM: "client password must be a string"; MD5 and cleartext: "empty password returned by client").
 */
const NO_PASSWORD = /client password must be a string|empty password returned by client/

/** Opens the PostgreSQL store at `url`; a connection refused for want of a password says so plainly, naming the user. */
export async function openPostgresFor(options: Parameters<typeof openPostgresStore>[0]): Promise<Awaited<ReturnType<typeof openPostgresStore>>> {
  try {
    return await openPostgresStore(options)
  } catch (e) {
    if (!NO_PASSWORD.test((e as Error)?.message ?? '')) throw e
    const u = new URL(options.url)
    const user = decodeURIComponent(u.username) || process.env.PGUSER || userInfo().username
    throw new StoreError(`PostgreSQL store at ${u.hostname}:${u.port || 5432}${u.pathname}: no password given for user ${user} (the password comes from the URL, PGPASSWORD or --store-password-file)`, { cause: e })
  }
}

/**
 * Opens the store a command works on: the PostgreSQL store named by `--store`/`$WEIR_STORE`, or the
 * embedded SQLite store of the data directory. `owner` is true for the engine (`weir run`), false
 * for commands that read or resubmit beside running engines: those never create a store, and a data
 * directory without one is an ERR_STORE (`missing`) that says how to name another.
 */
export async function openStoreFor(values: StoreChoice, io: Pick<CommandIO, 'env'>, o: {
  dataDir: string
  owner: boolean
  synchronous?: 'FULL' | 'NORMAL'
  log?: Logger
  /** Accept a data directory group or others may read (`weir run --allow-open-data-dir`; also $WEIR_DATA_DIR_ALLOW_OPEN_MODE=1). */
  allowOpenDataDir?: boolean
  /** The flag of the command that accepts an open data directory, named when one is refused (only `weir run` has one; elsewhere the refusal names the environment variable). */
  acceptOpenDataDirFlag?: string
  /** Channels whose content is stored encrypted (`options.encryptContent`), or true for every one (`--encrypt-content`). Reads always decrypt. */
  encrypt?: ReadonlySet<string> | true
  /** The engine's channels' definition fingerprints (engine/definition-fingerprint.ts): a cluster refuses an engine that runs a channel differently from a live one. */
  definitions?: Readonly<Record<string, string>>
  /** The outlines of those definitions (engine/definition-fingerprint.ts `channelDefinition`): a refusal names where a definition differs. */
  outlines?: Readonly<Record<string, DefinitionOutline>>
  /** In a cluster: told once if this engine, its lease lost, may not rejoin (see `PostgresStoreOptions.onRefused`); it is to stop. */
  onRefused?: (e: StoreError) => void
}): Promise<MessageStore> {
  const store = await openStore(values, io, o)
  /** A start-up check that failed: the store is closed before the error goes on. */
  const closeOnFailure = (check: Promise<unknown>) => check.catch(async (e) => {
    await store.close().catch(() => {})
    throw e
  })
  const secretKey = io.env.WEIR_SECRET_KEY
  // An engine of a cluster with another WEIR_SECRET_KEY would fail every message it claims: it stops here, before any claim.
  await closeOnFailure(verifyStoreClusterKey(store, secretKey))
  const dir = join(o.dataDir, 'oauth')
  // A cluster's engines share the key: WEIR_SECRET_KEY with the database's salt, never a file of one engine's data directory.
  // A data directory's key is never made anew over a lost one (a forgotten passphrase, a backup restored without oauth/).
  const clusterKey = clusterStoreKey(store, secretKey)
  const keyring = clusterKey ? undefined : keyringSource(dir, secretKey, () => refuseNewKeyOverLostOne(dir, o.dataDir, secretKey, () => sealedInSqlite(join(o.dataDir, 'weir.db'))))
  const key = clusterKey ?? keyring!
  // The engine, before any claim: a keyring that opens none of the messages waiting would put each in error.
  if (o.owner && keyring) await closeOnFailure((async () => refuseKeyringWithoutPendingKeys(sealedInSqlite(join(o.dataDir, 'weir.db'), { pending: true }), keyring, secretKey ? 'WEIR_SECRET_KEY' : join(dir, 'secret.key')))())
  const encrypted = encryptContent(store, { channels: o.encrypt ?? new Set(), key })
  const log = o.log
  if (log) onUnreadable(encrypted, (m) => log.error({ message: m.id, channel: m.channel, keyId: m.keyId, reason: m.reason }, 'message in error: it cannot be decrypted with the store keyring'))
  // An engine that encrypts loads (and checks) its key at start: a key file others may read, or a
  // lost key, stops the start with its reason instead of failing every message later.
  if (o.encrypt === true || (o.encrypt && o.encrypt.size > 0)) await closeOnFailure(key())
  return encrypted
}

/**
 * The keyring of a data directory's key files, read once and read again when `secret.key` or
 * `retired.keys` changes (checked at most every 2 s): an engine picks up `weir keys rotate-store-key`
 * without a restart. With `WEIR_SECRET_KEY` the key is that one. `beforeLoad` may refuse (throw)
 * before a load that could make a key (see refuseNewKeyOverLostOne).
 */
export function keyringSource(dir: string, secretKey: string | undefined, beforeLoad?: () => void | Promise<void>): () => Promise<StoreKeyring> {
  let ring: Promise<StoreKeyring> | undefined
  let stamp = ''
  let checkedAt = 0
  const stampOf = async () => (await Promise.all(['secret.key', RETIRED_FILE].map((f) => stat(join(dir, f)).then((s) => `${s.mtimeMs}:${s.size}`, () => '-')))).join('/')
  const load = async () => {
    await beforeLoad?.()
    stamp = await stampOf()
    const current = await loadStoreKey(dir, secretKey ? { key: secretKey } : {})
    return secretKey ? keyringOf(current) : keyringIn(dir, current)
  }
  return async () => {
    if (ring && Date.now() - checkedAt >= 2000) {
      checkedAt = Date.now()
      if ((await stampOf()) !== stamp) ring = undefined
    }
    ring ??= load().catch((e) => {
      ring = undefined
      throw e
    })
    return ring
  }
}

/**
 * A store that a command opens without creating it (not the engine's) and that is not there: the
 * data directory is most likely not the one meant, so the error says how to name another.
 */
function withStoreHint(e: unknown): unknown {
  if (!(e instanceof StoreError) || !e.missing) return e
  return new StoreError(`${e.message}; name the data directory with --data-dir D (or $WEIR_DATA_DIR), or a cluster's store with --store postgres://… (or $WEIR_STORE)`, { cause: e, missing: true })
}

/** The longest lease: an hour already leaves a dead engine's claims waiting that long. */
const MAX_LEASE_MS = 3_600_000

async function openStore(values: StoreChoice, io: Pick<CommandIO, 'env'>, o: Parameters<typeof openStoreFor>[2]): Promise<MessageStore> {
  const url = storeUrlOf(values, io)
  if (url === undefined) {
    // A cluster flag without a cluster: this engine would run alone on its own store, unnoticed.
    const clusterOnly = (['lease-ms', 'commit-delay-ms'] as const).filter((f) => values[f] !== undefined)
    if (clusterOnly.length) throw new errorCodes.ERR_USAGE(`--${clusterOnly.join(' and --')} go${clusterOnly.length === 1 ? 'es' : ''} with --store postgres://… (or WEIR_STORE): without it this engine runs alone on the embedded store of its data directory`)
    try {
      return openSqliteStore({ dataDir: o.dataDir, owner: o.owner, ...(o.owner ? {} : { create: false }), ...(o.synchronous ? { synchronous: o.synchronous } : {}), ...(o.log ? { log: o.log } : {}),
        refuseOpenDataDir: !(o.allowOpenDataDir || io.env[ALLOW_OPEN_DATA_DIR_ENV] === '1'), ...(o.acceptOpenDataDirFlag ? { acceptOpenDataDirFlag: o.acceptOpenDataDirFlag } : {}) })
    } catch (e) {
      throw withStoreHint(e)
    }
  }
  const leaseMs = values['lease-ms'] === undefined ? undefined : Number(values['lease-ms'])
  if (leaseMs !== undefined && (!Number.isInteger(leaseMs) || leaseMs < 300 || leaseMs > MAX_LEASE_MS)) throw new errorCodes.ERR_USAGE(`--lease-ms must be an integer from 300 to ${MAX_LEASE_MS} (1 h); not "${values['lease-ms']}"`)
  const delayMs = values['commit-delay-ms'] === undefined ? DEFAULT_COMMIT_DELAY_MS : Number(values['commit-delay-ms'])
  if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > 1000 || values['commit-delay-ms']?.trim() === '') throw new errorCodes.ERR_USAGE(`--commit-delay-ms must be an integer from 0 to 1000; not "${values['commit-delay-ms']}"`)
  return openPostgresFor({
    url, owner: o.owner, version: version(), commitPacing: { delayMs, batch: 64 },
    ...(values['store-password-file'] ? { passwordFile: values['store-password-file'] } : {}),
    ...(leaseMs !== undefined ? { leaseMs } : {}),
    ...(o.log ? { log: o.log } : {}),
    ...(o.owner && o.definitions ? { definitions: o.definitions } : {}),
    ...(o.owner && o.outlines ? { outlines: o.outlines } : {}),
    ...(o.owner && o.onRefused ? { onRefused: o.onRefused } : {}),
  })
}
