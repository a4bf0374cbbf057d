// `weir token` and `weir credentials import|authorize` open the refresh-token store, whose key is
// the store key: they never make a new one where an earlier key is evidently lost (a secret.salt
// without WEIR_SECRET_KEY, token entries sealed with it, messages sealed with it in the data
// directory's store). A new key would pass the engine's own check afterwards, and every queued
// sealed message would go to error. No test prints a key, a passphrase, a token or a body.
import { afterEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { encryptContent } from '../../shared/store/encrypted.ts'
import { keyIdOf } from '../../shared/store/keyring.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { createRefreshTokenStore, importRefreshToken, loadStoreKey } from '../../shared/oauth/refresh-store.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { weir } from './_at-rest.ts'

const MRN = 'MRN-LOSTKEY-CMD-5521'
const PASSPHRASE = 'correct horse battery'
const REFRESH = 'rt-lost-key-refresh-token-value'

let dir: Awaited<ReturnType<typeof tempDir>>
const dataOf = () => join(dir.path, 'data')
const oauthOf = () => join(dataOf(), 'oauth')
const files = async () => (await readdir(oauthOf()).catch((): string[] => [])).sort()

let savedSecret: string | undefined
afterEach(async () => {
  if (savedSecret === undefined) delete process.env.WEIR_SECRET_KEY
  else process.env.WEIR_SECRET_KEY = savedSecret
  await dir?.remove()
})
savedSecret = process.env.WEIR_SECRET_KEY
delete process.env.WEIR_SECRET_KEY

/** Queues a message sealed with `key`, as an engine that ran with it left it. */
async function queueSealed(key: Buffer): Promise<void> {
  const store = encryptContent(openSqliteStore({ dataDir: dataOf() }), { key: async () => key, channels: true })
  await store.enqueue('at-rest', { body: { mrn: MRN } })
  await store.close()
}

/** A channel with a refresh_token credential `crm` whose token endpoint refuses connections (no request is expected). */
async function channelFile(): Promise<string> {
  const file = join(dir.path, 'crm.json')
  await writeFile(file, JSON.stringify({
    name: 'crm',
    credentials: { crm: { grant: 'refresh_token', tokenUrl: 'http://127.0.0.1:9/token', clientId: 'app', clientAuth: { method: 'client_secret_post', secret: 'client-secret-value' } } },
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'file', config: { directory: join(dir.path, 'out') } }],
  }))
  await writeFile(join(dir.path, 'rt.txt'), `${REFRESH}\n`)
  return file
}

const token = (file: string, env: NodeJS.ProcessEnv = {}) => weir(['token', file, 'crm', '--timeout', '3s', '--data-dir', dataOf()], env)
const importing = (file: string, env: NodeJS.ProcessEnv = {}) => weir(['credentials', 'import', file, 'crm', '--refresh-token-file', join(dir.path, 'rt.txt'), '--data-dir', dataOf()], env)

function refused(r: { code: number; out: string; err: string }) {
  const all = r.out + r.err
  expect(r.code).toBe(1)
  expect(all).not.toContain(MRN)
  expect(all).not.toContain(PASSPHRASE)
  expect(all).not.toContain(REFRESH)
  expect(all).not.toMatch(/\n\s+at /) // no stack
  return all
}

describe('weir token and weir credentials make no store key over a lost one', () => {
  it('the store holds messages sealed with a key but oauth/ is gone: both refuse, naming the key id; no secret.key is made', async () => {
    dir = await tempDir('weir-lost-key-cmd-')
    const lost = randomBytes(32)
    await queueSealed(lost)
    const file = await channelFile()
    for (const run of [token, importing]) {
      const all = refused(await run(file))
      expect(all).toContain(join(oauthOf(), 'secret.key'))
      expect(all).toContain('1 message(s)')
      expect(all).toContain(keyIdOf(lost))
      expect(await files()).toEqual([])
    }
    // And so weir run still refuses to start, instead of putting the message in error.
    const listed = await weir(['messages', 'list', '--data-dir', dataOf()])
    expect(listed.out + listed.err).not.toContain(MRN)
    expect(await files()).toEqual([])
  })

  it('a passphrase was in use (secret.salt) but WEIR_SECRET_KEY is not set: both refuse; no secret.key beside the salt', async () => {
    dir = await tempDir('weir-lost-key-cmd-')
    await mkdir(dataOf(), { mode: 0o700 })
    await loadStoreKey(oauthOf(), { key: PASSPHRASE })
    const file = await channelFile()
    for (const run of [token, importing]) {
      const all = refused(await run(file))
      expect(all).toContain('secret.salt')
      expect(all).toContain('WEIR_SECRET_KEY is not set')
      expect(await files()).toEqual(['secret.salt'])
    }
  })

  it('token entries sealed with a key that is gone: refused, the entries kept; no secret.key is made', async () => {
    dir = await tempDir('weir-lost-key-cmd-')
    await mkdir(dataOf(), { mode: 0o700 })
    await importRefreshToken(createRefreshTokenStore({ dir: oauthOf(), key: randomBytes(32) }), 'other', 'rt-other-value')
    const entries = await files()
    expect(entries).toHaveLength(1)
    const file = await channelFile()
    for (const run of [token, importing]) {
      const all = refused(await run(file))
      expect(all).toContain('1 token store entr')
      expect(all).toContain(join(oauthOf(), 'secret.key'))
      expect(await files()).toEqual(entries)
    }
  })

  it('a passphrase whose salt is gone while v2 token entries exist: refused, no new salt', async () => {
    dir = await tempDir('weir-lost-key-cmd-')
    await mkdir(dataOf(), { mode: 0o700 })
    await importRefreshToken(createRefreshTokenStore({ dir: oauthOf(), key: PASSPHRASE }), 'other', 'rt-other-value')
    await rm(join(oauthOf(), 'secret.salt'))
    const entries = await files()
    const file = await channelFile()
    const all = refused(await importing(file, { WEIR_SECRET_KEY: PASSPHRASE }))
    expect(all).toContain('secret.salt')
    expect(await files()).toEqual(entries)
  })

  it('an entry the key in secret.key cannot open: the error names that key, not WEIR_SECRET_KEY', async () => {
    dir = await tempDir('weir-lost-key-cmd-')
    await mkdir(dataOf(), { mode: 0o700 })
    await importRefreshToken(createRefreshTokenStore({ dir: oauthOf(), key: randomBytes(32) }), 'crm', 'rt-other-value')
    await loadStoreKey(oauthOf(), { allowOpenKeyFile: false }).catch(() => undefined) // refused: entries exist
    await writeFile(join(oauthOf(), 'secret.key'), `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 }) // another key, restored by mistake
    const all = refused(await token(await channelFile()))
    expect(all).toContain(`cannot be decrypted with the store key ${join(oauthOf(), 'secret.key')}`)
    expect(all).not.toContain('wrong WEIR_SECRET_KEY')
  })

  it('a new data directory still gets its key made by weir credentials import', async () => {
    dir = await tempDir('weir-lost-key-cmd-')
    const r = await importing(await channelFile())
    expect([r.code, r.err]).toEqual([0, ''])
    expect((await files()).filter((f) => !f.endsWith('.token'))).toEqual(['secret.key'])
  })
})
