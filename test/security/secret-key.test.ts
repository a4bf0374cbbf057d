import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createCipheriv, createDecipheriv, createHash, randomBytes, scryptSync } from 'node:crypto'
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRefreshTokenStore, importRefreshToken } from '../../shared/oauth/index.ts'
import { loadStoreKey } from '../../shared/oauth/refresh-store.ts'
import { tempDir } from '../_setup.ts'

// Findings: the refresh-token store did not check an existing secret.key, and a WEIR_SECRET_KEY
// passphrase became the key through one SHA-256.
const PASSPHRASE = 'correct horse battery staple'
let d: Awaited<ReturnType<typeof tempDir>>
let dir: string
beforeEach(async () => {
  d = await tempDir('weir-sec-key-')
  dir = join(d.dir, 'oauth')
  await mkdir(dir, { recursive: true })
})
afterEach(async () => { await d.cleanup() })

/** An entry as the previous Weir wrote it: envelope v1, AES-256-GCM under `k`. */
function legacyEnvelope(k: Buffer, key: string, refreshToken: string): string {
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', k, iv)
  c.setAAD(Buffer.from(key))
  const data = Buffer.concat([c.update(JSON.stringify({ refreshToken, version: 1, updatedAt: 1 }), 'utf8'), c.final()])
  return JSON.stringify({ v: 1, iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') })
}

function opens(k: Buffer, key: string, text: string): boolean {
  const env = JSON.parse(text) as { iv: string; tag: string; data: string }
  const dec = createDecipheriv('aes-256-gcm', k, Buffer.from(env.iv, 'base64'))
  dec.setAAD(Buffer.from(key))
  dec.setAuthTag(Buffer.from(env.tag, 'base64'))
  try { dec.update(Buffer.from(env.data, 'base64')); dec.final(); return true } catch { return false }
}

const entryFile = (key: string) => join(dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.token`)

describe('the store key file', () => {
  it('a secret.key that group or others may read is refused with a clear error (unless allowed)', async () => {
    await writeFile(join(dir, 'secret.key'), randomBytes(32).toString('base64') + '\n')
    await chmod(join(dir, 'secret.key'), 0o644)
    const err = await createRefreshTokenStore({ dir }).read('epic').catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_STORE', `the store key ${join(dir, 'secret.key')} may be read by group or others (mode 0644); chmod 600 it (or set WEIR_SECRET_KEY_ALLOW_OPEN_MODE=1)`])
    expect(await createRefreshTokenStore({ dir, allowOpenKeyFile: true }).read('epic')).toBeUndefined()
  })

  it('a secret.key that does not hold 32 bytes is refused', async () => {
    await writeFile(join(dir, 'secret.key'), randomBytes(16).toString('base64') + '\n', { mode: 0o600 })
    const err = await createRefreshTokenStore({ dir }).read('epic').catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_STORE', `the store key ${join(dir, 'secret.key')} must hold 32 bytes in base64; it holds 16`])
  })

  it('a key directory under a regular file is a user error naming it, not an internal one', async () => {
    const file = join(d.dir, 'not-a-dir')
    await writeFile(file, 'x')
    const err = await loadStoreKey(join(file, 'oauth')).catch((e) => e)
    expect([err.code, err.userError, err.message]).toEqual(['ERR_FILE_ACCESS', true, `cannot create the store key directory ${join(file, 'oauth')}: ENOTDIR`])
  })

  it('a key file and an entry written by the previous version still open', async () => {
    const k = randomBytes(32)
    await writeFile(join(dir, 'secret.key'), k.toString('base64') + '\n', { mode: 0o600 })
    await writeFile(entryFile('epic'), legacyEnvelope(k, 'epic', 'rt-old-key-file'), { mode: 0o600 })
    expect((await createRefreshTokenStore({ dir }).read('epic'))?.refreshToken).toBe('rt-old-key-file')
    expect(((await stat(join(dir, 'secret.key'))).mode & 0o777)).toBe(0o600)
  })
})

describe('a WEIR_SECRET_KEY passphrase', () => {
  it('is stretched with scrypt and the store salt, not one SHA-256', async () => {
    await importRefreshToken(createRefreshTokenStore({ dir, key: PASSPHRASE }), 'epic', 'rt-scrypt-1')
    const salt = Buffer.from((await readFile(join(dir, 'secret.salt'), 'utf8')).trim(), 'base64')
    expect(salt.length).toBe(16)
    expect((await stat(join(dir, 'secret.salt'))).mode & 0o777).toBe(0o600)
    const text = await readFile(entryFile('epic'), 'utf8')
    expect(JSON.parse(text).v).toBe(2)
    expect(opens(createHash('sha256').update(PASSPHRASE).digest(), 'epic', text)).toBe(false)
    expect(opens(scryptSync(PASSPHRASE, salt, 32, { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }), 'epic', text)).toBe(true)
    expect((await createRefreshTokenStore({ dir, key: PASSPHRASE }).read('epic'))?.refreshToken).toBe('rt-scrypt-1')
    const err = await createRefreshTokenStore({ dir, key: 'another passphrase' }).read('epic').catch((e) => e)
    expect(err.code).toBe('ERR_STORE')
  })

  it('an entry the previous version wrote under the passphrase still opens, and its next write re-encrypts it with scrypt', async () => {
    const legacy = createHash('sha256').update(PASSPHRASE).digest()
    await writeFile(entryFile('epic'), legacyEnvelope(legacy, 'epic', 'rt-legacy'), { mode: 0o600 })
    const store = createRefreshTokenStore({ dir, key: PASSPHRASE })
    expect((await store.read('epic'))?.refreshToken).toBe('rt-legacy')
    await importRefreshToken(store, 'epic', 'rt-rotated')
    const text = await readFile(entryFile('epic'), 'utf8')
    expect([JSON.parse(text).v, opens(legacy, 'epic', text)]).toEqual([2, false])
    expect((await createRefreshTokenStore({ dir, key: PASSPHRASE }).read('epic'))?.refreshToken).toBe('rt-rotated')
    expect((await readdir(dir)).sort()).toEqual([entryFile('epic').split('/').at(-1), 'secret.salt'].sort())
  })
})
