import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { chmod, mkdir, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { openSqliteStore } from '../../shared/store/index.ts'
import { spawnWeirRun, startApi, startWeirRun, tempDir, until } from '../runtime/_helpers.ts'
import { atRestChannel, post, postTo, stop, weir } from './_at-rest.ts'

const modeOf = async (path: string) => (await stat(path)).mode & 0o777

let dir: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof startApi>>
const children = new Set<ChildProcess>()
let umask: number
beforeEach(async () => {
  // The most permissive umask: every mode checked below comes from Weir, not from the umask.
  umask = process.umask(0)
  dir = await tempDir('weir-at-rest-')
  api = await startApi()
})
afterEach(async () => {
  process.umask(umask)
  for (const c of children) c.kill('SIGKILL')
  children.clear()
  await api.close()
  await dir.remove()
})

describe.skipIf(process.platform === 'win32')('patient data at rest: file modes', () => {
  it('weir run creates the data directory 0700 and weir.db, -wal, -shm 0600; the file destination writes 0600 files in 0700 directories', async () => {
    const file = await atRestChannel(dir.path, [postTo(api.url), { name: 'files', type: 'file', config: { directory: 'out/a/b', filename: '{id}.json' } }])
    const run = await startWeirRun(file, dir.path, 'at-rest.port', children)
    const id = await post(run.port, { mrn: 'MRN-1' })
    await until(async () => (await readdir(join(dir.path, 'out/a/b')).catch((): string[] => [])).includes(`${id}.json`))
    const data = join(dir.path, 'data')
    expect((await modeOf(data)).toString(8)).toBe('700')
    for (const f of ['weir.db', 'weir.db-wal', 'weir.db-shm']) expect([f, (await modeOf(join(data, f))).toString(8)]).toEqual([f, '600'])
    for (const d of ['out', 'out/a', 'out/a/b']) expect([d, (await modeOf(join(dir.path, d))).toString(8)]).toEqual([d, '700'])
    expect((await modeOf(join(dir.path, 'out/a/b', `${id}.json`))).toString(8)).toBe('600')
    await stop(run)
  })

  it('the file destination takes fileMode and dirMode; existing directories keep their mode', async () => {
    await mkdir(join(dir.path, 'shared'), { mode: 0o755 })
    const file = await atRestChannel(dir.path, [{ name: 'files', type: 'file', config: { directory: 'shared', filename: 'day/{id}.json', fileMode: '0640', dirMode: '0750' } }])
    const run = await startWeirRun(file, dir.path, 'at-rest.port', children)
    const id = await post(run.port, { mrn: 'MRN-2' })
    await until(async () => (await readdir(join(dir.path, 'shared/day')).catch((): string[] => [])).includes(`${id}.json`))
    expect((await modeOf(join(dir.path, 'shared/day', `${id}.json`))).toString(8)).toBe('640')
    expect((await modeOf(join(dir.path, 'shared/day'))).toString(8)).toBe('750')
    expect((await modeOf(join(dir.path, 'shared'))).toString(8)).toBe('755')
    await stop(run)
  })

  it('refuses to start on a data directory group or others may read, unless --allow-open-data-dir', async () => {
    const data = join(dir.path, 'data')
    await mkdir(data, { mode: 0o755 })
    await chmod(data, 0o755)
    const file = await atRestChannel(dir.path, [postTo(api.url)])
    const refused = spawnWeirRun(file, data, children)
    const { code } = await refused.exited
    expect(code).toBe(1)
    expect(refused.output()).toContain(`the data directory ${data} may be read by group or others (mode 0755)`)
    expect(refused.output()).toContain('chmod 700')

    const allowed = await startWeirRun(file, dir.path, 'at-rest.port', children, ['--allow-open-data-dir'])
    await post(allowed.port, { mrn: 'MRN-3' })
    // The directory is the operator's choice; the database inside is still the owner's alone.
    expect((await modeOf(join(data, 'weir.db'))).toString(8)).toBe('600')
    await stop(allowed)
  })

  it('an existing 0644 weir.db and its -wal and -shm are made 0600 on open', async () => {
    const data = join(dir.path, 'data')
    const first = openSqliteStore({ dataDir: data })
    await first.enqueue('c', { body: { mrn: 'MRN-4' } })
    for (const f of ['weir.db', 'weir.db-wal', 'weir.db-shm']) await chmod(join(data, f), 0o644)
    // Opening beside the engine (as `weir messages` does) tightens them too.
    const reader = openSqliteStore({ dataDir: data, owner: false, create: false })
    for (const f of ['weir.db', 'weir.db-wal', 'weir.db-shm']) expect([f, (await modeOf(join(data, f))).toString(8)]).toEqual([f, '600'])
    await reader.close()
    await first.close()
  })

  it('weir messages refuses an open data directory too, unless WEIR_DATA_DIR_ALLOW_OPEN_MODE=1; it never creates one', async () => {
    const data = join(dir.path, 'data')
    const store = openSqliteStore({ dataDir: data })
    await store.enqueue('c', { body: { mrn: 'MRN-5' } })
    await store.close()
    await chmod(data, 0o750)
    const refused = await weir(['messages', 'list', '--data-dir', data])
    expect(refused.code).toBe(1)
    expect(refused.err).toContain('(mode 0750)')
    const allowed = await weir(['messages', 'list', '--data-dir', data], { WEIR_DATA_DIR_ALLOW_OPEN_MODE: '1' })
    expect(allowed.out).toContain('c')
    expect(allowed.code).toBe(0)
    expect((await weir(['messages', 'list', '--data-dir', join(dir.path, 'missing')])).code).not.toBe(0)
    expect(await readdir(dir.path)).not.toContain('missing')
  })
})
