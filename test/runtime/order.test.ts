import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { feedSource, destination, startWeirRun, tempDir, until, useRuntimeFixture } from './_helpers.ts'
import { KEYS, orderedSink, orderViolation, sendKeyed } from './_order.ts'

const root = resolve(import.meta.dirname, '../..')
const fixtures = join(root, 'test/fixtures/runtime')
/** The acceptance size; WEIR_ORDER_N makes a quicker run. */
const TOTAL = Number(process.env.WEIR_ORDER_N ?? 20_000)

describe('order by key (options.orderBy)', () => {
  const rt = useRuntimeFixture()
  let sink: Awaited<ReturnType<typeof orderedSink>>
  const seed = Number(process.env.WEIR_ORDER_SEED ?? Date.now() % 1_000_000)
  beforeEach(async () => { sink = await orderedSink(0.05, seed) })
  afterEach(async () => { await sink.close() })

  it(`${TOTAL} messages over ${KEYS} keys, concurrency 32, 5% answered 503: every key strictly in order, none lost`, async () => {
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', sink.url, { retry: { maxAttempts: 50, initialDelayMs: 5, maxDelayMs: 40, maxElapsedMs: 600_000 } })],
      options: { concurrency: 32, orderBy: 'key', queueLimit: 50_000 },
    })
    await sendKeyed(TOTAL, async (body) => { await src.emit(body) })
    await h.whenIdle({ timeoutMs: 120_000 })
    const distinct = sink.distinct()
    expect({ seed, violation: orderViolation(distinct) }).toEqual({ seed, violation: undefined })
    expect(distinct).toHaveLength(TOTAL)
    expect(h.counters()).toMatchObject({ delivered: TOTAL, errors: 0 })
    // The precondition of the test: retries really happened, and keys really went in parallel.
    expect(sink.refused).toBeGreaterThan(TOTAL * 0.03)
    console.log(`order test (seed ${seed}): ${TOTAL} messages over ${KEYS} keys, ${sink.refused} answered 503 and retried, ${sink.accepted.length - distinct.length} redeliveries`)
  }, 180_000)

  it('a key whose head message is retrying holds only that key', async () => {
    // The API refuses key "a"'s first message for a while; key "b"'s messages go on meanwhile.
    let refuseA = true
    const api = rt.api
    api.behaviour = ({ body }) => ((body as { key: string }).key === 'a' && refuseA ? { status: 503, body: 'busy' } : undefined)
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      destinations: [destination('api', api.url, { retry: { maxAttempts: 1000, initialDelayMs: 5, maxDelayMs: 10, maxElapsedMs: 600_000 } })],
      options: { concurrency: 1, orderBy: 'key' },
    })
    await src.emit({ key: 'a', n: 0 })
    await src.emit({ key: 'a', n: 1 })
    for (let n = 0; n < 5; n++) await src.emit({ key: 'b', n })
    await until(() => api.received.filter((r) => (r.body as { key: string }).key === 'b').length === 5, 20_000)
    // Even at concurrency 1, b went by while a's head waited; a's second message has not been sent.
    expect(api.received.filter((r) => (r.body as { key: string; n: number }).key === 'a' && (r.body as { n: number }).n === 1)).toHaveLength(0)
    refuseA = false
    await h.whenIdle({ timeoutMs: 20_000 })
    const a = api.received.filter((r) => (r.body as { key: string }).key === 'a').map((r) => (r.body as { n: number }).n)
    expect(a.at(-1)).toBe(1)
    expect(a.indexOf(1)).toBe(a.length - 1)
  })

  it('a message whose key expression fails goes to error with the reason, or under orderByDefault', async () => {
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)], options: { concurrency: 4, orderBy: 'patient.mrn' } })
    const ok = await src.emit({ patient: { mrn: 'M1' } })
    const bad = await src.emit({ patient: { mrn: { nested: true } } })
    const none = await src.emit({ other: 1 })
    await h.whenIdle()
    expect((await rt.store.get(ok.id))!.message).toMatchObject({ status: 'delivered', orderKey: 'M1' })
    expect((await rt.store.get(bad.id))!.message).toMatchObject({ status: 'error', error: expect.stringMatching(/^options\/orderBy "patient.mrn": the expression gave an object, not a string or number \(options.orderByDefault gives such messages a key\)$/) })
    expect((await rt.store.get(none.id))!.message).toMatchObject({ status: 'error', error: expect.stringMatching(/^options\/orderBy "patient.mrn": the expression gave no value \(options.orderByDefault gives such messages a key\)$/) })
    expect(h.counters()).toMatchObject({ received: 3, delivered: 1, errors: 2 })
    expect(rt.api.received).toHaveLength(1)

    const src2 = feedSource()
    const h2 = await rt.start({ name: 'with-default', source: src2.definition, destinations: [destination('api', rt.api.url)], options: { orderBy: '$uppercase(site.code)', orderByDefault: 'unkeyed' } })
    const keyed = await src2.emit({ site: { code: 'north' }, mrn: 7 })
    const fallback = await src2.emit({ mrn: 8 })
    await h2.whenIdle()
    expect((await rt.store.get(keyed.id))!.message.orderKey).toBe('NORTH')
    expect((await rt.store.get(fallback.id))!.message).toMatchObject({ status: 'delivered', orderKey: 'unkeyed' })
  })
})

