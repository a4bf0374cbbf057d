import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { Writable } from 'node:stream'
import { join, resolve } from 'node:path'
import { defineComponent, type ComponentDefinition } from '../../shared/component.ts'
import { createLogger, silentLogger } from '../../shared/log/index.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { channel, destination, feedSource, startWeirRun, tempDir, until, useEngineFixture } from './_helpers.ts'

const root = resolve(import.meta.dirname, '../..')
const fixtures = join(root, 'test/fixtures/runtime')
const CUT_OFF = 'cut off by the engine stopping'

let dir: Awaited<ReturnType<typeof tempDir>>
const stores: MessageStore[] = []
beforeEach(async () => {
  dir = await tempDir('weir-deaf-')
})
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close()
  await dir.remove()
})

/** A store opened on the test's directory whose log lines are kept (recovery says "unclean stop detected" there). */
function open(): { store: MessageStore; log: () => string } {
  let text = ''
  const log = createLogger({ level: 'info', destination: new Writable({ write(c, _e, cb) { text += String(c); cb() } }) })
  const store = openSqliteStore({ dataDir: dir.path, log })
  stores.push(store)
  return { store, log: () => text }
}

async function close(store: MessageStore): Promise<void> {
  stores.splice(stores.indexOf(store), 1)
  await store.close()
}

/** A destination whose `deliver` ignores its signal and settles only when the test says so. */
function deafDestination() {
  const calls: Array<{ resolve: (v: { status: number }) => void; reject: (e: Error) => void }> = []
  const definition = defineComponent({
    type: 'deaf', kind: 'destination', description: 'ignores its abort signal', configSchema: { type: 'object' },
    create: () => ({ deliver: () => new Promise<{ status: number }>((resolve, reject) => { calls.push({ resolve, reject }) }) }),
  }) as ComponentDefinition<'destination'>
  return { definition, calls }
}

describe('a delivery whose promise ignores the abort and outlives shutdownTimeoutMs (in process)', () => {
  it.each(['resolves', 'rejects'] as const)('is cut off at the deadline: recorded, released, a clean stop (its late promise %s harmlessly)', async (late) => {
    const { store } = open()
    const deaf = deafDestination()
    const src = feedSource()
    const h = await startChannel(channel({
      dir: dir.path, source: src.definition,
      destinations: [destination('api', 'http://127.0.0.1:9/unused', { definition: deaf.definition, config: {} })],
      options: { shutdownTimeoutMs: 200 },
    }), { store, log: silentLogger, dataDir: dir.path })
    const { id } = await src.emit({ n: 1 })
    const { id: id2 } = await src.emit({ n: 2 })
    await until(() => deaf.calls.length === 1)
    await h.stop({ timeoutMs: 200 })
    // Back in the queue at once (not left in flight for the next open to count as an unclean stop).
    expect((await store.get(id))!.message.status).toBe('queued')
    expect((await store.get(id2))!.message.status).toBe('queued')
    await close(store)

    // The promise settles after the store closed: nothing is written, nothing crashes.
    if (late === 'resolves') deaf.calls[0]!.resolve({ status: 200 })
    else deaf.calls[0]!.reject(new Error('the destination gave up late'))
    await new Promise((ok) => setTimeout(ok, 50))

    const again = open()
    expect(again.log()).not.toMatch(/unclean stop/)
    const detail = (await again.store.get(id))!
    expect(detail.message.status).toBe('queued')
    expect(detail.attempts.map((a) => [a.attempt, a.outcome, a.error])).toEqual([[1, 'retryable', expect.stringContaining(CUT_OFF)]])
    expect(detail.deliveries.map((d) => [d.status, d.attempts])).toEqual([['queued', 1]])
    expect((await again.store.get(id2))!.attempts).toEqual([])
    // Not a suspect: no interruption was counted.
    const claimed = await again.store.claim('test', 2)
    expect(claimed.map((m) => [m.id, m.interruptions])).toEqual([[id, undefined], [id2, undefined]])
    await again.store.release([id, id2])
  }, 20_000)
})

it('the stop names the messages it cuts off at the deadline', async () => {
  const { store } = open()
  let text = ''
  const log = createLogger({ level: 'info', destination: new Writable({ write(c, _e, cb) { text += String(c); cb() } }) })
  const deaf = deafDestination()
  const src = feedSource()
  const h = await startChannel(channel({
    dir: dir.path, source: src.definition,
    destinations: [destination('api', 'http://127.0.0.1:9/unused', { definition: deaf.definition, config: {} })],
    options: { shutdownTimeoutMs: 200, concurrency: 2 },
  }), { store, log, dataDir: dir.path })
  const ids = [(await src.emit({ n: 1 })).id, (await src.emit({ n: 2 })).id]
  await until(() => deaf.calls.length === 2)
  await h.stop({ timeoutMs: 200 })
  const line = text.split('\n').find((l) => l.includes('cutting off the messages still under way'))
  expect(line).toBeDefined()
  const entry = JSON.parse(line!) as { messages: string[]; count: number }
  expect(entry.count).toBe(2)
  expect(entry.messages.sort()).toEqual([...ids].sort())
}, 20_000)

