import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { afterEach, expect, it } from 'vitest'
import listener from '../../components/sources/mllp-listener.ts'
import { readAck } from '../../shared/hl7v2/index.ts'
import { encodeFrame } from '../../shared/mllp/frame.ts'
import { loadComponentConfig, recordingEmit, testContext, type TestContext } from '../_setup.ts'

type Listener = { start: (e: ReturnType<typeof recordingEmit>) => Promise<void>; stop: () => Promise<void>; address: () => AddressInfo }
let t: TestContext | undefined
let running: Listener | undefined
afterEach(async () => { await running?.stop(); running = undefined; await t?.cleanup() })

/** Starts the listener with `config` and `emit`, and connects a raw socket to it, collecting what it answers. */
async function listenAndConnect(config: Record<string, unknown>, emit: Parameters<Listener['start']>[0], socketOptions: { allowHalfOpen?: boolean } = {}) {
  const loaded = await loadComponentConfig(listener, { port: 0, ...config })
  t = await testContext({})
  const l = (await listener.create(loaded.config as never, t.ctx)) as unknown as Listener
  await l.start(emit)
  running = l
  const socket = connect({ host: '127.0.0.1', port: l.address().port, ...socketOptions })
  await new Promise<void>((ok) => socket.once('connect', () => ok()))
  const data: Buffer[] = []
  socket.on('data', (d: Buffer) => data.push(d))
  socket.on('error', () => {})
  /** Waits for the first whole frame of the answer. */
  const answered = () => new Promise<void>((ok) => { const tick = () => (Buffer.concat(data).includes(0x1c) ? ok() : setTimeout(tick, 10)); tick() })
  return { socket, data, answered }
}

it('a peer that sends a message and half-closes (FIN) still gets its ACK once the message is stored', async () => {
  const inner = recordingEmit()
  const emit = Object.assign(async (i: Parameters<typeof inner>[0]) => { await new Promise((r) => setTimeout(r, 100)); return inner(i) }, inner)
  const { socket, data } = await listenAndConnect({}, emit, { allowHalfOpen: true })
  const closed = new Promise<void>((ok) => socket.once('close', () => ok()))
  socket.end(encodeFrame('MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|HC1|P|2.5.1\rPID|1||100234^^^GENHOSP^MR\r'))
  await closed
  const text = Buffer.concat(data).toString('utf8')
  expect(text.startsWith('\x0b')).toBe(true)
  const ack = readAck(text.slice(1, text.indexOf('\x1c')))
  expect(ack).toMatchObject({ code: 'AA', controlId: 'HC1' })
  expect(inner.inputs.map((i) => i.attributes?.controlId)).toEqual(['HC1'])
}, 10_000)

it('a latin1 listener answers in latin1: an ACK echoing "HÔPITAL" (MSH-3 → MSH-5) reads back as sent', async () => {
  const inner = recordingEmit()
  const { socket, data, answered } = await listenAndConnect({ encoding: 'latin1' }, inner)
  socket.write(encodeFrame(Buffer.from('MSH|^~\\&|HÔPITAL|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|L1|P|2.5.1\rPID|1||100234\r', 'latin1')))
  await answered()
  socket.destroy()
  const text = Buffer.concat(data).toString('latin1')
  expect(text.slice(1, text.indexOf('\x1c')).split('\r')[0]!.split('|')[4]).toBe('HÔPITAL')
}, 10_000)

it('a message whose frame starts with empty lines (CR/LF before MSH) is read, not refused: AA and stored', async () => {
  const inner = recordingEmit()
  const { socket, data, answered } = await listenAndConnect({}, inner)
  socket.write(encodeFrame('\r\nMSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|NL1|P|2.5.1\rPID|1||100234\r'))
  await answered()
  socket.destroy()
  const text = Buffer.concat(data).toString('utf8')
  expect(readAck(text.slice(1, text.indexOf('\x1c')))).toMatchObject({ code: 'AA', controlId: 'NL1' })
  expect(inner.inputs.map((i) => i.attributes?.controlId)).toEqual(['NL1'])
}, 10_000)
