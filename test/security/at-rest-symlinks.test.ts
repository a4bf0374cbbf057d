// Patient data stays in the files Weir means to write: a weir.db, -wal or -shm (or a backup's
// partial copy) that is a symbolic link is refused, and the file it points to is left alone
// (not chmod-ed, not written).
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chmod, lstat, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openSqliteStore } from '../../shared/store/index.ts'
import { run as backup } from '../../engine/commands/backup.ts'
import { tempDir } from '../runtime/_helpers.ts'

const modeOf = async (path: string) => (await stat(path)).mode & 0o777

let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => {
  dir = await tempDir('weir-at-rest-links-')
})
afterEach(async () => {
  await dir.remove()
})

/** A file outside the data directory, mode 0644, holding `text`. */
async function outsideFile(name: string, text = ''): Promise<string> {
  const file = join(dir.path, name)
  await writeFile(file, text)
  await chmod(file, 0o644)
  return file
}

describe.skipIf(process.platform === 'win32')('patient data at rest: symbolic links', () => {
  it('refuses a weir.db that is a symbolic link out of the data directory; its target is not touched', async () => {
    const data = join(dir.path, 'data')
    await mkdir(data, { mode: 0o700 })
    const outside = await outsideFile('elsewhere.db')
    await symlink(outside, join(data, 'weir.db'))
    expect(() => openSqliteStore({ dataDir: data })).toThrow(/weir\.db is a symbolic link/)
    expect([(await stat(outside)).size, (await modeOf(outside)).toString(8)]).toEqual([0, '644'])
  })

  it('refuses a weir.db-wal that is a symbolic link; its target is not touched', async () => {
    const data = join(dir.path, 'data')
    const first = openSqliteStore({ dataDir: data })
    await first.enqueue('c', { body: { mrn: 'MRN-LINK-1' } })
    await first.close()
    const outside = await outsideFile('elsewhere.wal')
    await symlink(outside, join(data, 'weir.db-wal'))
    expect(() => openSqliteStore({ dataDir: data })).toThrow(/weir\.db-wal is a symbolic link/)
    expect([(await stat(outside)).size, (await modeOf(outside)).toString(8)]).toEqual([0, '644'])
  })

  it('weir backup does not write its copy through a symbolic link planted at its partial file', async () => {
    const data = join(dir.path, 'data')
    const store = openSqliteStore({ dataDir: data })
    await store.enqueue('c', { body: { mrn: 'MRN-LINK-2' } })
    await store.close()
    const victim = await outsideFile('victim.txt', 'not a database\n')
    const dest = join(dir.path, 'copy.db')
    await symlink(victim, `${dest}.partial-${process.pid}`)
    const err: string[] = []
    const code = await backup([dest, '--data-dir', data], { out: () => {}, err: (t) => err.push(t), env: {}, cwd: dir.path, isTTY: false })
    expect(code).toBe(1)
    expect(err.join('\n')).toContain('is a symbolic link')
    expect([await readFile(victim, 'utf8'), (await modeOf(victim)).toString(8)]).toEqual(['not a database\n', '644'])
    expect(await lstat(dest).then(() => 'exists', () => 'absent')).toBe('absent')
  })
})
