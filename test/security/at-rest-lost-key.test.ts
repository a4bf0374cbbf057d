// A store key that is missing (a forgotten WEIR_SECRET_KEY, a backup restored without oauth/) is
// never silently replaced by a new one: the engine refuses to start, saying what is missing. A
// message sealed under a key the keyring does not hold is logged and counted when it goes to error,
// and it never keeps the rest of the message log from being listed. A key file others may read is
// refused at start, not at the first message. No test prints a key, a passphrase or a body.
import { afterEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { encryptContent } from '../../shared/store/encrypted.ts'
import { keyIdOf } from '../../shared/store/keyring.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { loadStoreKey } from '../../shared/oauth/refresh-store.ts'
import { freePort } from '../../engine/embedded/postgres.ts'
import { spawnWeirRun, startWeirRun, until } from '../runtime/_helpers.ts'
import { atRestChannel, post, postTo, stop, useAtRestFixture, weir } from './_at-rest.ts'

const MRN = 'MRN-LOSTKEY-4417'
const PASSPHRASE = 'correct horse battery'

const fx = useAtRestFixture('weir-lost-key-')
const dataOf = () => join(fx.dir.path, 'data')
const oauthOf = () => join(dataOf(), 'oauth')

let savedSecret: string | undefined
afterEach(() => {
  if (savedSecret === undefined) delete process.env.WEIR_SECRET_KEY
  else process.env.WEIR_SECRET_KEY = savedSecret
})
savedSecret = process.env.WEIR_SECRET_KEY
delete process.env.WEIR_SECRET_KEY

/** Queues `n` messages of channel at-rest sealed with `key`, as an engine that ran with it left them; returns their ids. */
async function queueSealed(key: Buffer, n = 1): Promise<string[]> {
  const store = encryptContent(openSqliteStore({ dataDir: dataOf() }), { key: async () => key, channels: true })
  const ids: string[] = []
  for (let i = 0; i < n; i++) ids.push((await store.enqueue('at-rest', { body: { mrn: `${MRN}-${i}` } })).id)
  await store.close()
  return ids
}

/** Runs `weir run` to its exit; the output never holds a key, the passphrase or a body. */
async function refusedStart(file: string, extra: string[] = []) {
  const run = spawnWeirRun(file, dataOf(), fx.children, extra)
  const started = setTimeout(() => run.child.kill('SIGKILL'), 15_000) // an engine that starts is a failure: not waited for
  const { code } = await run.exited
  clearTimeout(started)
  const out = run.output()
  expect(out).not.toContain(MRN)
  expect(out).not.toContain(PASSPHRASE)
  expect(out).not.toMatch(/\n\s+at /) // no stack
  return { code, out }
}

const files = async () => (await readdir(oauthOf()).catch((): string[] => [])).sort()

describe('patient data at rest: a lost store key', () => {
  it('a passphrase was in use (secret.salt) but WEIR_SECRET_KEY is not set: refused at start, no new secret.key', async () => {
    await mkdir(dataOf(), { mode: 0o700 })
    const key = await loadStoreKey(oauthOf(), { key: PASSPHRASE }) // makes secret.salt, as the engine did
    await queueSealed(key)
    const file = await atRestChannel(fx.dir.path, [postTo(fx.api.url)])
    const { code, out } = await refusedStart(file, ['--encrypt-content'])
    expect(code).toBe(1)
    expect(out).toContain('secret.salt')
    expect(out).toContain('WEIR_SECRET_KEY is not set')
    expect(out).toContain('1 message')
    expect(out).toContain(keyIdOf(key))
    expect(await files()).toEqual(['secret.salt'])
    // weir messages, which reads beside the engine, makes no key either.
    const listed = await weir(['messages', 'list', '--data-dir', dataOf()])
    expect(listed.out + listed.err).not.toContain(MRN)
    expect(await files()).toEqual(['secret.salt'])
  })

  it('the store holds values sealed with a key but oauth/ is gone (a backup restored without it): refused, naming the key id and the fix', async () => {
    const lost = randomBytes(32)
    await queueSealed(lost, 2)
    const file = await atRestChannel(fx.dir.path, [postTo(fx.api.url)], { encryptContent: true })
    const { code, out } = await refusedStart(file)
    expect(code).toBe(1)
    expect(out).toContain(join(oauthOf(), 'secret.key'))
    expect(out).toContain('2 message(s)')
    expect(out).toContain(keyIdOf(lost))
    expect(out).toContain('restore')
    expect(out).toContain('WEIR_SECRET_KEY')
    expect(await files()).toEqual([])
  })

  it('a passphrase without its secret.salt while sealed values exist: refused (a new salt would make another key)', async () => {
    await mkdir(dataOf(), { mode: 0o700 })
    const key = await loadStoreKey(oauthOf(), { key: PASSPHRASE })
    await queueSealed(key)
    await rm(oauthOf(), { recursive: true }) // as a restore without oauth/
    process.env.WEIR_SECRET_KEY = PASSPHRASE
    const file = await atRestChannel(fx.dir.path, [postTo(fx.api.url)])
    const { code, out } = await refusedStart(file, ['--encrypt-content'])
    expect(code).toBe(1)
    expect(out).toContain('secret.salt')
    expect(out).toContain(keyIdOf(key))
    expect(await files()).toEqual([])
  })

  it('a new data directory still gets its key made at start', async () => {
    const file = await atRestChannel(fx.dir.path, [postTo(fx.api.url)], { encryptContent: true })
    const run = await startWeirRun(file, fx.dir.path, 'at-rest.port', fx.children)
    await post(run.port, { mrn: MRN })
    await until(() => fx.api.received.length === 1)
    await stop(run)
    expect(await files()).toEqual(['secret.key'])
  })
})

describe('patient data at rest: a message sealed with a key the keyring lacks', () => {
  it('queued at start: weir run refuses to start (a wrong WEIR_SECRET_KEY), naming the key ids and the count, nothing changed', async () => {
    const lost = randomBytes(32)
    const ids = await queueSealed(lost, 3)
    process.env.WEIR_SECRET_KEY = randomBytes(32).toString('base64') // another key: every queued message would go to error
    const file = await atRestChannel(fx.dir.path, [postTo(fx.api.url)], { encryptContent: true })
    const { code, out } = await refusedStart(file)
    expect(code).toBe(1)
    expect(out).toContain('opens none of 3 message(s) waiting to be processed')
    expect(out).toContain(keyIdOf(lost))
    expect(out).toContain('WEIR_SECRET_KEY')
    expect(out).not.toContain(process.env.WEIR_SECRET_KEY)
    expect(fx.api.received).toHaveLength(0)
    const listed = JSON.parse((await weir(['messages', 'list', '--json', '--data-dir', dataOf()])).out) as Array<{ id: string; status: string }>
    expect(listed.map((m) => [m.id, m.status]).sort()).toEqual(ids.map((id) => [id, 'queued']).sort())
  })

  it('resubmitted while the engine runs: goes to error at claim with an error log line (id, key id) and weir_messages_finished_total{status="error"}', async () => {
    const lost = randomBytes(32)
    const sealed = encryptContent(openSqliteStore({ dataDir: dataOf() }), { key: async () => lost, channels: true })
    const { id } = await sealed.enqueue('at-rest', { body: { mrn: MRN } })
    await sealed.claim('at-rest', 1)
    await sealed.complete(id, 'error', [], 'refused by the API')
    await sealed.close()
    await loadStoreKey(oauthOf()) // another key: nothing waits, so the engine starts; the message cannot be opened
    const file = await atRestChannel(fx.dir.path, [postTo(fx.api.url)], { encryptContent: true })
    const admin = `http://127.0.0.1:${await freePort()}`
    const run = await startWeirRun(file, fx.dir.path, 'at-rest.port', fx.children, ['--admin', admin.slice(7)])
    expect((await weir(['messages', 'resubmit', id, '--data-dir', dataOf()])).code).toBe(0)
    await until(() => run.output().includes('cannot be decrypted'))
    const line = run.output().split('\n').find((l) => l.includes('cannot be decrypted'))!
    const logged = JSON.parse(line) as Record<string, unknown>
    expect(logged.level).toBe(50) // error
    expect(logged).toMatchObject({ message: id, channel: 'at-rest', keyId: keyIdOf(lost) })
    expect(line).not.toContain(MRN)
    await until(async () => (await (await fetch(`${admin}/metrics`)).text()).includes('weir_messages_finished_total{channel="at-rest",status="error"} 1'))
    const shown = await weir(['messages', 'show', id, '--json', '--data-dir', dataOf()])
    expect(JSON.parse(shown.out)).toMatchObject({ id, status: 'error' })
    await stop(run)
  })

  it('weir messages list shows every message, the unreadable one with its id, status and why; show answers with its metadata', async () => {
    const lost = randomBytes(32)
    const [unreadable] = await queueSealed(lost)
    const current = await loadStoreKey(oauthOf())
    const [readable] = await queueSealed(current)
    const listed = await weir(['messages', 'list', '--data-dir', dataOf()])
    expect([listed.code, listed.err]).toEqual([0, ''])
    expect(listed.out).toContain(readable)
    expect(listed.out).toContain(unreadable)
    expect(listed.out).toContain(`cannot be decrypted`)
    const json = JSON.parse((await weir(['messages', 'list', '--json', '--data-dir', dataOf()])).out) as Array<{ id: string; status: string; error?: string }>
    expect(json.find((m) => m.id === unreadable)).toMatchObject({ status: 'queued', error: expect.stringContaining(keyIdOf(lost)) })
    expect(json.find((m) => m.id === readable)?.error).toBeUndefined()
    const shown = await weir(['messages', 'show', unreadable!, '--json', '--data-dir', dataOf()])
    expect(shown.code).toBe(0)
    const detail = JSON.parse(shown.out) as { id: string; status: string; body: unknown }
    expect(detail).toMatchObject({ id: unreadable, status: 'queued' })
    expect(String(detail.body)).toContain(keyIdOf(lost))
    expect((await weir(['messages', 'show', readable!, '--json', '--data-dir', dataOf()])).out).toContain(`${MRN}-0`)
  })
})

describe.skipIf(process.platform === 'win32')('patient data at rest: a key file others may read', () => {
  for (const how of [{ what: '--encrypt-content', args: ['--encrypt-content'], options: {} }, { what: 'options.encryptContent', args: [], options: { encryptContent: true } }]) {
    it(`is refused at start with ${how.what}, not at the first message`, async () => {
      await mkdir(dataOf(), { mode: 0o700 })
      await loadStoreKey(oauthOf())
      await chmod(join(oauthOf(), 'secret.key'), 0o644)
      const file = await atRestChannel(fx.dir.path, [postTo(fx.api.url)], how.options)
      const { code, out } = await refusedStart(file, how.args)
      expect(code).toBe(1)
      expect(out).toContain('may be read by group or others (mode 0644)')
      expect(out).toContain('chmod 600')
    })
  }
})
