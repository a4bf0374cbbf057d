// weir keys rotate-store-key on the data directory of an engine that has no store key file: says
// what the directory holds (content in clear, a passphrase's key, sealed values whose key is
// missing) instead of calling it the wrong directory; changes nothing.
import { existsSync } from 'node:fs'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'
import { tempDir } from '../_setup.ts'
import { openSqliteStore } from '../../shared/store/index.ts'

let root: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { root = await tempDir('weir-rotate-no-key-') })
afterAll(() => root.cleanup())

/** A data directory whose store holds one message, stored in clear, and no store key. */
async function clearDataDir(name: string): Promise<string> {
  const dataDir = join(root.dir, name)
  const store = openSqliteStore({ dataDir })
  await store.enqueue('adt', { body: { mrn: '42' } })
  await store.close()
  return dataDir
}

const rotate = (dataDir: string) => runCli(['keys', 'rotate-store-key', '--data-dir', dataDir], {})

describe('weir keys rotate-store-key without a store key file', () => {
  it('content in clear: says the store has no key and how to start encrypting; makes no key', async () => {
    const dataDir = await clearDataDir('clear')
    const before = await readdir(dataDir)
    const keyFile = join(dataDir, 'oauth', 'secret.key')
    const r = await rotate(dataDir)
    expect([r.code, r.out, r.err]).toEqual([1, '', `weir keys: ${dataDir} has no store key (${keyFile} does not exist): its message content is not encrypted and it holds no refresh token, so there is no key to rotate; nothing was changed. To encrypt message content, run the engine with weir run --encrypt-content (or options.encryptContent in a channel): it makes ${keyFile} at its start, or uses WEIR_SECRET_KEY (see "Encryption of message content" in the README)\n`])
    expect(existsSync(keyFile)).toBe(false)
    expect(await readdir(dataDir)).toEqual(before)
  })

  it('a passphrase\'s key (secret.salt, WEIR_SECRET_KEY not set here): says it is not rotated by this command', async () => {
    const dataDir = await clearDataDir('passphrase')
    await mkdir(join(dataDir, 'oauth'), { mode: 0o700 })
    await writeFile(join(dataDir, 'oauth', 'secret.salt'), 'c2FsdA==\n', { mode: 0o600 })
    const r = await rotate(dataDir)
    expect([r.code, r.err]).toEqual([1, `weir keys: the store key of ${dataDir} is made from a passphrase (${join(dataDir, 'oauth', 'secret.salt')} exists): the engine runs with WEIR_SECRET_KEY, and a key given as WEIR_SECRET_KEY is not rotated by this command (see "Rotating the key" in the README); nothing was changed\n`])
    expect(existsSync(join(dataDir, 'oauth', 'secret.key'))).toBe(false)
  })

  it('messages sealed with a key that is missing (a backup restored without oauth/): says to restore it', async () => {
    const dataDir = await clearDataDir('sealed')
    const db = new Database(join(dataDir, 'weir.db'))
    db.prepare('UPDATE message_content SET body = ?').run(JSON.stringify('weir:enc:v2:abcdef123456:AAAA'))
    db.close()
    const r = await rotate(dataDir)
    expect(r.code).toBe(1)
    expect(r.err).toContain(`weir keys: the store key ${join(dataDir, 'oauth', 'secret.key')} is missing, but the store holds 1 message(s) encrypted with key abcdef123456: restore ${join(dataDir, 'oauth')} (secret.key and retired.keys) from the backup of this data directory`)
    expect(existsSync(join(dataDir, 'oauth', 'secret.key'))).toBe(false)
  })

  it('refresh-token entries sealed with a key that is missing: says to restore it', async () => {
    const dataDir = await clearDataDir('tokens')
    await mkdir(join(dataDir, 'oauth'), { mode: 0o700 })
    await writeFile(join(dataDir, 'oauth', 'epic.token'), '{"v":2}', { mode: 0o600 })
    const r = await rotate(dataDir)
    expect([r.code, r.err]).toEqual([1, `weir keys: the store key ${join(dataDir, 'oauth', 'secret.key')} is missing, but ${join(dataDir, 'oauth')} holds 1 refresh-token entry sealed with it: restore ${join(dataDir, 'oauth')} (secret.key and retired.keys) from the backup of this data directory; nothing was changed\n`])
    expect(existsSync(join(dataDir, 'oauth', 'secret.key'))).toBe(false)
    await rm(join(dataDir, 'oauth'), { recursive: true })
  })
})
