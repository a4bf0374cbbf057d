import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { link, mkdir, readdir, readFile, rename, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { main } from '../../engine/cli.ts'
import type { CommandIO } from '../../engine/cli-io.ts'
import { tempDir } from '../runtime/_helpers.ts'

// Finding: `weir backup <the live weir.db> --force` overwrote the store a running engine had open
// (the engine then wrote into a deleted file), and a symbolic link at weir.db was followed though
// weir run and weir messages refuse one.

let dir: Awaited<ReturnType<typeof tempDir>>
let data: string
beforeEach(async () => {
  dir = await tempDir('weir-backup-dest-')
  data = join(dir.path, 'data')
  await mkdir(data, { mode: 0o700 })
  const db = new Database(join(data, 'weir.db'))
  db.pragma('journal_mode = WAL')
  db.exec(`CREATE TABLE t (x); INSERT INTO t VALUES ('live')`)
  db.close()
})
afterEach(() => dir.remove())

/** `weir backup …` in-process, from `dir` as the working directory. */
async function backup(args: string[]) {
  let out = ''
  let err = ''
  const io: CommandIO = { out: (t) => { out += t + '\n' }, err: (t) => { err += t + '\n' }, env: {}, cwd: dir.path, isTTY: false }
  const code = await main(['backup', ...args], io)
  return { code, out, err }
}

async function unchanged(before: { ino: number; bytes: Buffer }) {
  const st = await stat(join(data, 'weir.db'))
  expect(st.ino).toBe(before.ino)
  expect(await readFile(join(data, 'weir.db'))).toEqual(before.bytes)
  expect((await readdir(data)).filter((f) => f.includes('.partial-'))).toEqual([])
  expect((await readdir(dir.path)).filter((f) => f.includes('.partial-'))).toEqual([])
}

describe('weir backup refuses a destination that is the store itself', () => {
  it.each([
    ['the store, absolute', () => join(data, 'weir.db')],
    ['the store, relative to the working directory', () => 'data/weir.db'],
    ['the store, through ..', () => 'data/../data/./weir.db'],
    ['its -wal', () => join(data, 'weir.db-wal')],
    ['its -shm', () => 'data/weir.db-shm'],
    ['its -journal', () => 'data/weir.db-journal'],
  ])('%s, even with --force: exit 1, nothing written', async (_what, dest) => {
    const before = { ino: (await stat(join(data, 'weir.db'))).ino, bytes: await readFile(join(data, 'weir.db')) }
    const r = await backup([dest(), '--force', '--data-dir', 'data'])
    expect(r.code).toBe(1)
    expect(r.out).toBe('')
    expect(r.err).toMatch(/^weir backup: .* is the message store .*weir\.db.* itself|^weir backup: .* is inside the data directory/)
    await unchanged(before)
  })

  it('the store reached through a symbolic link to the data directory', async () => {
    await symlink(data, join(dir.path, 'alias'))
    const before = { ino: (await stat(join(data, 'weir.db'))).ino, bytes: await readFile(join(data, 'weir.db')) }
    const r = await backup(['alias/weir.db', '--force', '--data-dir', 'data'])
    expect(r.code).toBe(1)
    expect(r.err).toContain(join(data, 'weir.db'))
    await unchanged(before)
  })

  it('a hard link to the store, outside the data directory (same device and inode)', async () => {
    await link(join(data, 'weir.db'), join(dir.path, 'same.db'))
    const before = { ino: (await stat(join(data, 'weir.db'))).ino, bytes: await readFile(join(data, 'weir.db')) }
    const r = await backup(['same.db', '--force', '--data-dir', 'data'])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^weir backup: .*same\.db is the message store .*weir\.db itself/)
    await unchanged(before)
  })

  it('a data directory given through a symbolic link: the store is still recognised', async () => {
    await symlink(data, join(dir.path, 'alias'))
    const r = await backup(['data/weir.db', '--force', '--data-dir', 'alias'])
    expect(r.code).toBe(1)
    expect(r.err).toContain('weir backup: ')
  })

  it('any other file inside the data directory (the lock, oauth/, a backup beside the store)', async () => {
    const r = await backup(['data/copy.db', '--data-dir', 'data'])
    expect(r.code).toBe(1)
    expect(r.err).toBe(`weir backup: ${join(data, 'copy.db')} is inside the data directory ${data}; a backup there is lost with the store and may overwrite the engine's files: write it elsewhere\n`)
    expect(await readdir(data)).toEqual(['weir.db'])
  })

  it('still copies to a file outside the data directory, and over one with --force', async () => {
    const first = await backup(['copy.db', '--data-dir', 'data'])
    expect(first.code, first.err).toBe(0)
    const again = await backup(['copy.db', '--force', '--data-dir', 'data'])
    expect(again.code, again.err).toBe(0)
    const copy = new Database(join(dir.path, 'copy.db'), { readonly: true })
    expect(copy.prepare('SELECT x FROM t').pluck().get()).toBe('live')
    copy.close()
  })
})

describe('weir backup refuses a symbolic link at the store, as weir run does', () => {
  it.each(['weir.db', 'weir.db-wal'])('%s a symbolic link: exit 1, "Weir does not follow it"', async (file) => {
    const elsewhere = join(dir.path, 'elsewhere')
    await mkdir(elsewhere)
    const real = join(elsewhere, file)
    if (file === 'weir.db') await rename(join(data, 'weir.db'), real)
    else await writeFile(real, '')
    await symlink(real, join(data, file))
    const r = await backup(['copy.db', '--data-dir', 'data'])
    expect(r.code).toBe(1)
    expect(r.err).toBe(`weir backup: ${join(data, file)} is a symbolic link; Weir does not follow it (patient data would go where it points): replace it with a file of its own\n`)
    expect((await readdir(dir.path)).sort()).toEqual(['data', 'elsewhere'])
  })
})
