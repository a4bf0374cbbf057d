// weir keys rotate-store-key: two runs at once are locked against each other (the second refused,
// naming the lock, exit 1), and the final WAL checkpoint does not wait behind a reader: when a
// reader keeps weir.db-wal from being truncated, the command says so (exit 3) instead of reporting
// a clean store.
import { afterEach, beforeEach, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { encryptContent } from '../../shared/store/encrypted.ts'
import { keyIdOf, keyringIn } from '../../shared/store/keyring.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { loadStoreKey } from '../../shared/oauth/refresh-store.ts'
import { rotateStoreKey } from '../../engine/store-key-rotation.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { filesHolding, weir } from './_at-rest.ts'

const ROOT = resolve(import.meta.dirname, '../..')

let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => {
  dir = await tempDir('weir-rotate-lock-')
})
afterEach(async () => {
  await dir.remove()
})

/** A data directory whose store holds `n` messages sealed with its key file's key; returns the key. */
async function sealedStore(data: string, n: number): Promise<Buffer> {
  const key = randomBytes(32)
  await mkdir(join(data, 'oauth'), { recursive: true, mode: 0o700 })
  await writeFile(join(data, 'oauth', 'secret.key'), key.toString('base64') + '\n', { mode: 0o600 })
  const store = encryptContent(openSqliteStore({ dataDir: data }), { key: async () => key, channels: true })
  for (let i = 0; i < n; i++) await store.enqueue('c', { body: { mrn: `MRN-LOCK-${i}` } })
  await store.close()
  return key
}

const capture = () => {
  const out: string[] = []
  const err: string[] = []
  return { out, err, io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t), env: {}, cwd: dir.path, isTTY: false } }
}

/** Starts `weir keys rotate-store-key` in a process of its own; resolves once it has rotated the key files (and is re-encrypting for its settle time, 5 s). */
async function startRotation(data: string) {
  const child = spawn(process.execPath, [join(ROOT, 'bin/weir.js'), 'keys', 'rotate-store-key', '--data-dir', data], { cwd: ROOT, env: { ...process.env, CI: '1', WEIR_SECRET_KEY: '' } })
  const seen = { out: '', err: '' }
  child.stdout.on('data', (b) => { seen.out += b })
  child.stderr.on('data', (b) => { seen.err += b })
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)))
  const deadline = Date.now() + 20_000
  while (!seen.out.includes('store key rotated') && Date.now() < deadline && child.exitCode === null) await new Promise((ok) => setTimeout(ok, 50))
  expect(seen.out, seen.err).toContain('store key rotated')
  return { child, seen, exited }
}

it('a second rotate-store-key while one runs is refused (exit 1, naming the lock); the first completes and the keyring holds one rotation', async () => {
  const data = join(dir.path, 'data')
  const key = await sealedStore(data, 20)
  const { child: first, seen, exited: firstExit } = await startRotation(data)

  const second = await weir(['keys', 'rotate-store-key', '--data-dir', data], { WEIR_SECRET_KEY: '' })
  const stillRunning = first.exitCode === null
  expect(second.code, second.out + second.err).toBe(1)
  expect(second.err).toContain(join(data, 'oauth', 'rotate.lock'))
  expect(second.err).toContain('another weir keys rotate-store-key')
  expect(second.out).toBe('')
  expect(stillRunning).toBe(true)

  expect(await firstExit, seen.err).toBe(0)
  const oauth = join(data, 'oauth')
  const ring = await keyringIn(oauth, await loadStoreKey(oauth))
  expect(ring.retired.map(keyIdOf)).toEqual([keyIdOf(key)])
  expect(await filesHolding(data, `weir:enc:v2:${keyIdOf(key)}:`)).toEqual([])
  // A run after the first one finished takes the lock again.
  const c = capture()
  expect(await rotateStoreKey(data, c.io, { settleMs: 0 }), c.err.join('\n')).toBe(0)
}, 60_000)

it('the lock of a run that was killed is not stale: the next run takes it', async () => {
  const data = join(dir.path, 'data')
  await sealedStore(data, 20)
  const killed = await startRotation(data)
  killed.child.kill('SIGKILL')
  await killed.exited
  const c = capture()
  expect(await rotateStoreKey(data, c.io, { settleMs: 0 }), c.err.join('\n')).toBe(0)
}, 60_000)

it('a reader holding an old snapshot does not hold the rotation for 10 s: it ends at once with exit 3, saying the WAL may still hold old ciphertext', async () => {
  const data = join(dir.path, 'data')
  const key = await sealedStore(data, 50)
  const reader = new Database(join(data, 'weir.db'), { readonly: true })
  reader.exec('BEGIN')
  reader.prepare('SELECT count(*) FROM messages').get() // a `weir messages list` or `weir backup` reading meanwhile
  const c = capture()
  const started = Date.now()
  let code: number
  try {
    code = await rotateStoreKey(data, c.io, { settleMs: 0 })
  } finally {
    reader.exec('COMMIT')
    reader.close()
  }
  expect(Date.now() - started).toBeLessThan(8000) // it used to wait 10 s (busy_timeout), then report done anyway
  expect(code).toBe(3)
  const err = c.err.join('\n')
  expect(err).toContain('weir.db-wal')
  expect(err).toContain(keyIdOf(key)) // which key's ciphertext may be left (its public id)
  expect(c.out.join('\n')).toMatch(/re-encrypted 50 values/)
  expect(c.out.join('\n')).not.toContain('checkpointed')
  for (const text of [...c.out, ...c.err]) expect(text).not.toContain(key.toString('base64'))
}, 60_000)

it('without a reader the WAL is checkpointed and truncated: nothing sealed with the old key is left, exit 0', async () => {
  const data = join(dir.path, 'data')
  const key = await sealedStore(data, 50)
  const c = capture()
  expect(await rotateStoreKey(data, c.io, { settleMs: 0 }), c.err.join('\n')).toBe(0)
  expect(c.err).toEqual([])
  expect(c.out.join('\n')).toContain('checkpointed')
  expect((await stat(join(data, 'weir.db-wal')).catch(() => ({ size: 0 }))).size).toBe(0)
  expect(await filesHolding(data, `weir:enc:v2:${keyIdOf(key)}:`)).toEqual([])
  expect((await readFile(join(data, 'oauth', 'secret.key'), 'utf8')).trim()).not.toBe(key.toString('base64'))
}, 60_000)
