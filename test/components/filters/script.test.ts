import { writeFile, mkdir } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import script from '../../../components/filters/script.ts'
import { loadComponentConfig, message, tempDir, testContext, type TestContext } from '../../_setup.ts'
import type { Message } from '../../../shared/component.ts'
import { classify } from '../../../engine/runtime/failures.ts'

let t: TestContext
let d: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { d = await tempDir() })
afterEach(async () => { await t?.cleanup(); await d.cleanup() })

async function filter(file: string, source: string, options?: Record<string, unknown>, isolation?: 'worker' | 'none') {
  await mkdir(join(d.dir, 'scripts'), { recursive: true })
  await writeFile(join(d.dir, file), source)
  const loaded = await loadComponentConfig(script, { module: './' + file, ...(options ? { options } : {}), ...(isolation ? { isolation } : {}) }, { dir: d.dir })
  expect(loaded.problems).toEqual([])
  t = await testContext({ channelDir: d.dir })
  return script.create(loaded.config as never, t.ctx)
}

describe('script filter config', () => {
  it.each([
    [{}, '/filters/0/config', 'must have required property "module"'],
    [{ module: './x.py' }, '/filters/0/config/module', 'must match pattern "\\.(m?[jt]s)$"'],
    [{ module: './x.ts', options: [] }, '/filters/0/config/options', 'must be object'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(script, config)
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([[pointer, msg]])
  })
})

describe('script filter', () => {
  it('runs a TypeScript module with no build step; the result merges onto the input message', async () => {
    const f = await filter('scripts/upper.ts', `
      interface In { name: string }
      export default (m: { body: In }, ctx: { options: { suffix: string } }) => ({ body: { name: m.body.name.toUpperCase() + ctx.options.suffix } })
    `, { suffix: '!' })
    const out = (await f.process(message({ name: 'doe' }, { id: 'k1', attributes: { a: '1' } }))) as Message
    expect(out).toEqual({ ...message({ name: 'DOE!' }, { id: 'k1', attributes: { a: '1' } }) })
  })

  it('a JavaScript module may split a message into several or drop it with null', async () => {
    const f = await filter('scripts/split.mjs', `
      export default async (m) => m.body.orders.length ? m.body.orders.map((o) => ({ ...m, body: o, contentType: 'application/json' })) : null
    `)
    const out = (await f.process(message({ orders: [{ n: 1 }, { n: 2 }] }))) as Message[]
    expect(out.map((m) => m.body)).toEqual([{ n: 1 }, { n: 2 }])
    expect(out.every((m) => m.id === 'msg-1')).toBe(true)
    expect(await f.process(message({ orders: [] }))).toBeNull()
  })

  it('the script cannot change the message id or channel', async () => {
    const f = await filter('scripts/id.js', `export default (m) => ({ ...m, id: 'forged', channel: 'other', body: 1 })`)
    expect(await f.process(message({}, { id: 'real' }))).toMatchObject({ id: 'real', channel: 'test-channel', body: 1 })
  })

  it.each([
    ['export default () => undefined', 'script ./scripts/bad.mjs returned undefined; return null to drop the message'],
    ['export default () => 42', 'script ./scripts/bad.mjs returned number where a message ({ body, … }) was expected'],
    ['export default () => [{ body: 1 }, "x"]', 'script ./scripts/bad.mjs returned at [1] string where a message ({ body, … }) was expected'],
    ['export default () => { throw new TypeError("boom") }', 'script ./scripts/bad.mjs threw: boom'],
  ])('%s → permanent error', async (src, msg) => {
    const f = await filter('scripts/bad.mjs', src)
    const err = await Promise.resolve().then(() => f.process(message({}))).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', msg])
  })

  it('gives the script a logger', async () => {
    const f = await filter('scripts/log.ts', `export default (m: any, ctx: any) => { ctx.log.info({ n: m.body.n }, 'seen'); return m }`)
    await f.process(message({ n: 3 }))
    expect(t.logs.find((l) => l.msg === 'seen')).toMatchObject({ n: 3, script: './scripts/log.ts' })
  })

  it('a module without a default export function fails create() with a config error', async () => {
    const err = await filter('scripts/none.ts', 'export const x = 1').catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.problems[0].message).toBe('script module has no default export function (message, ctx) => message | message[] | null')
  })
})

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((ok) => s.close(() => ok()))
  return port
}

const thrown = (f: { process: (m: Message) => unknown }) =>
  Promise.resolve().then(() => f.process(message({}))).then(() => { throw new Error('expected a failure') }, (e: Error & { code: string; retryable: boolean; retryAfterMs?: number }) => e)

for (const isolation of ['worker', 'none'] as const) {
  describe(`script filter failures, isolation "${isolation}": the runtime's retry rule (classify)`, () => {
    it('a lookup whose fetch is refused (cause.code ECONNREFUSED) is retried', async () => {
      const port = await closedPort()
      const f = await filter('scripts/lookup.mjs', `export default async (m) => { await fetch('http://127.0.0.1:${port}/lookup'); return m }`, undefined, isolation)
      const err = await thrown(f)
      expect([err.code, err.retryable, err.message, classify(err)]).toEqual(['ERR_RETRYABLE', true, 'script ./scripts/lookup.mjs threw: fetch failed', { retryable: true }])
    })

    it('an error the script marks retryable: true is retried, no sooner than its retryAfterMs', async () => {
      const f = await filter('scripts/mark.mjs', `export default () => { throw Object.assign(new Error('lookup busy'), { retryable: true, retryAfterMs: 2000 }) }`, undefined, isolation)
      const err = await thrown(f)
      expect([err.code, err.message, classify(err)]).toEqual(['ERR_RETRYABLE', 'script ./scripts/mark.mjs threw: lookup busy', { retryable: true, retryAfterMs: 2000 }])
    })
  })
}

it('from the worker only the codes of the cause chain cross the thread, enough to retry a network failure', async () => {
  const f = await filter('scripts/wrap.mjs', `export default () => {
    const reset = Object.assign(new Error('read ECONNRESET from lookup.internal with token s3cr3t'), { code: 'ECONNRESET', token: 's3cr3t' })
    throw new Error('lookup failed', { cause: new Error('socket closed', { cause: reset }) })
  }`, undefined, 'worker')
  const err = await thrown(f)
  expect([err.code, err.message, classify(err)]).toEqual(['ERR_RETRYABLE', 'script ./scripts/wrap.mjs threw: lookup failed', { retryable: true }])
  // The script's error, rebuilt in the engine's thread: its causes hold their codes and nothing else.
  expect((err.cause as Error).cause).toStrictEqual({ cause: { code: 'ECONNRESET' } })
})
