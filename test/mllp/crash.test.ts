import type { ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient } from '../../shared/mllp/client.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { startMllpReceiver, type MllpReceiver } from '../../engine/embedded/mllp-receiver.ts'
import { startWeirRun, tempDir, until } from '../runtime/_helpers.ts'

const TOTAL = 200
const CONNECTIONS = 4
const source = join(import.meta.dirname, '../fixtures/mllp/port-file-mllp-listener.ts')

const adt = (n: number) => [
  `MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A08^ADT_A01|CRASH${n}|P|2.5.1`,
  `PID|1||${100000 + n}^^^GENHOSP^MR||DOE^JANE||19800101|F`,
].join('\r')

describe('SIGKILL of weir run while MLLP messages wait for their durable write', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let lab: MllpReceiver
  const children = new Set<ChildProcess>()
  beforeEach(async () => {
    dir = await tempDir('weir-mllp-crash-')
    lab = await startMllpReceiver()
  })
  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    children.clear()
    await lab.close()
    await dir.remove()
  })

  it.each([
    [true, 'each control id is stored exactly once'],
    [false, 'each control id is stored, at most the in-flight ones twice'],
  ])('dedupeByControlId %s: no message is acknowledged unless stored; %s', async (dedupe) => {
    const file = join(dir.path, 'crash.json')
    await writeFile(file, JSON.stringify({
      name: 'mllp-crash',
      source: { type: source, config: { portFile: 'mllp.port', dedupeByControlId: dedupe } },
      destinations: [{ name: 'lab', type: 'mllp', config: { host: lab.host, port: lab.port, ackTimeoutMs: 5000 } }],
    }))
    let weir = await startWeirRun(file, dir.path, 'mllp.port', children)
    const acked = new Set<number>()
    let next = 0
    let noAck = 0
    // Each sender: one connection, one message at a time; on a lost connection it reconnects (to the
    // restarted engine) and sends the same message again, as an interface engine does.
    const sender = async () => {
      let c: MllpClient | undefined
      for (let n = next++; n < TOTAL; n = next++) {
        for (;;) {
          try {
            c ??= await connectMllp({ host: '127.0.0.1', port: weir.port })
            const ack = readAck(await c.request(adt(n), 10_000))
            expect([ack.code, ack.controlId]).toEqual(['AA', `CRASH${n}`])
            acked.add(n)
            break
          } catch (e) {
            if ((e as { name?: string }).name === 'AssertionError') throw e
            noAck++
            c?.destroy()
            c = undefined
            await new Promise((ok) => setTimeout(ok, 20))
          }
        }
      }
      c?.destroy()
    }
    const sending = Promise.all(Array.from({ length: CONNECTIONS }, sender))
    await until(() => acked.size >= TOTAL * 0.4, 60_000, '40% acknowledged')
    weir.child.kill('SIGKILL')
    expect((await weir.exited).signal).toBe('SIGKILL')
    const ackedAtKill = acked.size
    weir = await startWeirRun(file, dir.path, 'mllp.port', children)
    await sending
    await until(() => new Set(lab.received.map((m) => m.controlId)).size >= TOTAL, 60_000, 'every message at the receiver')
    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(0)

    const store = openSqliteStore({ dataDir: join(dir.path, 'data') })
    const stored = await store.list({ channel: 'mllp-crash', limit: 10_000 })
    await store.close()
    const perId = new Map<string, number>()
    for (const m of stored) perId.set(m.attributes.controlId!, (perId.get(m.attributes.controlId!) ?? 0) + 1)
    expect(perId.size).toBe(TOTAL)
    const twice = [...perId.values()].filter((k) => k > 1).length
    if (dedupe) expect(twice).toBe(0)
    else expect(twice).toBeLessThanOrEqual(CONNECTIONS)
    expect(ackedAtKill).toBeLessThan(TOTAL)
    expect(noAck).toBeGreaterThan(0)
    console.log(`mllp crash test (dedupe ${dedupe}): killed with ${ackedAtKill} of ${TOTAL} acknowledged; ${noAck} attempts got no ACK (cut off by the kill, or refused while the engine was down) and were sent again; ${twice} stored twice; ${stored.length} stored`)
  }, 180_000)
})

describe('weir run and a frame whose MSH cannot be read', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const children = new Set<ChildProcess>()
  beforeEach(async () => { dir = await tempDir('weir-mllp-bad-msh-') })
  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    children.clear()
    await dir.remove()
  })

  // One such frame from any client used to reject unhandled inside the listener and end the engine.
  it('answers "MSHX|…" AE, keeps the engine running and serves the next message on the same connection', async () => {
    const file = join(dir.path, 'bad-msh.json')
    await writeFile(file, JSON.stringify({
      name: 'mllp-bad-msh',
      source: { type: source, config: { portFile: 'mllp.port' } },
      destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }],
    }))
    const weir = await startWeirRun(file, dir.path, 'mllp.port', children)
    const c = await connectMllp({ host: '127.0.0.1', port: weir.port })
    try {
      const answer = await c.request('MSHX|^~\\&|EPIC|H|||20260301||ADT^A01|1|P|2.5.1\r', 5000).then((a) => readAck(a).code, (e: Error) => `no answer (${e.message}): ${weir.output().slice(0, 400)}`)
      expect(answer).toBe('AE')
      expect(readAck(await c.request(adt(1), 5000))).toMatchObject({ code: 'AA', controlId: 'CRASH1' })
      expect([weir.child.exitCode, weir.child.signalCode]).toEqual([null, null])
    } finally {
      c.destroy()
    }
    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(0)
  }, 60_000)
})
