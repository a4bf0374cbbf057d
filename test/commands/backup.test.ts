import { describe, expect, it } from 'vitest'
import { mkdir, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { startWeirRun, until, useEngineFixture } from '../runtime/_helpers.ts'
import { atRestChannel, post, postTo, stop, weir } from '../security/_at-rest.ts'

const f = useEngineFixture('weir-backup-')

describe('weir backup', () => {
  it('copies the store while weir run delivers under load: the copy is whole, 0600, and readable as a store', async () => {
    const data = join(f.dir.path, 'data')
    const run = await startWeirRun(await atRestChannel(f.dir.path, [postTo(f.api.url)]), f.dir.path, 'at-rest.port', f.children)
    const first = await post(run.port, { mrn: 'MRN-BEFORE-BACKUP', note: 'x'.repeat(2000) })
    await until(() => f.api.received.length === 1)
    // Load: senders posting throughout the backup (bounded).
    let loading = true
    const posted: string[] = []
    const sender = async () => {
      for (let i = 0; i < 2000 && loading; i++) posted.push(await post(run.port, { n: i, note: 'y'.repeat(2000) }))
    }
    const senders = [sender(), sender(), sender()]
    await until(() => posted.length >= 50)
    const dest = join(f.dir.path, 'weir-backup.db')
    const backup = await weir(['backup', dest, '--data-dir', data])
    loading = false
    await Promise.all(senders)
    expect(backup.code, backup.err).toBe(0)
    expect(backup.out).toMatch(/^backed up .*weir\.db to .*weir-backup\.db: \d+ pages, \d+ bytes\n$/)
    expect((await stat(dest)).mode & 0o777).toBe(0o600)

    const copy = new Database(dest, { readonly: true })
    expect(copy.pragma('integrity_check', { simple: true })).toBe('ok')
    const copied = copy.prepare(`SELECT count(*) FROM messages WHERE channel = 'at-rest'`).pluck().get() as number
    copy.close()
    expect(copied).toBeGreaterThan(50)

    // Restored into a data directory of its own, the copy is a store weir messages reads.
    const restored = join(f.dir.path, 'restored')
    await mkdir(restored, { mode: 0o700 })
    await rename(dest, join(restored, 'weir.db'))
    const shown = await weir(['messages', 'show', first, '--json', '--data-dir', restored])
    expect(shown.code, shown.err).toBe(0)
    expect(JSON.parse(shown.out)).toMatchObject({ status: 'delivered', body: { mrn: 'MRN-BEFORE-BACKUP' } })
    expect((await weir(['messages', 'list', '--limit', '10000', '--json', '--data-dir', restored])).out.split('"id"').length - 1).toBe(copied)
    await stop(run)
  }, 60_000)

  it('refuses to overwrite a file unless --force, and sends a PostgreSQL store to pg_dump', async () => {
    const data = join(f.dir.path, 'data')
    const run = await startWeirRun(await atRestChannel(f.dir.path, [postTo(f.api.url)]), f.dir.path, 'at-rest.port', f.children)
    await post(run.port, { mrn: 'MRN-1' })
    await until(() => f.api.received.length === 1)
    const dest = join(f.dir.path, 'exists.db')
    await writeFile(dest, 'keep me')
    const refused = await weir(['backup', dest, '--data-dir', data])
    expect([refused.code, refused.err]).toEqual([1, `weir backup: ${dest} exists; pass --force to overwrite it\n`])
    const forced = await weir(['backup', dest, '--force', '--data-dir', data])
    expect(forced.code, forced.err).toBe(0)
    const copy = new Database(dest, { readonly: true })
    expect(copy.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(1)
    copy.close()
    await stop(run)

    const pg = await weir(['backup', join(f.dir.path, 'pg.db'), '--store', 'postgres://weir@127.0.0.1:5432/weir'])
    expect(pg.code).toBe(2)
    expect(pg.err).toContain('backed up with pg_dump')
    expect((await weir(['backup', '--data-dir', data])).code).toBe(2)
    const missing = await weir(['backup', join(f.dir.path, 'x.db'), '--data-dir', join(f.dir.path, 'none')])
    expect([missing.code, missing.err]).toEqual([1, `weir backup: no message store in ${join(f.dir.path, 'none')}\n`])
  }, 60_000)
})
