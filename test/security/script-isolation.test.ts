import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import script from '../../components/filters/script.ts'
import type { Filter, Message } from '../../shared/component.ts'
import { loadComponentConfig, loopbackServer, message, tempDir, testContext, type TestContext } from '../_setup.ts'

// Findings: a script filter read an environment variable its channel never uses and stored it in the
// message; a busy loop in a script blocked all channels for 8 s.
const SECRET = 'parent-only-secret-4f1c9a'
let t: TestContext | undefined
let d: Awaited<ReturnType<typeof tempDir>>
let filters: Filter[] = []
let api: Awaited<ReturnType<typeof loopbackServer>>
beforeAll(async () => {
  process.env.WEIR_SEC_TEST_SECRET = SECRET
  process.env.WEIR_SEC_TEST_ALLOWED = 'allowed-value'
  ;(globalThis as Record<string, unknown>).__weirParentSecret = SECRET
  api = await loopbackServer((_, res) => { res.end('pong') })
})
afterAll(async () => {
  delete process.env.WEIR_SEC_TEST_SECRET
  delete process.env.WEIR_SEC_TEST_ALLOWED
  delete (globalThis as Record<string, unknown>).__weirParentSecret
  await api.close()
})
beforeEach(async () => { d = await tempDir() })
afterEach(async () => {
  for (const f of filters.splice(0)) await f.close?.()
  await t?.cleanup()
  await d.cleanup()
})

async function filter(source: string, config: Record<string, unknown> = {}, file = 'probe.mjs'): Promise<Filter> {
  await writeFile(join(d.dir, file), source)
  const loaded = await loadComponentConfig(script, { module: `./${file}`, ...config }, { dir: d.dir })
  expect(loaded.problems).toEqual([])
  t = await testContext({ channelDir: d.dir })
  const f = await script.create(loaded.config as never, t.ctx)
  filters.push(f)
  return f
}

const PROBE = `export default (m) => ({ body: {
  secret: process.env.WEIR_SEC_TEST_SECRET ?? null,
  allowed: process.env.WEIR_SEC_TEST_ALLOWED ?? null,
  keys: Object.keys(process.env),
  global: globalThis.__weirParentSecret ?? null,
} })`

describe('script filters run in a worker thread by default', () => {
  it('the script sees only the environment variables listed in env, and none of the engine\'s globals', async () => {
    const f = await filter(PROBE, { env: ['WEIR_SEC_TEST_ALLOWED', 'WEIR_SEC_TEST_UNSET'] })
    const out = (await f.process(message({}))) as Message
    expect(out.body).toEqual({ secret: null, allowed: 'allowed-value', keys: ['WEIR_SEC_TEST_ALLOWED'], global: null })
  })

  it('without env the script sees an empty environment', async () => {
    const f = await filter(PROBE)
    expect(((await f.process(message({}))) as Message).body).toMatchObject({ secret: null, allowed: null, keys: [] })
  })

  it('isolation "none" keeps the in-process behaviour: the script sees everything the engine sees', async () => {
    const f = await filter(PROBE, { isolation: 'none' })
    expect(((await f.process(message({}))) as Message).body).toMatchObject({ secret: SECRET, global: SECRET })
  })

  it('a busy loop fails its message after timeoutMs with a retryable error while the engine keeps serving; the worker restarts', async () => {
    const f = await filter('export default (m) => { if (m.body.spin) for (;;) {} return { body: { ok: m.body.n } } }', { timeoutMs: 2000 })
    const order: string[] = []
    const spinning = Promise.resolve(f.process(message({ spin: true }))).catch((e) => { order.push('timed out'); return e })
    // The engine's event loop is free: a loopback request completes while the script spins.
    const pong = await (await fetch(api.url)).text()
    order.push(`fetched ${pong}`)
    const err = await spinning
    expect(order).toEqual(['fetched pong', 'timed out'])
    expect([err.code, err.retryable, err.message]).toEqual(['ERR_RETRYABLE', true, 'script ./probe.mjs did not finish within 2000 ms; its worker was restarted'])
    expect(((await f.process(message({ n: 2 }))) as Message).body).toEqual({ ok: 2 })
  })

  it('a script that ends its thread fails the message as retryable; the next message gets a new worker', async () => {
    const f = await filter('export default (m) => { if (m.body.exit) process.exit(3); return { body: m.body.n } }')
    const err = await Promise.resolve(f.process(message({ exit: true }))).catch((e) => e)
    expect([err.code, err.retryable, err.message]).toEqual(['ERR_RETRYABLE', true, 'script ./probe.mjs: worker exited (code 3)'])
    expect(((await f.process(message({ n: 4 }))) as Message).body).toBe(4)
  })
})
