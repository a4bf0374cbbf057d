// weir backup writes its copy to a partial file beside the destination, then renames it. A file
// already at that name (another user's, or one with a loose mode, which its owner may hold open or
// hard-linked) is never written into: the partial file is created exclusively, mode 0600, by the
// backup itself, and a name already taken is refused with a message naming it.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chmod, chown, link, lstat, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openSqliteStore } from '../../shared/store/index.ts'
import { run as backup } from '../../engine/commands/backup.ts'
import { tempDir } from '../runtime/_helpers.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => {
  dir = await tempDir('weir-backup-partial-')
})
afterEach(async () => {
  await dir.remove()
})

async function storeWith(mrn: string): Promise<string> {
  const data = join(dir.path, 'data')
  const store = openSqliteStore({ dataDir: data })
  await store.enqueue('c', { body: { mrn } })
  await store.close()
  return data
}

async function runBackup(dest: string, data: string): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const code = await backup([dest, '--data-dir', data], { out: (t) => out.push(t), err: (t) => err.push(t), env: {}, cwd: dir.path, isTTY: false })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

const isRoot = process.getuid?.() === 0

describe.skipIf(process.platform === 'win32')('weir backup: its partial file', () => {
  for (const planted of [
    { what: 'a file of another user, mode 0666', mode: 0o666, otherUser: true },
    { what: 'a file of ours with a loose mode (0644)', mode: 0o644, otherUser: false },
  ]) {
    it.skipIf(planted.otherUser && !isRoot)(`is not written into when ${planted.what} is already there: refused, naming it`, async () => {
      const data = await storeWith('MRN-PARTIAL-1')
      const dest = join(dir.path, 'copy.db')
      const partial = `${dest}.partial-${process.pid}`
      await writeFile(partial, '') // empty: what SQLite takes for a new database
      await chmod(partial, planted.mode)
      if (planted.otherUser) await chown(partial, 65534, 65534)
      // Whoever planted it keeps a way to its content (a hard link, as an open descriptor would).
      const kept = join(dir.path, 'kept')
      await link(partial, kept)
      const r = await runBackup(dest, data)
      expect(r.code).toBe(1)
      expect(r.err).toContain(partial)
      expect(r.err).toContain('already exists')
      expect((await readFile(kept)).length).toBe(0) // nothing of the store went into it
      expect((await stat(kept)).mode & 0o777).toBe(planted.mode)
      expect(await lstat(dest).then(() => 'exists', () => 'absent')).toBe('absent')
    })
  }

  it('is created by the backup itself, mode 0600, and renamed to the destination', async () => {
    const data = await storeWith('MRN-PARTIAL-2')
    const dest = join(dir.path, 'copy.db')
    const r = await runBackup(dest, data)
    expect([r.code, r.err]).toEqual([0, ''])
    expect((await stat(dest)).mode & 0o777).toBe(0o600)
    expect(await lstat(`${dest}.partial-${process.pid}`).then(() => 'exists', () => 'absent')).toBe('absent')
  })
})
