import { createHash, hkdfSync, randomBytes } from 'node:crypto'
import { chmod, open, readFile, rename, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { syncDir } from '../sync-dir.ts'
import { StoreError } from './errors.ts'

/**
 * The keys message content is encrypted with: `current` seals, `retired` keys (after
 * `weir keys rotate-store-key`) still open what they sealed until it is re-encrypted, and `index`
 * keys the hashes of dedupe, order and search keys. The index key stays the one the store first
 * used, so that hashes written before a rotation still match the ones written after (order per key
 * and duplicates hold across it).
 */
export interface StoreKeyring {
  current: Buffer
  retired: readonly Buffer[]
  index: Buffer
}

/** The short public name of a key, written with each value it seals (not secret: a hash of a derived value). */
export function keyIdOf(key: Buffer): string {
  return createHash('sha256').update(Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'weir key id', 32))).digest('hex').slice(0, 12)
}

export const keyringOf = (key: Buffer): StoreKeyring => ({ current: key, retired: [], index: key })

/** The file beside `secret.key` holding the retired keys and the index key (JSON, mode 0600). */
export const RETIRED_FILE = 'retired.keys'

interface RetiredFile { retired: string[]; index: string }

/**
 * The keyring of the key directory `dir` (`<data-dir>/oauth`) around its current key. Its key list
 * is refused when group or others may read it, as `secret.key` is, and accepted as that one is with
 * `WEIR_SECRET_KEY_ALLOW_OPEN_MODE=1` (a file system that cannot hold modes).
 */
export async function keyringIn(dir: string, current: Buffer, options: { allowOpen?: boolean } = {}): Promise<StoreKeyring> {
  const allowOpen = options.allowOpen ?? process.env.WEIR_SECRET_KEY_ALLOW_OPEN_MODE === '1'
  const file = join(dir, RETIRED_FILE)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return keyringOf(current)
    throw new StoreError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`)
  }
  const mode = (await stat(file)).mode & 0o777
  if (process.platform !== 'win32' && mode & 0o077 && !allowOpen) throw new StoreError(`${file} may be read by group or others (mode 0${mode.toString(8)}); chmod 600 it (or set WEIR_SECRET_KEY_ALLOW_OPEN_MODE=1)`)
  try {
    const f = JSON.parse(text) as RetiredFile
    const key = (b64: string) => {
      const k = Buffer.from(b64, 'base64')
      if (k.length !== 32) throw new Error('a key is not 32 bytes')
      return k
    }
    return { current, retired: f.retired.map(key), index: key(f.index) }
  } catch (e) {
    throw new StoreError(`${file} is not a valid key list: ${(e as Error).message}`)
  }
}

/**
 * Writes `text` to `file` (mode 0600) through a temporary file and a rename, so a reader never sees
 * half of it, then syncs the directory: the rename itself must survive a power loss, or a store
 * re-encrypted (and fsynced) under a new key would come back beside the old key file.
 */
async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(text)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await chmod(tmp, 0o600)
  await rename(tmp, file)
  await syncDir(dirname(file))
}

/**
 * Rotates the key file of `dir`: the current key joins the retired keys (the first one ever also
 * stays the index key), then a new random key becomes `secret.key`. Returns the new keyring.
 */
export async function rotateKeyFile(dir: string, ring: StoreKeyring): Promise<StoreKeyring> {
  const next: StoreKeyring = { current: randomBytes(32), retired: [ring.current, ...ring.retired], index: ring.index }
  // Retired first: a crash between the two writes leaves the old key current and also listed, which is harmless.
  await replaceFile(join(dir, RETIRED_FILE), JSON.stringify({ retired: next.retired.map((k) => k.toString('base64')), index: next.index.toString('base64') }) + '\n')
  await replaceFile(join(dir, 'secret.key'), next.current.toString('base64') + '\n')
  return next
}

/** Drops the retired keys (once nothing sealed with them is left); the index key stays. */
export async function dropRetiredKeys(dir: string, ring: StoreKeyring): Promise<void> {
  await replaceFile(join(dir, RETIRED_FILE), JSON.stringify({ retired: [], index: ring.index.toString('base64') }) + '\n')
}
