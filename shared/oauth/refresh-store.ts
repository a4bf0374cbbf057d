import { setTimeout as sleep } from 'node:timers/promises'
import { createCipheriv, createDecipheriv, createHash, randomBytes, scrypt } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, stat, unlink, utimes, writeFile, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { errorCodes, type WeirError } from '../errors.ts'
import { registerSecretValue } from '../secret.ts'
import { keyringIn } from '../store/keyring.ts'

/** What the authorization server answered when it last refused, kept so every holder fails fast alike. */
export interface StoredFailure {
  code: 'ERR_OAUTH_RESPONSE' | 'ERR_OAUTH_REAUTH_REQUIRED'
  message: string
  status?: number
  error?: string
  error_description?: string
  error_uri?: string
  /** Epoch ms until which no holder sends a token request. */
  until: number
  /** Who was refused, so the holders that adopt the refusal name it; absent in entries of an older weir. */
  recordedBy?: FailureRecorder
  /** A digest of the client proof (secret, keys) the refusal was got with: a holder with another one does not adopt it (leased-fetch.ts). */
  clientProof?: string
}

/** The process a refusal was recorded by: its engine id when it is an engine of a cluster, its host and pid. */
export interface FailureRecorder {
  engine?: string
  host: string
  pid: number
}

/**
 * One stored credential state: the current refresh token (refresh_token grant), the access token
 * last obtained, and the last terminal refusal.
 */
export interface StoredTokens {
  version: number
  refreshToken?: string
  accessToken?: string
  /**
   * What the access token is for (client, scopes, resources, audience, as a fingerprint).
   * Credentials may share one refresh token (one storeKey) and differ in resource or scope; each
   * uses only an access token obtained for its own.
   */
  accessTokenFor?: string
  /**
   * A digest of the client proof (secret, keys) the access token was obtained with (leased-fetch.ts
   * proofDigest): a holder with another one (a wrong secret on one engine) does not use it. Absent in
   * entries of an older weir, whose access token every holder uses.
   */
  accessTokenProof?: string
  tokenType?: string
  /** Epoch ms (local clock). */
  expiresAt?: number
  issuedAt?: number
  scope?: string
  extra?: Record<string, unknown>
  failure?: StoredFailure
  updatedAt: number
}

export type StoredTokensInput = Omit<StoredTokens, 'version' | 'updatedAt'>

/**
 * Versioned, encrypted token state with a lease, so that two providers (in one process, two
 * processes, or the engines of a cluster) never spend the same refresh token, and fetch one access
 * token per lifetime between them. The file store serves one machine; shared/store/postgres/oauth-state.ts
 * serves a cluster with the same semantics.
 */
export interface RefreshTokenStore {
  read(key: string): Promise<StoredTokens | undefined>
  /** Writes `value` as version `expectedVersion + 1` (0 = create); fails with ERR_STORE if the stored version differs. */
  write(key: string, value: StoredTokensInput, expectedVersion: number): Promise<StoredTokens>
  /**
   * Runs `fn` while holding the exclusive lease on `key` (across processes); a dead holder's lease
   * is taken over. `fn` gets the lease (stores that cannot tell a lost lease may pass none): it
   * confirms the lease before spending or writing a refresh token, since a lease lost meanwhile may
   * be another holder's now.
   */
  withLease<T>(key: string, fn: (lease?: Lease) => Promise<T>): Promise<T>
  /** The id of the engine this state is written for (an engine of a cluster), named in the refusals it records. */
  engineId?(): string | undefined
}

/**
 * A lease as its holder sees it. A renewal that finds the lease taken over or gone (or that cannot
 * be made before the lease would run out) aborts `signal` with a retryable ERR_STORE: the holder
 * stops spending and writing, and tries again under a new lease. The signal never aborts a request
 * already sent: its answer (a rotated refresh token) is the holder's to keep.
 */
export interface Lease {
  readonly signal: AbortSignal
  /** Renews the lease now; throws the signal's reason when it is lost. */
  confirm(): Promise<void>
}

/** The error a holder that lost its lease fails with (retryable: a new lease is taken for the next attempt). */
export function leaseLostError(key: string, why: string): WeirError {
  return new errorCodes.ERR_STORE(`lost the lease on "${key}" (${why}): another holder may have it, so nothing more is sent or written under it`, { retryable: true })
}

/**
 * The lease machinery both stores share: `renew()` (true when still held, false when lost, throws
 * when it could not tell) run every third of `ttlMs`, and by `confirm()`. A renewal that could not
 * tell counts as lost once `ttlMs` has passed since the last one that succeeded: another holder may
 * have taken the lease over by then.
 */
