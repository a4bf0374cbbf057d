// weir keys rotate-store-key: a new store key while the engine runs, every value sealed with the old
// one sealed again, what the engine writes afterwards sealed with the new one, keyed hashes unchanged.
import { expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { keyIdOf } from '../../shared/store/keyring.ts'
import { startWeirRun, until } from '../runtime/_helpers.ts'
import { useAtRestFixture, atRestChannel, filesHolding, post, postTo, stop, weir } from './_at-rest.ts'

const fx = useAtRestFixture('weir-rotate-')

const keyOf = async (file: string) => Buffer.from((await readFile(file, 'utf8')).trim(), 'base64')
const delivered = async (data: string, id: string) => (await weir(['messages', 'show', id, '--json', '--data-dir', data])).out.includes('"delivered"')

it('rotate-store-key beside a running engine: old values re-encrypted, new ones sealed with the new key, all readable, dedupe and order hashes unchanged', async () => {
  const file = await atRestChannel(fx.dir.path, [postTo(fx.api.url)], { encryptContent: true, orderBy: 'mrn', concurrency: 4 })
  const run = await startWeirRun(file, fx.dir.path, 'at-rest.port', fx.children)
  const data = join(fx.dir.path, 'data')
  const before: string[] = []
  for (let i = 0; i < 20; i++) before.push(await post(run.port, { mrn: `MRN-OLD-${i}` }))
  await until(() => fx.api.received.length === 20, 30_000)
  await until(() => delivered(data, before[19]!), 30_000)
  const oldKey = await keyOf(join(data, 'oauth/secret.key'))
  const orderKeyBefore = JSON.parse((await weir(['messages', 'show', before[0]!, '--json', '--data-dir', data])).out).orderKey as string

  const rotated = await weir(['keys', 'rotate-store-key', '--data-dir', data])
  expect(rotated.code, rotated.err).toBe(0)
  const newKey = await keyOf(join(data, 'oauth/secret.key'))
  expect(newKey.equals(oldKey)).toBe(false)
  expect(rotated.out).toContain(`${keyIdOf(newKey)} seals from now on; ${keyIdOf(oldKey)} is retired`)
  expect(rotated.out).toMatch(/re-encrypted (\d+) values/)
  expect(Number(/re-encrypted (\d+) values/.exec(rotated.out)![1])).toBeGreaterThanOrEqual(40) // 20 bodies + 20 response excerpts
  expect((await stat(join(data, 'oauth/retired.keys'))).mode & 0o777).toBe(0o600)

  // The engine picked up the new key without a restart.
  const after = await post(run.port, { mrn: 'MRN-OLD-0' })
  await until(() => delivered(data, after), 30_000)
  const shownAfter = JSON.parse((await weir(['messages', 'show', after, '--json', '--data-dir', data])).out) as { body: unknown; orderKey: string }
  expect(shownAfter.body).toEqual({ mrn: 'MRN-OLD-0' })
  expect(shownAfter.orderKey).toBe(orderKeyBefore) // same patient, same order key hash across the rotation
  const old = JSON.parse((await weir(['messages', 'show', before[7]!, '--json', '--data-dir', data])).out) as { body: unknown; deliveries: Array<{ responseExcerpt: string }> }
  expect(old.body).toEqual({ mrn: 'MRN-OLD-7' })
  expect(old.deliveries[0]!.responseExcerpt).toContain('accepted MRN-OLD-7')

  await stop(run)
  // Nothing sealed with the old key is left, in the database or its WAL.
  expect(await filesHolding(data, `weir:enc:v2:${keyIdOf(oldKey)}:`)).toEqual([])
  expect(await filesHolding(data, `weir:enc:v2:${keyIdOf(newKey)}:`)).not.toEqual([])
  expect(await filesHolding(data, 'MRN-OLD-7')).toEqual([])
}, 120_000)

it('refuses to rotate a key that comes from WEIR_SECRET_KEY, saying why', async () => {
  const r = await weir(['keys', 'rotate-store-key', '--data-dir', join(fx.dir.path, 'data')], { WEIR_SECRET_KEY: 'a passphrase' })
  expect(r.code).toBe(1)
  expect(r.err).toContain('the store key comes from WEIR_SECRET_KEY')
  expect(r.err).toContain('cannot be rotated: changing the variable makes what the old key sealed unreadable')
  expect(r.err).not.toContain('a passphrase')
})

it('refuses a data directory without a store key (a typo) instead of making one up and reporting a rotation', async () => {
  const typo = join(fx.dir.path, 'var-lib-wier')
  const r = await weir(['keys', 'rotate-store-key', '--data-dir', typo], { WEIR_SECRET_KEY: '' })
  expect([r.code, r.out, r.err.trim(), existsSync(typo)]).toEqual([1, '', `weir keys: no store key ${join(typo, 'oauth/secret.key')}: ${typo} is not the data directory of an engine that has a store key to rotate (check --data-dir or WEIR_DATA_DIR); nothing was changed`, false])
})

it('a --data-dir naming a regular file is a user error (exit 1, no stack), not an internal error', async () => {
  const file = join(fx.dir.path, 'not-a-dir')
  await writeFile(file, 'x')
  const r = await weir(['keys', 'rotate-store-key', '--data-dir', file], { WEIR_SECRET_KEY: '' })
  expect([r.code, r.err.trim()]).toEqual([1, `weir keys: no store key ${join(file, 'oauth/secret.key')}: ${file} is not the data directory of an engine that has a store key to rotate (check --data-dir or WEIR_DATA_DIR); nothing was changed`])
})

it('a refresh-token entry sealed before the rotation is still read after it, and sealed with the new key at its next write', async () => {
  const { createRefreshTokenStore, importRefreshToken, loadStoreKey } = await import('../../shared/oauth/refresh-store.ts')
  const { keyringIn, rotateKeyFile } = await import('../../shared/store/keyring.ts')
  const oauthDir = join(fx.dir.path, 'data/oauth')
  const before = createRefreshTokenStore({ dir: oauthDir })
  await importRefreshToken(before, 'epic', 'rt-sealed-with-the-old-key')
  await rotateKeyFile(oauthDir, await keyringIn(oauthDir, await loadStoreKey(oauthDir)))
  const after = createRefreshTokenStore({ dir: oauthDir })
  const entry = await after.read('epic')
  expect(entry).toMatchObject({ version: 1 })
  expect(String(entry!.refreshToken)).toBe('rt-sealed-with-the-old-key')
  await after.withLease('epic', () => after.write('epic', { refreshToken: 'rt-next' }, 1))
  // Without the retired keys, only the new key: the rewritten entry opens.
  const { rm } = await import('node:fs/promises')
  await rm(join(oauthDir, 'retired.keys'))
  expect(String((await createRefreshTokenStore({ dir: oauthDir }).read('epic'))!.refreshToken)).toBe('rt-next')
})