describe('order by key across a crash (weir run as a child process)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sink: Awaited<ReturnType<typeof orderedSink>>
  const children = new Set<ChildProcess>()
  const seed = Number(process.env.WEIR_ORDER_SEED ?? Date.now() % 1_000_000)
  beforeEach(async () => {
    dir = await tempDir('weir-order-crash-')
    sink = await orderedSink(0.05, seed)
  })
  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    children.clear()
    await sink.close()
    await dir.remove()
  })

  const startWeir = (file: string) => startWeirRun(file, dir.path, 'order.port', children)

  it(`SIGKILL mid-stream and a restart: ${TOTAL} messages over ${KEYS} keys keep every key's order`, async () => {
    const file = join(dir.path, 'order.json')
    await writeFile(file, JSON.stringify({
      name: 'order',
      source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'order.port' } },
      destinations: [{ name: 'api', type: join(fixtures, 'test-post-destination.ts'), config: { url: sink.url, timeoutMs: 30_000 }, retry: { maxAttempts: 50, initialDelayMs: 5, maxDelayMs: 40 } }],
      options: { concurrency: 32, orderBy: 'key', queueLimit: 50_000 },
    }))
    let weir = await startWeir(file)
    let acked = 0
    let killed = false
    // A send cut off by the kill may have been stored before its answer was lost: the dedupe key
    // makes the resend a duplicate of it instead of a second message.
    const send = async (body: { key: string; n: number }) => {
      for (let i = 0; i < 2000; i++) {
        try {
          const res = await fetch(`http://127.0.0.1:${weir.port}/`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dedupe-key': `${body.key}:${body.n}` }, body: JSON.stringify(body) })
          await res.arrayBuffer()
          if (res.status === 202) {
            acked++
            return
          }
        } catch { /* the engine is down: send again */ }
        await new Promise((ok) => setTimeout(ok, 20))
      }
      throw new Error('a message was never acknowledged')
    }
    const sending = sendKeyed(TOTAL, send)
    await until(() => acked >= TOTAL * 0.4, 120_000)
    weir.child.kill('SIGKILL')
    expect((await weir.exited).signal).toBe('SIGKILL')
    killed = true
    const deliveredAtKill = sink.distinct().length
    weir = await startWeir(file)
    await sending
    await until(() => sink.distinct().length >= TOTAL, 150_000)
    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(0)
    const distinct = sink.distinct()
    expect({ seed, violation: orderViolation(distinct) }).toEqual({ seed, violation: undefined })
    expect(distinct).toHaveLength(TOTAL)
    expect(killed && deliveredAtKill < TOTAL).toBe(true)
    console.log(`order crash test (seed ${seed}): ${TOTAL} acknowledged, killed with ${deliveredAtKill} delivered, ${sink.refused} answered 503, ${sink.accepted.length - distinct.length} redeliveries`)
  }, 300_000)
})
