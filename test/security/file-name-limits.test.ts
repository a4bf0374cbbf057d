import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import fileDest from '../../components/destinations/file.ts'
import { loadComponentConfig, message, tempDir, testContext, type TestContext } from '../_setup.ts'

// Finding: a 300-character name failed as retryable and was retried to exhaustion.
let t: TestContext
let d: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { d = await tempDir() })
afterEach(async () => { await t?.cleanup(); await d.cleanup() })

const opts = { signal: new AbortController().signal, idempotencyKey: 'k' }

async function destination(filename: string) {
  const loaded = await loadComponentConfig(fileDest, { directory: 'out', filename }, { dir: d.dir })
  expect(loaded.problems).toEqual([])
  t = await testContext({ channelDir: d.dir })
  return fileDest.create(loaded.config as never, t.ctx)
}

describe('file destination names', () => {
  it('a 300-character name fails permanently with the reason, and writes nothing', async () => {
    const f = await destination('{body.name}.json')
    const err = await f.deliver(message({ name: 'n'.repeat(300) }), opts).catch((e) => e)
    expect([err.code, err.retryable, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', false, `file name part "${'n'.repeat(40)}…" is 305 bytes; file systems allow at most 255`])
    expect(await readdir(join(d.dir, 'out')).catch(() => [])).toEqual([])
  })

  it('counts bytes, not characters (a 100-character name of 3-byte characters is too long)', async () => {
    const f = await destination('{body.name}')
    const err = await f.deliver(message({ name: '€'.repeat(100) }), opts).catch((e) => e)
    expect([err.code, err.retryable]).toEqual(['ERR_DELIVERY_PERMANENT', false])
  })

  it('a 255-byte name is written; different values can map to one file name', async () => {
    const f = await destination('{body.name}')
    await f.deliver(message({ name: 'n'.repeat(255) }), opts)
    await f.deliver(message({ name: 'a/b' }), opts)
    await f.deliver(message({ name: 'a_b' }), opts)
    expect((await readdir(join(d.dir, 'out'))).sort()).toEqual(['a_b', 'n'.repeat(255)])
  })
})
