import { closeSync, existsSync, openSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { errorCodes } from '../shared/errors.ts'
import { StoreError } from '../shared/store/errors.ts'
import { loadStoreKey } from '../shared/oauth/refresh-store.ts'
import { contentCipher } from '../shared/store/encrypted.ts'
import { keyIdOf, keyringIn, rotateKeyFile } from '../shared/store/keyring.ts'
import { reencryptSqlite } from '../shared/store/sqlite/reencrypt.ts'
import { sealedInSqlite } from '../shared/store/sqlite/sealed-scan.ts'
import type { CommandIO } from './cli-io.ts'
import { refuseNewKeyOverLostOne } from './store-key-guard.ts'

/** How long re-encryption goes on looking for values a running engine sealed before it noticed the new key (it checks every 2 s). */
const ENGINE_PICKUP_MS = 5000

/** Exit status of a rotation that re-encrypted everything but could not truncate the WAL (a reader held it). */
export const WAL_NOT_TRUNCATED = 3

/**
 * Takes `<key dir>/rotate.lock`, held while one rotation runs: a second one at the same time would
 * retire keys and re-encrypt in an order of its own. The data directory's `weir.lock` is the running
 * engine's, beside which a rotation runs, so the rotation has a lock of its own: an SQLite write
 * lock on that file (a lock of the file system, released by the system if the process dies: never
 * stale). The file stays (removing it would let a third run lock a new file beside a held one).
 * Returns the release.
 */
function lockRotation(dir: string): () => void {
  const file = join(dir, 'rotate.lock')
  closeSync(openSync(file, 'a', 0o600))
  const db = new Database(file)
  try {
    db.pragma('busy_timeout = 0')
    db.exec('BEGIN IMMEDIATE')
  } catch (e) {
    db.close()
    if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e
    throw new StoreError(`another weir keys rotate-store-key is running on this data directory (it holds the lock ${file}); nothing was changed: let it finish, then run it again if still needed`)
  }
  return () => {
    db.exec('ROLLBACK')
    db.close()
  }
}

/**
 * Why there is no key file to rotate, as an error: not an engine's data directory (a mistyped
 * --data-dir); a key made from a passphrase (WEIR_SECRET_KEY, not rotated here); a key that is
 * missing while values sealed with it are left; or no key at all, the content being stored in clear.
 */
function refuseWithoutKeyFile(dataDir: string, dir: string, keyFile: string): never {
  const db = join(dataDir, 'weir.db')
  if (![db, join(dataDir, 'weir.lock'), dir].some((f) => existsSync(f))) {
    throw new errorCodes.ERR_FILE_ACCESS(`no store key ${keyFile}: ${dataDir} is not the data directory of an engine that has a store key to rotate (check --data-dir or WEIR_DATA_DIR); nothing was changed`)
  }
  const salt = join(dir, 'secret.salt')
  if (existsSync(salt)) {
    throw new StoreError(`the store key of ${dataDir} is made from a passphrase (${salt} exists): the engine runs with WEIR_SECRET_KEY, and a key given as WEIR_SECRET_KEY is not rotated by this command (see "Rotating the key" in the README); nothing was changed`)
  }
  refuseNewKeyOverLostOne(dir, dataDir, undefined, () => sealedInSqlite(db))
  const tokens = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.token')).length : 0
  if (tokens > 0) {
    throw new StoreError(`the store key ${keyFile} is missing, but ${dir} holds ${tokens} refresh-token entr${tokens === 1 ? 'y' : 'ies'} sealed with it: restore ${dir} (secret.key and retired.keys) from the backup of this data directory; nothing was changed`)
  }
  throw new StoreError(`${dataDir} has no store key (${keyFile} does not exist): its message content is not encrypted and it holds no refresh token, so there is no key to rotate; nothing was changed. To encrypt message content, run the engine with weir run --encrypt-content (or options.encryptContent in a channel): it makes ${keyFile} at its start, or uses WEIR_SECRET_KEY (see "Encryption of message content" in the README)`)
}

/**
 * `weir keys rotate-store-key`: a new store key in `<data-dir>/oauth/secret.key`, the old one kept in
 * `retired.keys` (still opening what it sealed), then every message value sealed with an older key
 * sealed again with the new one, in small batches beside a running engine. One at a time per data
 * directory ({@link lockRotation}). Ends with the WAL truncated, or exit status 3 saying it is not.
 */
export async function rotateStoreKey(dataDir: string, io: CommandIO, options: { settleMs?: number } = {}): Promise<number> {
  if (io.env.WEIR_SECRET_KEY) {
    throw new StoreError('the store key comes from WEIR_SECRET_KEY: rotate-store-key rotates the key file <data-dir>/oauth/secret.key of a single engine only. A key given as WEIR_SECRET_KEY (as every cluster on PostgreSQL has) cannot be rotated: changing the variable makes what the old key sealed unreadable (README "Rotating the key"). A single engine may unset WEIR_SECRET_KEY to use a key file, or keep the passphrase')
  }
  const dir = join(dataDir, 'oauth')
  // Never a key made up here: a mistyped --data-dir would be "rotated" while the engine's key stays as it was.
  const keyFile = join(dir, 'secret.key')
  if (!existsSync(keyFile)) refuseWithoutKeyFile(dataDir, dir, keyFile)
  const release = lockRotation(dir)
  try {
    return await rotateLocked(dataDir, dir, io, options)
  } finally {
    release()
  }
}

async function rotateLocked(dataDir: string, dir: string, io: CommandIO, options: { settleMs?: number }): Promise<number> {
  const old = await keyringIn(dir, await loadStoreKey(dir))
  const next = await rotateKeyFile(dir, old)
  io.out(`store key rotated: ${keyIdOf(next.current)} seals from now on; ${keyIdOf(old.current)} is retired (kept in ${join(dir, 'retired.keys')} to read what it sealed)`)
  const db = join(dataDir, 'weir.db')
  if (!existsSync(db)) {
    io.out('no message store in this data directory: nothing to re-encrypt')
    return 0
  }
  const done = await reencryptSqlite(db, contentCipher(next), { settleMs: options.settleMs ?? ENGINE_PICKUP_MS })
  io.out(`re-encrypted ${done.values} values of ${db} with ${keyIdOf(next.current)} (${done.passes} passes); a running engine seals with it within seconds.`)
  if (done.unreadable > 0) {
    io.err(`${done.unreadable} value(s) of ${db} could not be opened with any key of the keyring (sealed with a key it no longer holds, or altered): left as they are; every other value was re-encrypted`)
  }
  io.out('Refresh-token entries move to the new key at their next write; keep retired.keys while any may still use an older key.')
  if (!done.walTruncated) {
    io.err(`a reader of ${db} (a weir messages or weir backup reading meanwhile) kept its WAL from being checkpointed and truncated: values as ${keyIdOf(old.current)} (now retired) sealed them may still be in ${db}-wal and in pages of ${db} the checkpoint has not reached. Once no reader is left, run weir keys rotate-store-key again, or stop the engine (closing the store checkpoints and removes the WAL).`)
    return WAL_NOT_TRUNCATED
  }
  io.out(`${db}-wal checkpointed into ${db} and truncated: no copy of a re-encrypted value as an older key sealed it is left in either (old ciphertexts overwritten, secure_delete).`)
  return 0
}
