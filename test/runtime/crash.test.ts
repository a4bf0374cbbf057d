import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { openSqliteStore } from '../../shared/store/index.ts'
import { startApi, startWeirRun, tempDir, until } from './_helpers.ts'

const root = resolve(import.meta.dirname, '../..')
const fixtures = join(root, 'test/fixtures/runtime')

let dir: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof startApi>>
const children = new Set<ChildProcess>()

beforeEach(async () => {
  dir = await tempDir('weir-crash-')
  api = await startApi()
})
afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
  await api.close()
  await dir.remove()
})

async function writeChannel(options: Record<string, unknown>, retry: Record<string, number> = { maxAttempts: 50, initialDelayMs: 20, maxDelayMs: 200 }, filters: unknown[] = []) {
  const file = join(dir.path, 'crash.json')
  await writeFile(file, JSON.stringify({
    name: 'crash',
    source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'crash.port' } },
    filters,
    destinations: [{ name: 'api', type: join(fixtures, 'test-post-destination.ts'), config: { url: api.url, timeoutMs: 30_000 }, retry }],
    options,
  }))
  return file
}

/** Starts `weir run` as a child process (the real CLI entry under tsx) and waits for its port. */
const startWeir = (file: string) => startWeirRun(file, dir.path, 'crash.port', children)

