// weir keys rotate-store-key when the store holds a value no key of the keyring opens (sealed under
// a key since lost, e.g. a WEIR_SECRET_KEY used before the key file, or altered): the rotation still
// seals every other value again with the new key, and says how many it had to leave.
import { afterEach, beforeEach, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { encryptContent } from '../../shared/store/encrypted.ts'
import { keyIdOf, keyringIn } from '../../shared/store/keyring.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { loadStoreKey } from '../../shared/oauth/refresh-store.ts'
import { rotateStoreKey } from '../../engine/store-key-rotation.ts'
import { tempDir } from '../runtime/_helpers.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => {
  dir = await tempDir('weir-rotate-unreadable-')
})
afterEach(async () => {
  await dir.remove()
})

it('re-encrypts every value it can open, leaving (and reporting) the one sealed under a key the keyring does not hold', async () => {
  const data = join(dir.path, 'data')
  const key = randomBytes(32)
  const lost = randomBytes(32)
  const inner = openSqliteStore({ dataDir: data })
  // The unreadable message comes first: the rotation meets it before the others.
  await encryptContent(inner, { key: async () => lost, channels: true }).enqueue('c', { body: { mrn: 'MRN-LOST' } })
  const sealing = encryptContent(inner, { key: async () => key, channels: true })
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await sealing.enqueue('c', { body: { mrn: `MRN-${i}` }, attributes: { ward: `W${i}` } })).id)
  await inner.close()
  await mkdir(join(data, 'oauth'), { mode: 0o700 })
  await writeFile(join(data, 'oauth', 'secret.key'), key.toString('base64') + '\n', { mode: 0o600 })

  const out: string[] = []
  const err: string[] = []
  const code = await rotateStoreKey(data, { out: (t) => out.push(t), err: (t) => err.push(t), env: {}, cwd: dir.path, isTTY: false }, { settleMs: 0 })
  expect(code).toBe(0)
  expect(err.join('\n')).toContain('1 value(s) of')
  expect(out.join('\n')).toMatch(/re-encrypted 10 values/)

  const db = new Database(join(data, 'weir.db'), { readonly: true })
  const rows = db.prepare('SELECT body, attributes FROM message_content ORDER BY seq').all() as Array<{ body: string; attributes: string }>
  db.close()
  expect(rows.filter((r) => r.body.includes(keyIdOf(key)) || r.attributes.includes(keyIdOf(key)))).toEqual([])
  expect(rows[0]!.body).toContain(keyIdOf(lost))

  const oauth = join(data, 'oauth')
  const reader = encryptContent(openSqliteStore({ dataDir: data, owner: false, create: false }), { key: async () => keyringIn(oauth, await loadStoreKey(oauth)), channels: new Set() })
  try {
    expect((await reader.get(ids[4]!))!.message).toMatchObject({ body: { mrn: 'MRN-4' }, attributes: { ward: 'W4' } })
  } finally {
    await reader.close()
  }
})
