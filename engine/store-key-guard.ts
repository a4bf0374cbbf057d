import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { isRawKey } from '../shared/oauth/refresh-store.ts'
import { StoreError } from '../shared/store/errors.ts'
import { sealedInSqlite, type SealedSummary } from '../shared/store/sqlite/sealed-scan.ts'
import { keyIdOf, type StoreKeyring } from '../shared/store/keyring.ts'

/** "2 message(s) encrypted with key 2a5faac7c279" (the keys' public ids, never the keys). */
function whatIsSealed(s: SealedSummary): string {
  const ids = s.keyIds.slice(0, 5).map((id) => (id === 'v1' ? 'an unnamed (v1) key' : id)).join(', ')
  return `${s.messages} message(s) encrypted with key ${ids}${s.keyIds.length > 5 ? ', …' : ''}`
}

/** How an operator whose key is lost for good starts over, said with every refusal. */
const startOver = (dataDir: string) =>
  `If that key is lost for good, those messages can never be read: move ${join(dataDir, 'weir.db')} (with -wal and -shm) aside, and keep it (the key, found later, still opens it), to start with an empty store. Nothing was changed`

/**
 * Refuses to let a new store key be made (a new `secret.key`, or a new `secret.salt` for a
 * passphrase) where there is evidence an existing one is missing: a `secret.salt` without
 * `WEIR_SECRET_KEY` (a passphrase was in use), or a store already holding values sealed with some
 * key. A new key would leave every sealed message unreadable (in error at its claim), silently.
 * `sealed` is asked only when the key files are missing. Throws `ERR_STORE` (a user error) saying
 * what is missing and how to fix it.
 */
export function refuseNewKeyOverLostOne(dir: string, dataDir: string, secretKey: string | undefined, sealed: () => SealedSummary | undefined): void {
  const keyFile = join(dir, 'secret.key')
  const saltFile = join(dir, 'secret.salt')
  if (secretKey && isRawKey(secretKey)) return
  if (secretKey) {
    if (existsSync(saltFile)) return
    const s = sealed()
    if (!s?.messages) return
    throw new StoreError(`WEIR_SECRET_KEY is a passphrase, but its salt ${saltFile} is missing while the store holds ${whatIsSealed(s)}: a new salt would make another key, and none of them could be read. Restore ${dir} (secret.salt) from the backup of this data directory. ${startOver(dataDir)}`)
  }
  if (existsSync(keyFile)) return
  const s = sealed()
  const held = s?.messages ? ` The store holds ${whatIsSealed(s)}.` : ''
  if (existsSync(saltFile)) {
    throw new StoreError(`the store key was made from a passphrase (${saltFile} exists), but WEIR_SECRET_KEY is not set: set WEIR_SECRET_KEY to the passphrase the engine ran with. Weir makes no new ${keyFile}: it could not read what the passphrase's key encrypted.${held} ${startOver(dataDir)}`)
  }
  if (!s?.messages) return
  throw new StoreError(`the store key ${keyFile} is missing, but the store holds ${whatIsSealed(s)}: restore ${dir} (secret.key and retired.keys) from the backup of this data directory, or set WEIR_SECRET_KEY to the key or passphrase the engine ran with. Weir makes no new key: it could not read them. ${startOver(dataDir)}`)
}

/**
 * The `beforeNewKey` hook of the refresh-token store of `dataDir` (createRefreshTokenStore), for the
 * commands that open it (`weir token`, `weir credentials`): no new store key while the data
 * directory's message store holds messages sealed with a key (see refuseNewKeyOverLostOne).
 *
 * @example
 * createRefreshTokenStore({ dir: join(dataDir, 'oauth'), beforeNewKey: newStoreKeyGuard(dataDir, env.WEIR_SECRET_KEY) })
 */
export function newStoreKeyGuard(dataDir: string, secretKey: string | undefined): () => void {
  return () => refuseNewKeyOverLostOne(join(dataDir, 'oauth'), dataDir, secretKey, () => sealedInSqlite(join(dataDir, 'weir.db')))
}

/**
 * Refuses an engine's start when messages still to be processed are sealed with keys the keyring
 * does not hold (a wrong `WEIR_SECRET_KEY`, a `secret.key` from another data directory, a retired
 * key removed): each would go to error at its claim. Values sealed without a key id (v1) cannot be
 * checked here and are let through.
 */
export async function refuseKeyringWithoutPendingKeys(pending: SealedSummary | undefined, keyring: () => Promise<StoreKeyring>, where: string): Promise<void> {
  if (!pending?.messages) return
  const ring = await keyring()
  const held = new Set([ring.current, ...ring.retired].map(keyIdOf))
  const missing = pending.keyIds.flatMap((id, i) => (id !== 'v1' && !held.has(id) ? [{ id, n: pending.counts[i]! }] : []))
  if (missing.length === 0) return
  const n = missing.reduce((sum, m) => sum + m.n, 0)
  throw new StoreError(`the store key (${where}) opens none of ${n} message(s) waiting to be processed: they are encrypted with key ${missing.slice(0, 5).map((m) => m.id).join(', ')}${missing.length > 5 ? ', …' : ''}, and the keyring holds ${[...held].join(', ')}. Set WEIR_SECRET_KEY to the key or passphrase the engine ran with (or restore secret.key and retired.keys); started anyway, the engine would put each of them in error. Nothing was changed`)
}