/** A client that POSTs message n until it gets a 202 (retrying refused and failed sends), noting the acknowledged id. */
function sender(getPort: () => number) {
  const acked = new Map<number, string>()
  let attempts = 0
  const send = async (n: number) => {
    for (let i = 0; i < 2000; i++) {
      attempts++
      try {
        const res = await fetch(`http://127.0.0.1:${getPort()}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n }) })
        const body = (await res.json()) as { id: string }
        if (res.status === 202) {
          acked.set(n, body.id)
          return
        }
      } catch { /* the engine is down: try again */ }
      await new Promise((ok) => setTimeout(ok, 20))
    }
    throw new Error(`message ${n} never acknowledged`)
  }
  const sendAll = async (from: number, to: number, parallel: number) => {
    let next = from
    await Promise.all(Array.from({ length: parallel }, async () => {
      while (next < to) await send(next++)
    }))
  }
  return { acked, sendAll, get attempts() { return attempts } }
}

describe('crash safety (weir run as a child process)', () => {
  it('SIGKILL mid-stream: every acknowledged message reaches the API after restart; duplicates within the in-flight bound', async () => {
    const concurrency = 4
    const file = await writeChannel({ concurrency })
    let weir = await startWeir(file)
    const s = sender(() => weir.port)
    const total = 2000
    const sending = s.sendAll(0, total, 16)
    await until(() => s.acked.size >= 700, 60_000)
    weir.child.kill('SIGKILL')
    const killed = await weir.exited
    expect(killed.signal).toBe('SIGKILL')
    const ackedAtKill = s.acked.size
    const deliveredAtKill = new Set(api.keys()).size
    weir = await startWeir(file)
    // The line is written before the port file, but the pipe may deliver it after the file is seen.
    const unclean = /"released":[1-9]\d*,"msg":"unclean stop detected: messages that were in flight are queued again"|"released":0,"msg":"unclean stop detected: no message was recorded in flight/
    await until(() => unclean.test(weir.output()), 10_000).catch(() => {})
    expect(weir.output()).toMatch(unclean)
    await sending
    expect(s.acked.size).toBe(total)
    const ackedKeys = [...s.acked.values()].map((id) => `${id}:api`)
    await until(() => { const got = new Set(api.keys()); return ackedKeys.every((k) => got.has(k)) }, 90_000)

    const counts = new Map<string, number>()
    for (const k of api.keys()) counts.set(k, (counts.get(k) ?? 0) + 1)
    const duplicates = [...counts.values()].reduce((a, n) => a + n - 1, 0)
    expect(ackedKeys.every((k) => counts.has(k))).toBe(true)
    expect(duplicates).toBeLessThanOrEqual(concurrency)
    // The kill really was mid-stream: some acknowledged messages had not been delivered yet.
    expect(deliveredAtKill).toBeLessThan(ackedAtKill)

    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(0)
    console.log(`crash test: ${total} acknowledged (${ackedAtKill} before the kill, ${deliveredAtKill} delivered by then), ${api.received.length} deliveries, ${counts.size} distinct keys, ${duplicates} duplicate(s), ${s.attempts - total} refused/failed sends retried`)
  }, 180_000)

  it('a message that kills the engine is processed alone after a crash, and after three crashes goes to error; every other message is delivered', async () => {
    // The poison kills the engine a second into its processing: every message is acknowledged by
    // then, and others are still under way (the API takes 300 ms), so they too count that crash.
    api.behaviour = () => ({ status: 200, delayMs: 300 })
    const file = await writeChannel({ concurrency: 4 }, undefined, [{ type: join(fixtures, 'poison-filter.ts'), config: { delayMs: 1000 } }])
    let weir = await startWeir(file)
    const acked = new Map<number, string>()
    const total = 40
    const poison = 10
    await Promise.all(Array.from({ length: total }, async (_, n) => {
      const body = JSON.stringify(n === poison ? { n, poison: true } : { n })
      const res = await fetch(`http://127.0.0.1:${weir.port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      expect(res.status).toBe(202)
      acked.set(n, ((await res.json()) as { id: string }).id)
    }))
    const reader = openSqliteStore({ dataDir: join(dir.path, 'data'), owner: false, create: false })
    const poisonId = acked.get(poison)!
    const others = [...acked.entries()].filter(([n]) => n !== poison).map(([, id]) => `${id}:api`)
    const settled = async () => { const got = new Set(api.keys()); return others.every((k) => got.has(k)) && (await reader.get(poisonId))!.message.status === 'error' }
    // Started again after every crash, as a supervisor would, until it stays up with the rest delivered.
    let starts = 1
    let alone = false
    for (; ;) {
      const exit = await Promise.race([weir.exited, until(settled, 30_000).then(() => undefined)])
      alone ||= /processing it alone/.test(weir.output())
      if (!exit) break
      expect(exit.signal).toBe('SIGKILL')
      expect(starts).toBeLessThan(6)
      weir = await startWeir(file)
      starts++
    }
    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(0)
    expect(alone).toBe(true)

    try {
      const poisoned = (await reader.get(poisonId))!.message
      expect(poisoned.error).toMatch(/stopped uncleanly .* 3 times while this message was under way/)
      for (const [n, id] of acked) if (n !== poison) expect((await reader.get(id))!.message.status).toBe('delivered')
    } finally {
      await reader.close()
    }
    expect(api.keys()).not.toContain(`${poisonId}:api`)
    console.log(`poison test: ${starts} starts; ${acked.size - 1} other messages delivered, the poison one in error`)
  }, 180_000)

  it('SIGTERM with deliveries in flight: exits within the shutdown timeout, nothing acknowledged is lost', async () => {
    // One request hangs (the API never answers it) and the others are slow.
    let hangOn = 10
    api.behaviour = ({ body }) => ((body as { n: number }).n === hangOn ? { status: 200, hang: true } : { status: 200, delayMs: 30 })
    const shutdownTimeoutMs = 1000
    const file = await writeChannel({ concurrency: 2, shutdownTimeoutMs })
    let weir = await startWeir(file)
    const s = sender(() => weir.port)
    await s.sendAll(0, 60, 8)
    await until(() => api.received.some((r) => (r.body as { n: number }).n === hangOn))
    const t0 = Date.now()
    weir.child.kill('SIGTERM')
    const exit = await weir.exited
    expect(exit.code).toBe(0)
    const took = exit.at - t0
    expect(took).toBeLessThan(shutdownTimeoutMs + 4000)

    const store = openSqliteStore({ dataDir: join(dir.path, 'data'), owner: false, create: false })
    const statuses = new Map<string, number>()
    for (const id of s.acked.values()) {
      const st = (await store.get(id))!.message.status
      statuses.set(st, (statuses.get(st) ?? 0) + 1)
    }
    await store.close()
    // Nothing in flight after a clean stop: every acknowledged message is delivered or back in the queue.
    expect([...statuses.keys()].every((st) => st === 'delivered' || st === 'queued')).toBe(true)
    expect(statuses.get('queued') ?? 0).toBeGreaterThan(0)

    hangOn = -1
    weir = await startWeir(file)
    const ackedKeys = [...s.acked.values()].map((id) => `${id}:api`)
    await until(() => { const got = new Set(api.keys()); return ackedKeys.every((k) => got.has(k)) }, 30_000)
    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(0)
    console.log(`sigterm test: stopped in ${took} ms (timeout ${shutdownTimeoutMs} ms); at stop ${JSON.stringify(Object.fromEntries(statuses))}; all ${ackedKeys.length} delivered after restart`)
  }, 120_000)

  it('SIGKILL after every attempt: the retry budget goes on from what the killed runs spent, and the message goes to error', async () => {
    api.behaviour = () => ({ status: 503, body: 'down' })
    // The retry delay is long enough that a loaded machine's polling lag does not let one run make two attempts.
    const file = await writeChannel({}, { maxAttempts: 3, initialDelayMs: 3000, maxDelayMs: 3000 })
    let weir = await startWeir(file)
    // A reader beside the engine (no lock, no recovery) sees each attempt once it is recorded; opened before the
    // message is sent, so that its start-up is not part of the time between an attempt and the kill.
    const store = openSqliteStore({ dataDir: join(dir.path, 'data'), owner: false, create: false })
    const s = sender(() => weir.port)
    await s.sendAll(0, 1, 1)
    const id = s.acked.get(0)!
    const state = async () => { const d = (await store.get(id))!; return { status: d.message.status, error: d.message.error, attempts: d.attempts.length } }
    let runs = 1
    try {
      for (; runs <= 6; runs++) {
        const before = (await state()).attempts
        await until(async () => { const st = await state(); return st.status === 'error' || st.attempts > before }, 10_000)
        weir.child.kill('SIGKILL')
        await weir.exited
        if ((await state()).status === 'error') break
        weir = await startWeir(file)
      }
      expect(await state()).toEqual({ status: 'error', error: `api: gave up after 3 attempts: ERR_HTTP_STATUS: POST ${api.url} answered 503`, attempts: 3 })
      expect(api.received).toHaveLength(3)
      expect(runs).toBeGreaterThan(1)
    } finally {
      await store.close()
    }
  }, 120_000)
})