describe('weir run with a destination that ignores its abort signal (the real CLI)', () => {
  const f = useEngineFixture('weir-deaf-cli-')

  it('routine SIGTERMs cut off its attempt and requeue the message; no interruption is counted; it goes to error only when maxAttempts is spent', async () => {
    // The destination sleeps 4 s after the API answers, ignoring the abort; the stop allows 1 s.
    let sleepMs = 4000
    f.api.behaviour = () => (sleepMs > 0 ? { status: 200, headers: { 'x-sleep-ms': String(sleepMs) } } : { status: 503, body: 'down' })
    const maxAttempts = 5
    const file = join(dir.path, 'deaf.json')
    await writeFile(file, JSON.stringify({
      name: 'deaf',
      source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'deaf.port' } },
      destinations: [{ name: 'api', type: join(fixtures, 'deaf-destination.ts'), config: { url: f.api.url }, retry: { maxAttempts, initialDelayMs: 20, maxDelayMs: 20 } }],
      options: { shutdownTimeoutMs: 1000 },
    }))
    const data = join(dir.path, 'data')
    const reader = () => {
      const r = openSqliteStore({ dataDir: data, owner: false, create: false })
      stores.push(r)
      return r
    }
    let id = ''
    const cycles = maxAttempts - 1
    for (let run = 1; run <= cycles; run++) {
      const weir = await startWeirRun(file, dir.path, 'deaf.port', f.children)
      if (run === 1) {
        const res = await fetch(`http://127.0.0.1:${weir.port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' })
        expect(res.status).toBe(202)
        id = ((await res.json()) as { id: string }).id
      }
      await until(() => f.api.received.length === run, 20_000)
      weir.child.kill('SIGTERM')
      expect((await weir.exited).code).toBe(0)
      const out = weir.output()
      expect(out).not.toMatch(/unclean stop detected|processing it alone|unclean stops/)
      const r = reader()
      const detail = (await r.get(id))!
      await close(r)
      expect(detail.message.status).toBe('queued')
      expect(detail.attempts.map((a) => [a.attempt, a.outcome, a.error])).toEqual(
        Array.from({ length: run }, (_, i) => [i + 1, 'retryable', expect.stringContaining(CUT_OFF)]))
    }
    // The API now refuses: the last attempt the budget allows fails, and the message goes to error.
    sleepMs = 0
    const weir = await startWeirRun(file, dir.path, 'deaf.port', f.children)
    const r = reader()
    await until(async () => (await r.get(id))!.message.status === 'error', 20_000)
    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(0)
    expect(weir.output()).not.toMatch(/unclean stop detected|processing it alone|unclean stops/)
    const detail = (await r.get(id))!
    expect(detail.message.error).toMatch(new RegExp(`gave up after ${maxAttempts} attempts`))
    expect(detail.attempts.map((a) => [a.attempt, a.outcome])).toEqual([
      ...Array.from({ length: cycles }, (_, i) => [i + 1, 'retryable']), [maxAttempts, 'retryable'],
    ])
    expect(detail.attempts.at(-1)!.error).toMatch(/answered 503/)
    expect(f.api.keys()).toEqual(Array.from({ length: maxAttempts }, () => `${id}:api`))
  }, 120_000)
})

describe('weir run and a second signal (the real CLI)', () => {
  const f = useEngineFixture('weir-deaf-cli-')

  it('exits at once with 130 and says so: the messages under way come back as after an unclean stop', async () => {
    f.api.behaviour = () => ({ status: 200, headers: { 'x-sleep-ms': '4000' } })
    const file = join(dir.path, 'twice.json')
    await writeFile(file, JSON.stringify({
      name: 'twice',
      source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'twice.port' } },
      destinations: [{ name: 'api', type: join(fixtures, 'deaf-destination.ts'), config: { url: f.api.url } }],
      options: { shutdownTimeoutMs: 10_000 },
    }))
    const weir = await startWeirRun(file, dir.path, 'twice.port', f.children)
    const res = await fetch(`http://127.0.0.1:${weir.port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' })
    expect(res.status).toBe(202)
    await until(() => f.api.received.length === 1, 20_000)
    weir.child.kill('SIGTERM')
    await until(() => /finishing in-flight work/.test(weir.output()), 10_000)
    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(130)
    expect(weir.output()).toMatch(/second signal: exiting at once, without waiting for in-flight work; the messages under way are delivered again at the next start, which counts this as an unclean stop/)
  }, 60_000)
})

describe('a filter whose process() outlives shutdownTimeoutMs (filters get no signal)', () => {
  it('is cut off at the deadline: the message goes back to the queue (never to error, its retry budget spent or not) and the next start sees a clean stop', async () => {
    const { store } = open()
    const src = feedSource()
    let called = 0
    const stuck = defineComponent({
      type: 'stuck', kind: 'filter', description: 'never settles', configSchema: { type: 'object' },
      create: () => ({ process: () => { called++; return new Promise<never>(() => {}) } }),
    }) as ComponentDefinition<'filter'>
    const h = await startChannel(channel({
      dir: dir.path, source: src.definition, filters: [stuck],
      // One attempt: a cut-off counted as a failed filter attempt would put the message in error.
      destinations: [destination('api', 'http://127.0.0.1:9/unused', { retry: { maxAttempts: 1, initialDelayMs: 20, maxDelayMs: 20, maxElapsedMs: 60_000 } })],
      options: { shutdownTimeoutMs: 200 },
    }), { store, log: silentLogger, dataDir: dir.path })
    const { id } = await src.emit({ n: 1 })
    await until(() => called === 1)
    await h.stop({ timeoutMs: 200 })
    expect((await store.get(id))!.message.status).toBe('queued')
    await close(store)
    const again = open()
    expect(again.log()).not.toMatch(/unclean stop/)
    expect((await again.store.claim('test', 5)).map((m) => [m.id, m.interruptions])).toEqual([[id, undefined]])
  })
})
