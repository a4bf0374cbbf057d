import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { errorCodes } from '../shared/errors.ts'
import { loadStoreKey } from '../shared/oauth/refresh-store.ts'
import { contentCipher } from '../shared/store/encrypted.ts'
import { keyIdOf, keyringIn, rotateKeyFile } from '../shared/store/keyring.ts'
import { reencryptSqlite } from '../shared/store/sqlite/reencrypt.ts'
import type { CommandIO } from './cli-io.ts'

/** How long re-encryption goes on looking for values a running engine sealed before it noticed the new key (it checks every 2 s). */
const ENGINE_PICKUP_MS = 5000

/**
 * `weir keys rotate-store-key`: a new store key in `<data-dir>/oauth/secret.key`, the old one kept in
 * `retired.keys` (still opening what it sealed), then every message value sealed with an older key
 * sealed again with the new one, in small batches beside a running engine.
 */
export async function rotateStoreKey(dataDir: string, io: CommandIO, options: { settleMs?: number } = {}): Promise<number> {
  if (io.env.WEIR_SECRET_KEY) {
    throw new errorCodes.ERR_USAGE('the store key comes from WEIR_SECRET_KEY: rotate-store-key rotates the key file <data-dir>/oauth/secret.key only. Unset WEIR_SECRET_KEY to use a key file, or keep the passphrase')
  }
  const dir = join(dataDir, 'oauth')
  // Never a key made up here: a mistyped --data-dir would be "rotated" while the engine's key stays as it was.
  const keyFile = join(dir, 'secret.key')
  if (!existsSync(keyFile)) {
    throw new errorCodes.ERR_FILE_ACCESS(`no store key ${keyFile}: ${dataDir} is not the data directory of an engine that has a store key to rotate (check --data-dir or WEIR_DATA_DIR); nothing was changed`)
  }
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
  return 0
}
