import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import file, { createFileDestination } from '../../../components/destinations/file.ts'
import { syncDir } from '../../../shared/sync-dir.ts'
import { loadComponentConfig, message, tempDir, testContext, type TestContext } from '../../_setup.ts'

/**
 * overwrite false, and the directory fsync after the link fails (EIO): the file has its name but the
 * delivery is retried. The retry finds the file it wrote itself; it must count as delivered (once
 * the directory is synced), not fail with "already exists". A file holding other bytes still does.
 */
let t: TestContext
let d: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { d = await tempDir() })
afterEach(async () => { await t?.cleanup(); await d.cleanup() })

const opts = { signal: new AbortController().signal, idempotencyKey: 'msg-1:out' }
const eio = () => Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })

/** A destination whose directory syncs fail while `failing` is above 0 (one failure each), recording the directories synced. */
async function destination(config: Record<string, unknown>, failing: { count: number }, synced: string[]) {
  const loaded = await loadComponentConfig(file, config, { dir: d.dir })
  expect(loaded.problems).toEqual([])
  t = await testContext({ channelDir: d.dir })
  return createFileDestination(loaded.config as never, t.ctx, {
    async syncDir(dir) {
      if (failing.count > 0) { failing.count--; throw eio() }
      await syncDir(dir)
      synced.push(dir)
    },
  })
}

describe('file destination, overwrite false, directory sync failing after the write', () => {
  it('the retry finds its own file: delivered, after syncing the directory', async () => {
    const synced: string[] = []
    const dest = await destination({ directory: 'out', overwrite: false }, { count: 1 }, synced)
    const first = await dest.deliver(message({ v: 1 }), opts).catch((e) => e)
    expect([first.retryable, first.message]).toEqual([true, `cannot sync directory of ${join(d.dir, 'out/msg-1.json')}: EIO`])
    expect(await readdir(join(d.dir, 'out'))).toEqual(['msg-1.json'])
    expect(synced).toEqual([])

    const second = await dest.deliver(message({ v: 1 }), opts)
    expect(second).toEqual({ excerpt: 'wrote msg-1.json (7 bytes)' })
    expect(synced).toContain(join(d.dir, 'out'))
    expect(await readFile(join(d.dir, 'out/msg-1.json'), 'utf8')).toBe('{"v":1}')
    expect(await readdir(join(d.dir, 'out'))).toEqual(['msg-1.json'])
  })

  it('in a subdirectory made by the failed attempt: the retry syncs the directories up to the output directory\'s parent', async () => {
    const synced: string[] = []
    const dest = await destination({ directory: 'out', filename: '{attributes.day}/{id}.hl7', overwrite: false }, { count: 1 }, synced)
    const m = message('MSH|^~\\&|A', { attributes: { day: '2026-12-01' } })
    expect((await dest.deliver(m, opts).catch((e) => e)).retryable).toBe(true)
    expect(await dest.deliver(m, opts)).toEqual({ excerpt: `wrote ${join('2026-12-01', 'msg-1.hl7')} (10 bytes)` })
    expect(synced).toEqual([join(d.dir, 'out/2026-12-01'), join(d.dir, 'out'), d.dir])
  })

  it('the retry still syncs: a second sync failure is retryable again, not "already exists"', async () => {
    const dest = await destination({ directory: 'out', overwrite: false }, { count: 2 }, [])
    for (let i = 0; i < 2; i++) {
      const e = await dest.deliver(message({ v: 1 }), opts).catch((err) => err)
      expect([e.retryable, e.message]).toEqual([true, `cannot sync directory of ${join(d.dir, 'out/msg-1.json')}: EIO`])
    }
    expect(await dest.deliver(message({ v: 1 }), opts)).toEqual({ excerpt: 'wrote msg-1.json (7 bytes)' })
  })

  it('a file with other content is genuinely there: permanent "already exists", file untouched', async () => {
    const dest = await destination({ directory: 'out', overwrite: false }, { count: 0 }, [])
    await dest.deliver(message({ v: 1 }), opts)
    for (const body of [{ v: 2 }, { v: 10 }]) {
      const err = await dest.deliver(message(body), opts).catch((e) => e)
      expect([err.code, err.retryable, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', false, 'file msg-1.json already exists (overwrite is false)'])
    }
    expect(await readFile(join(d.dir, 'out/msg-1.json'), 'utf8')).toBe('{"v":1}')
    expect(await readdir(join(d.dir, 'out'))).toEqual(['msg-1.json'])
  })

  it('a directory or a symbolic link in the file\'s place is not the message\'s file', async () => {
    const { mkdir, symlink } = await import('node:fs/promises')
    await mkdir(join(d.dir, 'out/msg-1.json'), { recursive: true })
    await writeFile(join(d.dir, 'elsewhere.json'), '{"v":1}')
    await symlink(join(d.dir, 'elsewhere.json'), join(d.dir, 'out/msg-2.json'))
    const dest = await destination({ directory: 'out', overwrite: false }, { count: 0 }, [])
    for (const id of ['msg-1', 'msg-2']) {
      const err = await dest.deliver(message({ v: 1 }, { id }), opts).catch((e) => e)
      expect([err.code, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', `file ${id}.json already exists (overwrite is false)`])
    }
  })
})
