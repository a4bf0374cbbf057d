// The store keyring's files: retired.keys follows the same mode rule (and override) as secret.key,
// and a rotation's key files are durable before anything is re-encrypted under the new key.
import { afterEach, beforeEach, expect, it } from 'vitest'
import { chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { loadStoreKey } from '../../shared/oauth/refresh-store.ts'
import { keyringIn, rotateKeyFile } from '../../shared/store/keyring.ts'
import { keyringSource } from '../../engine/store.ts'
import { tempDir } from '../runtime/_helpers.ts'

const ALLOW = 'WEIR_SECRET_KEY_ALLOW_OPEN_MODE'

let dir: Awaited<ReturnType<typeof tempDir>>
let allow: string | undefined
beforeEach(async () => {
  dir = await tempDir('weir-keyring-')
  allow = process.env[ALLOW]
})
afterEach(async () => {
  if (allow === undefined) delete process.env[ALLOW]
  else process.env[ALLOW] = allow
  await dir.remove()
})

it.skipIf(process.platform === 'win32')('WEIR_SECRET_KEY_ALLOW_OPEN_MODE=1 (a file system without modes) accepts retired.keys as it accepts secret.key: the engine still has its keys after a rotation', async () => {
  const oauth = join(dir.path, 'data', 'oauth')
  const first = await loadStoreKey(oauth)
  await rotateKeyFile(oauth, await keyringIn(oauth, first))
  // What such a file system shows for every file.
  for (const f of ['secret.key', 'retired.keys']) await chmod(join(oauth, f), 0o644)
  process.env[ALLOW] = '1'
  const ring = await keyringSource(oauth, undefined)()
  expect(ring.retired.map((k) => k.toString('base64'))).toEqual([first.toString('base64')])
  expect(ring.index.equals(first)).toBe(true)
  // Without the override both are refused, the key list as the key.
  delete process.env[ALLOW]
  await expect(keyringIn(oauth, ring.current)).rejects.toThrow(/retired\.keys may be read by group or others \(mode 0644\)/)
})
