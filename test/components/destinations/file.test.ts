import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import file from '../../../components/destinations/file.ts'
import { loadComponentConfig, message, tempDir, testContext, type TestContext } from '../../_setup.ts'

let t: TestContext
let d: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { d = await tempDir() })
afterEach(async () => { await t?.cleanup(); await d.cleanup() })

const opts = { signal: new AbortController().signal, idempotencyKey: 'msg-1:out' }

async function destination(config: Record<string, unknown>) {
  const loaded = await loadComponentConfig(file, config, { dir: d.dir })
  expect(loaded.problems).toEqual([])
  t = await testContext({ channelDir: d.dir })
  return file.create(loaded.config as never, t.ctx)
}

describe('file destination config', () => {
  it.each([
    [{}, '/destinations/0/config', 'must have required property "directory"'],
    [{ directory: 'out', filename: '{bodyy.mrn}.json' }, '/destinations/0/config/filename', 'unknown template field "{bodyy.mrn}"; fields start with id, channel, contentType, receivedAt, body, attributes'],
    [{ directory: 'out', filename: '{id.json' }, '/destinations/0/config/filename', 'unbalanced "{" or "}" in template'],
    [{ directory: 'out', jsonIndent: 9 }, '/destinations/0/config/jsonIndent', 'must be <= 8'],
    [{ directory: 'out', overwrite: 'no' }, '/destinations/0/config/overwrite', 'must be boolean'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(file, config)
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([[pointer, msg]])
  })

  it('fills in defaults', async () => {
    expect((await loadComponentConfig(file, { directory: 'out' })).config).toEqual({ directory: 'out', filename: '{id}.json', overwrite: true, fileMode: '0600', dirMode: '0700', jsonIndent: 0 })
  })
})

describe('file destination', () => {
  it('writes the body under a templated name, creating directories, leaving no temporary file', async () => {
    const dest = await destination({ directory: 'out/adt', filename: '{attributes.day}/{body.mrn}-{id}.json' })
    const res = await dest.deliver(message({ mrn: '007', name: 'Bond' }, { id: 'a1', attributes: { day: '2026-11-28' } }), opts)
    expect(res).toEqual({ excerpt: 'wrote 2026-11-28/007-a1.json (27 bytes)' })
    const dir = join(d.dir, 'out/adt/2026-11-28')
    expect(await readdir(dir)).toEqual(['007-a1.json'])
    expect(JSON.parse(await readFile(join(dir, '007-a1.json'), 'utf8'))).toEqual({ mrn: '007', name: 'Bond' })
  })

  it('writes text bodies as they are and indents JSON when asked', async () => {
    const dest = await destination({ directory: 'out', filename: '{id}.txt', jsonIndent: 2 })
    await dest.deliver(message('MSH|^~\\&|', { id: 't' }), opts)
    await dest.deliver(message({ a: 1 }, { id: 'j' }), opts)
    expect(await readFile(join(d.dir, 'out/t.txt'), 'utf8')).toBe('MSH|^~\\&|')
    expect(await readFile(join(d.dir, 'out/j.txt'), 'utf8')).toBe('{\n  "a": 1\n}')
  })

  it('template values cannot escape the directory', async () => {
    const dest = await destination({ directory: 'out', filename: '{body.name}' })
    await dest.deliver(message({ name: '../../etc/passwd' }), opts)
    await dest.deliver(message({ name: '..' }), opts)
    expect((await readdir(join(d.dir, 'out'))).sort()).toEqual(['.._.._etc_passwd', '__'])
  })

  it('a redelivery replaces the file atomically; with overwrite false it is a permanent error', async () => {
    const dest = await destination({ directory: 'out' })
    await dest.deliver(message({ v: 1 }), opts)
    await dest.deliver(message({ v: 2 }), opts)
    expect(await readFile(join(d.dir, 'out/msg-1.json'), 'utf8')).toBe('{"v":2}')
    await t.cleanup()
    const strict = await destination({ directory: 'out', overwrite: false })
    const err = await strict.deliver(message({ v: 3 }), opts).catch((e) => e)
    expect([err.code, err.retryable, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', false, 'file msg-1.json already exists (overwrite is false)'])
    expect(await readFile(join(d.dir, 'out/msg-1.json'), 'utf8')).toBe('{"v":2}')
    expect(await readdir(join(d.dir, 'out'))).toEqual(['msg-1.json'])
  })

  it('a missing template field is a permanent error', async () => {
    const dest = await destination({ directory: 'out', filename: '{body.mrn}.json' })
    const err = await dest.deliver(message({ name: 'x' }, { id: 'q' }), opts).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', 'template field "{body.mrn}" has no value in message q'])
  })

  it('a filesystem failure is a retryable error', async () => {
    await writeFile(join(d.dir, 'blocked'), 'a file, not a directory')
    const dest = await destination({ directory: 'blocked/sub' })
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect(err.retryable).toBe(true)
    expect(err.message).toBe(`cannot create directory ${join(d.dir, 'blocked/sub')}: ENOTDIR`)
  })

  it('a filename that leaves the directory is refused', async () => {
    const dest = await destination({ directory: 'out', filename: '../{id}.json' })
    const err = await dest.deliver(message({}), opts).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', 'file name "../msg-1.json" leaves the output directory'])
    expect(await readdir(d.dir)).toEqual([])
  })
})