export function holdLease(key: string, ttlMs: number, renew: () => Promise<boolean>): Lease & { stop(): void } {
  const ac = new AbortController()
  let renewedAt = Date.now()
  const lose = (why: string) => {
    if (!ac.signal.aborted) ac.abort(leaseLostError(key, why))
  }
  const once = async (): Promise<void> => {
    if (ac.signal.aborted) return
    // Renewals that failed or hang (a database out of reach, a frozen process) for a whole TTL.
    if (Date.now() - renewedAt > ttlMs) return lose(`not renewed for ${ttlMs} ms`)
    const sentAt = Date.now()
    try {
      if (await renew()) renewedAt = Math.max(renewedAt, sentAt)
      else lose('taken over by another holder or removed')
    } catch (e) {
      if (Date.now() - renewedAt > ttlMs) lose(`not renewed for ${ttlMs} ms: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  const timer = setInterval(() => void once(), ttlMs / 3)
  return {
    signal: ac.signal,
    async confirm() {
      await once()
      ac.signal.throwIfAborted()
    },
    stop: () => clearInterval(timer),
  }
}

function storeError(message: string, cause?: unknown): WeirError {
  return new errorCodes.ERR_STORE(message, { cause, retryable: false })
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export interface FileStoreOptions {
  dir: string
  /**
   * The key: 32 bytes (a Buffer, or base64 text), or a passphrase, stretched with scrypt and the
   * store's salt (`<dir>/secret.salt`). Default: env WEIR_SECRET_KEY, else `<dir>/secret.key`
   * (created, mode 0600; refused when group or others may read it).
   */
  key?: string | Buffer
  /** Accept a `secret.key` that group or others may read (default: env WEIR_SECRET_KEY_ALLOW_OPEN_MODE=1, else false). */
  allowOpenKeyFile?: boolean
  /** A lease not renewed for this long (its holder renews it every third of it) is considered abandoned. Default 30 s. */
  leaseTtlMs?: number
  /** How long to wait for a lease before failing. Default 20 s. */
  leaseWaitMs?: number
  /**
   * Asked before a new store key is made (`secret.key`, or `secret.salt` for a passphrase), after
   * the store's own check that none is lost (see refuseNewKey); may refuse by throwing. The engine's
   * commands check there that the data directory's message store holds nothing sealed with a key.
   */
  beforeNewKey?: () => void | Promise<void>
}

/**
 * The key entries are encrypted with, and for a passphrase the key of entries an older Weir wrote
 * (envelope v1: SHA-256 of the passphrase), read until the entry's next write re-encrypts it.
 */
export interface StoreKeys { current: Buffer; legacy?: Buffer; /** Keys retired by `weir keys rotate-store-key`: entries they sealed are still read (and sealed with `current` at their next write). */ retired?: readonly Buffer[] }

// scrypt cost: 32 MiB and some 100 ms, once per store open.
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }

function deriveKey(passphrase: string, salt: Buffer): Promise<Buffer> {
  return new Promise((ok, fail) => scrypt(passphrase, salt, 32, SCRYPT, (e, k) => (e ? fail(e) : ok(k))))
}

/** The content of `file`, created with `make()` (mode 0600, exclusive) when missing; a racing creator's content wins. */
async function readOrCreate(file: string, make: () => string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw storeError(`cannot read ${file}`, e)
  }
  const text = make()
  try {
    const fh = await open(file, 'wx', 0o600)
    await fh.writeFile(text)
    await fh.close()
    return text
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return readFile(file, 'utf8')
    throw storeError(`cannot create ${file}`, e)
  }
}

/** The token entries of `dir` (`*.token`), and how many of them are sealed with a key derived with the salt (envelope v2). */
async function tokenEntries(dir: string): Promise<{ all: number; v2: number }> {
  const names = (await readdir(dir).catch((): string[] => [])).filter((f) => f.endsWith('.token'))
  const versionOf = (t: string): unknown => {
    try { return (JSON.parse(t) as { v?: unknown } | null)?.v } catch { return undefined } // unreadable: counted as sealed, not a crash
  }
  const versions = await Promise.all(names.map((f) => readFile(join(dir, f), 'utf8').then(versionOf, () => undefined)))
  return { all: names.length, v2: versions.filter((v) => v !== 1).length }
}

const entriesText = (n: number) => `${n} token store entr${n === 1 ? 'y' : 'ies'}`

/**
 * Refuses to make a new store key (`what`: a `secret.key`, or a `secret.salt` for a passphrase)
 * where there is evidence of an earlier one that is missing: a `secret.salt` without
 * `WEIR_SECRET_KEY` (a passphrase was in use), or token entries sealed with it. A new key would
 * leave them, and the messages sealed with the lost key, unreadable for good. `beforeNewKey` then
 * has its say.
 */
async function refuseNewKey(dir: string, what: 'secret.key' | 'secret.salt', beforeNewKey: FileStoreOptions['beforeNewKey']): Promise<void> {
  const keyFile = join(dir, 'secret.key')
  const saltFile = join(dir, 'secret.salt')
  const kept = 'Nothing was changed'
  if (what === 'secret.key' && existsSync(saltFile)) {
    throw storeError(`the store key was made from a passphrase (${saltFile} exists), but WEIR_SECRET_KEY is not set: set WEIR_SECRET_KEY to the passphrase the engine ran with. Weir makes no new ${keyFile}: it could not read what the passphrase's key encrypted. ${kept}`)
  }
  const entries = await tokenEntries(dir)
  if (what === 'secret.key' && entries.all > 0) {
    throw storeError(`the store key ${keyFile} is missing, but ${dir} holds ${entriesText(entries.all)} sealed with it: restore ${dir} (secret.key and retired.keys) from the backup of this data directory, or set WEIR_SECRET_KEY to the key or passphrase the engine ran with. Weir makes no new key: it could not read them (nor messages sealed with it). If that key is lost for good, remove the .token files and import or authorize the credentials again. ${kept}`)
  }
  if (what === 'secret.salt' && entries.v2 > 0 && existsSync(keyFile)) {
    throw storeError(`WEIR_SECRET_KEY is a passphrase, but ${dir} holds ${entriesText(entries.v2)} sealed with another key (${keyFile}, used while WEIR_SECRET_KEY is not set): a new salt would make a key that opens none of them. Unset WEIR_SECRET_KEY to go on with ${keyFile}. ${kept}`)
  }
  if (what === 'secret.salt' && entries.v2 > 0) {
    throw storeError(`WEIR_SECRET_KEY is a passphrase, but its salt ${saltFile} is missing while ${dir} holds ${entriesText(entries.v2)} sealed with the key it made: a new salt would make another key, and none of them could be read. Restore ${saltFile} from the backup of this data directory. ${kept}`)
  }
  await beforeNewKey?.()
}

/** The key in `<dir>/secret.key`, created when missing (unless refuseNewKey refuses); refused when others may read it or it is not 32 bytes. */
async function keyFromFile(dir: string, allowOpen: boolean, beforeNewKey: FileStoreOptions['beforeNewKey']): Promise<Buffer> {
  const file = join(dir, 'secret.key')
  if (!existsSync(file)) await refuseNewKey(dir, 'secret.key', beforeNewKey)
  const text = await readOrCreate(file, () => randomBytes(32).toString('base64') + '\n')
  const mode = (await stat(file)).mode & 0o777
  if (process.platform !== 'win32' && mode & 0o077 && !allowOpen) {
    throw storeError(`the store key ${file} may be read by group or others (mode 0${mode.toString(8)}); chmod 600 it (or set WEIR_SECRET_KEY_ALLOW_OPEN_MODE=1)`)
  }
  const key = Buffer.from(text.trim(), 'base64')
  if (key.length !== 32) throw storeError(`the store key ${file} must hold 32 bytes in base64; it holds ${key.length}`)
  return key
}

/** Whether a `WEIR_SECRET_KEY` is a key itself (32 bytes in base64), not a passphrase stretched with a salt. */
export const isRawKey = (given: string): boolean => /^[A-Za-z0-9+/=_-]+$/.test(given) && Buffer.from(given, 'base64').length === 32

/**
 * The keys of a `WEIR_SECRET_KEY`: 32 bytes (a Buffer, or base64 text) as they are; a passphrase
 * stretched with scrypt and the store's salt (`salt()` is asked only then, where the store keeps it).
 */
export async function keysOf(given: string | Buffer, salt: () => Promise<Buffer>): Promise<StoreKeys> {
  if (Buffer.isBuffer(given) && given.length === 32) return { current: given }
  if (typeof given === 'string' && isRawKey(given)) return { current: Buffer.from(given, 'base64') }
  const passphrase = given.toString()
  return { current: await deriveKey(passphrase, await salt()), legacy: createHash('sha256').update(passphrase).digest() }
}

async function loadKeys(dir: string, options: FileStoreOptions): Promise<StoreKeys> {
  const given = options.key ?? process.env.WEIR_SECRET_KEY
  if (given === undefined || given === '') {
    const current = await keyFromFile(dir, options.allowOpenKeyFile ?? process.env.WEIR_SECRET_KEY_ALLOW_OPEN_MODE === '1', options.beforeNewKey)
    return { current, retired: (await keyringIn(dir, current)).retired }
  }
  return keysOf(given, async () => {
    if (!existsSync(join(dir, 'secret.salt'))) await refuseNewKey(dir, 'secret.salt', options.beforeNewKey)
    const salt = Buffer.from((await readOrCreate(join(dir, 'secret.salt'), () => randomBytes(16).toString('base64') + '\n')).trim(), 'base64')
    if (salt.length < 16) throw storeError(`the store salt ${join(dir, 'secret.salt')} must hold at least 16 bytes in base64`)
    return salt
  })
}

/**
 * The store key of `dir` (the refresh tokens' and the message content's): `options.key`, else env
 * WEIR_SECRET_KEY, else `<dir>/secret.key` (created mode 0600 when missing), as for the token store.
 */
export async function loadStoreKey(dir: string, options: Omit<FileStoreOptions, 'dir'> = {}): Promise<Buffer> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`cannot create the store key directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e })
  }
  return (await loadKeys(dir, { ...options, dir })).current
}

/** The AES-256-GCM envelope of an entry, bound to its key (AAD). Version 2: the key is never a single hash of a passphrase. */
export function sealEntry(k: Buffer, key: string, entry: StoredTokens): string {
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', k, iv)
  c.setAAD(Buffer.from(key))
  const data = Buffer.concat([c.update(JSON.stringify(entry), 'utf8'), c.final()])
  return JSON.stringify({ v: 2, iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') })
}

/** The entry in an envelope (its secrets registered for redaction); throws when the key or the envelope is wrong. */
export function openEntry(keys: StoreKeys, key: string, text: string): StoredTokens {
  const env = JSON.parse(text) as { v: number; iv: string; tag: string; data: string }
  const candidates = env.v === 1 && keys.legacy ? [keys.legacy] : [keys.current, ...(keys.retired ?? [])]
  const open = (k: Buffer) => {
    const d = createDecipheriv('aes-256-gcm', k, Buffer.from(env.iv, 'base64'))
    d.setAAD(Buffer.from(key))
    d.setAuthTag(Buffer.from(env.tag, 'base64'))
    return JSON.parse(Buffer.concat([d.update(Buffer.from(env.data, 'base64')), d.final()]).toString('utf8')) as StoredTokens
  }
  let entry: StoredTokens | undefined
  for (const [i, k] of candidates.entries()) {
    try {
      entry = open(k)
      break
    } catch (e) {
      if (i === candidates.length - 1) throw e
    }
  }
  if (!entry) throw new Error('no key')
  if (entry.refreshToken) registerSecretValue(entry.refreshToken)
  if (entry.accessToken) registerSecretValue(entry.accessToken)
  return entry
}

/**
 * What a lock file holds: its owner's pid (a lock whose process is gone is taken over) and a random
 * nonce naming this one holding, so that a holder tells its own lock from one taken over after it
 * (by another process, or by another store in the same process).
 */
interface LockOwner { pid: number; at: number; nonce: string }

/**
 * Takes the lock file `lock` (exclusive create), taking over one whose owner is gone or that was not
 * renewed for `ttlMs` (its mtime); returns the nonce written into it.
 */
async function takeLock(lock: string, key: string, ttlMs: number, waitMs: number): Promise<string> {
  const deadline = Date.now() + waitMs
  const nonce = randomBytes(16).toString('hex')
  let delay = 5
  for (;;) {
    try {
      const fh = await open(lock, 'wx', 0o600)
      await fh.writeFile(JSON.stringify({ pid: process.pid, at: Date.now(), nonce } satisfies LockOwner))
      await fh.close()
      return nonce
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw storeError(`cannot take the lease on "${key}"`, e)
    }
    try {
      const [info, st] = await Promise.all([readFile(lock, 'utf8').then((t) => JSON.parse(t) as { pid: number; at: number }).catch(() => undefined), stat(lock)])
      const age = Date.now() - st.mtimeMs
      if ((info && !pidAlive(info.pid)) || age > ttlMs || (!info && age > 1000)) {
        await unlink(lock).catch(() => undefined)
        continue
      }
    } catch {
      continue // the lock vanished between open and stat: try again at once
    }
    if (Date.now() > deadline) throw storeError(`timed out after ${waitMs} ms waiting for the lease on "${key}"`)
    await sleep(delay)
    delay = Math.min(50, delay * 2)
  }
}

/** Whether `lock` is still the one taken with `nonce` (not removed, nor taken over after it aged out). */
async function holdsLock(lock: string, nonce: string): Promise<boolean> {
  const owner = await readFile(lock, 'utf8').then((t) => JSON.parse(t) as Partial<LockOwner>).catch(() => undefined)
  return owner?.nonce === nonce
}

/**
 * Keeps a held lock young (its mtime is the age takeLock reads) every third of `ttlMs`, as the
 * PostgreSQL store renews its lease: a token request may outlast the TTL, and a lock that ages out
 * while held lets a second holder spend the same refresh token. A lock found removed or taken over
 * (another nonce) is lost: the lease's signal aborts.
 */
function renewLock(lock: string, key: string, nonce: string, ttlMs: number): Lease & { stop(): void } {
  return holdLease(key, ttlMs, async () => {
    if (!(await holdsLock(lock, nonce))) return false
    try {
      await utimes(lock, new Date(), new Date())
      return true
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw e
    }
  })
}

/** Removes `lock` if it is still ours: one taken over after ours aged out is the new holder's. */
async function releaseLock(lock: string, nonce: string): Promise<void> {
  if (await holdsLock(lock, nonce)) await unlink(lock).catch(() => undefined)
}

/**
 * The default store: one AES-256-GCM encrypted file per key under `dir` (mode 0600, written
 * atomically), versioned, with a lease that is an exclusive lock file (`open(…, 'wx')`) holding the
 * owner's pid and a nonce, renewed while held; a lock whose process is gone or that was not renewed
 * for `leaseTtlMs` is taken over, and a holder removes only its own lock.
 *
 * @example
 * const store = createRefreshTokenStore({ dir: 'data/oauth' })
 * await importRefreshToken(store, 'epic', refreshToken)
 */
export function createRefreshTokenStore(options: FileStoreOptions): RefreshTokenStore {
  const dir = options.dir
  const leaseTtlMs = options.leaseTtlMs ?? 30_000
  const leaseWaitMs = options.leaseWaitMs ?? 20_000
  let keyP: Promise<StoreKeys> | undefined
  const ready = async () => {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    return (keyP ??= loadKeys(dir, options))
  }
  const fileOf = (key: string) => join(dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.token`)
  /** Which key the store uses, for an entry it cannot open. */
  const keyName = () => {
    const given = options.key ?? process.env.WEIR_SECRET_KEY
    if (given === undefined || given === '') return join(dir, 'secret.key')
    return Buffer.isBuffer(given) || isRawKey(given) ? 'from WEIR_SECRET_KEY' : `from the passphrase WEIR_SECRET_KEY and ${join(dir, 'secret.salt')}`
  }

  async function read(key: string): Promise<StoredTokens | undefined> {
    const k = await ready()
    let text: string
    try {
      text = await readFile(fileOf(key), 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw storeError(`cannot read the token store entry for "${key}"`, e)
    }
    try {
      return openEntry(k, key, text)
    } catch {
      throw storeError(`the token store entry for "${key}" cannot be decrypted with the store key ${keyName()}${k.retired?.length ? ' nor a retired one' : ''}: it was sealed with another key, or the file is corrupt`)
    }
  }

  async function write(key: string, value: StoredTokensInput, expectedVersion: number): Promise<StoredTokens> {
    const k = await ready()
    const current = await read(key)
    if ((current?.version ?? 0) !== expectedVersion) throw storeError(`token store entry "${key}" changed: expected version ${expectedVersion}, found ${current?.version ?? 0}`)
    const entry: StoredTokens = { ...value, version: expectedVersion + 1, updatedAt: Date.now() }
    const file = fileOf(key)
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    await writeFile(tmp, sealEntry(k.current, key, entry), { mode: 0o600 })
    await chmod(tmp, 0o600)
    await rename(tmp, file)
    return entry
  }

  async function withLease<T>(key: string, fn: (lease?: Lease) => Promise<T>): Promise<T> {
    await ready()
    const lock = `${fileOf(key)}.lock`
    const nonce = await takeLock(lock, key, leaseTtlMs, leaseWaitMs)
    const lease = renewLock(lock, key, nonce, leaseTtlMs)
    try {
      return await fn(lease)
    } finally {
      lease.stop()
      await releaseLock(lock, nonce)
    }
  }

  return { read, write, withLease }
}

/** Stores a refresh token obtained outside the engine (`weir credentials import`), as a new version. */
export async function importRefreshToken(store: RefreshTokenStore, key: string, refreshToken: string): Promise<StoredTokens> {
  registerSecretValue(refreshToken)
  return store.withLease(key, async (lease) => {
    const current = await store.read(key)
    await lease?.confirm()
    return store.write(key, { refreshToken }, current?.version ?? 0)
  })
}
