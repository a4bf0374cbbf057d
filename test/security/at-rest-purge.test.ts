import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openSqliteStore } from '../../shared/store/index.ts'
import { startApi, startWeirRun, tempDir, until } from '../runtime/_helpers.ts'
import { atRestChannel, filesHolding, post, postTo, stop, weir } from './_at-rest.ts'

const MRN = 'MRN-ZQX9183472'

let dir: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof startApi>>
const children = new Set<ChildProcess>()
beforeEach(async () => {
  dir = await tempDir('weir-at-rest-')
  api = await startApi()
})
afterEach(async () => {
  for (const c of children) c.kill('SIGKILL')
  children.clear()
  await api.close()
  await dir.remove()
})

describe('patient data at rest: purge', () => {
  it('weir messages purge beside a running weir run leaves the MRN nowhere in weir.db or its WAL', async () => {
    const data = join(dir.path, 'data')
    const file = await atRestChannel(dir.path, [postTo(api.url)])
    const run = await startWeirRun(file, dir.path, 'at-rest.port', children)
    const kept = await post(run.port, { mrn: 'MRN-KEPT-0001' })
    const id = await post(run.port, { mrn: MRN, name: 'Doe^Jane', note: 'x'.repeat(5000) })
    await until(() => api.received.length === 2)
    await until(async () => (await weir(['messages', 'show', id, '--json', '--data-dir', data])).out.includes('"delivered"'))
    expect(await filesHolding(data, MRN)).not.toEqual([])

    // Only the messages finished before `before`: the one posted later stays.
    const before = new Date(Date.now() + 1).toISOString()
    await new Promise((ok) => setTimeout(ok, 20))
    const later = await post(run.port, { mrn: 'MRN-LATER-0002' })
    await until(() => api.received.length === 3)
    const purged = await weir(['messages', 'purge', '--before', before, '--yes', '--data-dir', data])
    expect(purged.code).toBe(0)

    expect(await filesHolding(data, MRN)).toEqual([])
    expect(await filesHolding(data, 'Doe^Jane')).toEqual([])
    expect((await weir(['messages', 'show', later, '--data-dir', data])).out).toContain('MRN-LATER-0002')
    expect((await weir(['messages', 'show', kept, '--data-dir', data])).code).toBe(1)
    await stop(run)
  })

  it('a purge that frees most of the file reclaims the space', async () => {
    const data = join(dir.path, 'data')
    const store = openSqliteStore({ dataDir: data, now: () => 1000 })
    for (let i = 0; i < 200; i++) {
      const { id } = await store.enqueue('c', { body: { mrn: `${MRN}-${i}`, note: 'y'.repeat(4000) } })
      await store.claim('c', 1)
      await store.complete(id, 'delivered')
    }
    const size = async () => (await readFile(join(data, 'weir.db'))).length + (await readFile(join(data, 'weir.db-wal')).catch(() => Buffer.alloc(0))).length
    const full = await size()
    expect(await store.purge({ before: 2000 })).toBe(200)
    expect(await size()).toBeLessThan(full / 4)
    expect(await filesHolding(data, MRN)).toEqual([])
    await store.close()
  })
})
