import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import listener from '../../components/sources/mllp-listener.ts'
import type { Emit } from '../../shared/component.ts'
import { errorCodes } from '../../shared/errors.ts'
import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient } from '../../shared/mllp/client.ts'
import { loadComponentConfig, recordingEmit, testContext, type TestContext } from '../_setup.ts'

type Listener = { start: (e: Emit) => Promise<void>; stop: () => Promise<void>; address: () => AddressInfo }

const WARN = 40
const adt = (controlId: string) => [
  `MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|${controlId}|P|2.5.1`,
  'EVN|A01|20260301120000',
  'PID|1||100234^^^GENHOSP^MR||DOE^JANE^Q||19800101|F',
].join('\r')

let t: TestContext
let running: Listener | undefined
const clients: MllpClient[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy()
  await running?.stop()
  running = undefined
  await t?.cleanup()
})

async function start(emit: Emit) {
  const loaded = await loadComponentConfig(listener, { port: 0 })
  expect(loaded.problems).toEqual([])
  t = await testContext()
  const l = (await listener.create(loaded.config as never, t.ctx)) as unknown as Listener
  await l.start(emit)
  running = l
  const port = l.address().port
  const c = await connectMllp({ host: '127.0.0.1', port })
  clients.push(c)
  return { l, port, c }
}

const tcpConnect = (port: number) => new Promise<string>((ok) => {
  const s = connect({ host: '127.0.0.1', port })
  s.once('connect', () => { s.destroy(); ok('connected') })
  s.once('error', (e: NodeJS.ErrnoException) => ok(e.code ?? e.message))
})

describe('mllp-listener stop', () => {
  it('refuses new connections as soon as stop begins; the frame being stored still gets its ACK', async () => {
    const inner = recordingEmit()
    let release!: () => void
    const gate = new Promise<void>((r) => { release = r })
    let arrived!: () => void
    const called = new Promise<void>((r) => { arrived = r })
    const emit = Object.assign(async (i: Parameters<Emit>[0]) => { arrived(); await gate; return inner(i) }, { inFlight: 0 }) as unknown as Emit
    const { l, port, c } = await start(emit)
    const acked = c.request(adt('SLOW1'), 5000)
    await called
    const stopped = l.stop()
    running = undefined
    expect(await tcpConnect(port)).toBe('ECONNREFUSED')
    release()
    expect(readAck(await acked).code).toBe('AA')
    await stopped
  })

  it('answers AE when the channel is stopping, logged at debug, not a warning per frame', async () => {
    const emit = recordingEmit({ fail: () => new errorCodes.ERR_SHUTDOWN('channel orders is stopping', { retryAfterMs: 1000 }) })
    const { c } = await start(emit)
    for (const id of ['STOP1', 'STOP2']) {
      expect(readAck(await c.request(adt(id), 5000))).toEqual({ code: 'AE', controlId: id, text: 'message not stored, send it again later: temporarily unavailable' })
    }
    expect(t.logs.filter((line) => line.level >= WARN)).toEqual([])
    expect(t.logs.filter((line) => line.msg === 'message not accepted')).toHaveLength(2)
  })
})
