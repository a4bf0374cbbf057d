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

it('a peer that sends a message and half-closes (FIN) still gets its ACK once the message is stored', async () => {
  const inner = recordingEmit()
  const emit = Object.assign(async (i: Parameters<typeof inner>[0]) => { await new Promise((r) => setTimeout(r, 100)); return inner(i) }, inner)
  const loaded = await loadComponentConfig(listener, { port: 0 })
  t = await testContext({})
  const l = (await listener.create(loaded.config as never, t.ctx)) as unknown as Listener
  await l.start(emit)
  running = l
  const socket = connect({ host: '127.0.0.1', port: l.address().port, allowHalfOpen: true })
  await new Promise<void>((ok) => socket.once('connect', () => ok()))
  const data: Buffer[] = []
  socket.on('data', (d: Buffer) => data.push(d))
  socket.on('error', () => {})
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
  const loaded = await loadComponentConfig(listener, { port: 0, encoding: 'latin1' })
  t = await testContext({})
  const l = (await listener.create(loaded.config as never, t.ctx)) as unknown as Listener
  await l.start(inner)
  running = l
  const socket = connect({ host: '127.0.0.1', port: l.address().port })
  await new Promise<void>((ok) => socket.once('connect', () => ok()))
  const data: Buffer[] = []
  socket.on('data', (d: Buffer) => data.push(d))
  socket.on('error', () => {})
  socket.write(encodeFrame(Buffer.from('MSH|^~\\&|HÔPITAL|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|L1|P|2.5.1\rPID|1||100234\r', 'latin1')))
  await new Promise<void>((ok) => { const tick = () => (Buffer.concat(data).includes(0x1c) ? ok() : setTimeout(tick, 10)); tick() })
  socket.destroy()
  const text = Buffer.concat(data).toString('latin1')
  expect(text.slice(1, text.indexOf('\x1c')).split('\r')[0]!.split('|')[4]).toBe('HÔPITAL')
}, 10_000)

it('a message whose frame starts with empty lines (CR/LF before MSH) is read, not refused: AA and stored', async () => {
  const inner = recordingEmit()
  const loaded = await loadComponentConfig(listener, { port: 0 })
  t = await testContext({})
  const l = (await listener.create(loaded.config as never, t.ctx)) as unknown as Listener
  await l.start(inner)
  running = l
  const socket = connect({ host: '127.0.0.1', port: l.address().port })
  await new Promise<void>((ok) => socket.once('connect', () => ok()))
  const data: Buffer[] = []
  socket.on('data', (d: Buffer) => data.push(d))
  socket.on('error', () => {})
  socket.write(encodeFrame('\r\nMSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|NL1|P|2.5.1\rPID|1||100234\r'))
  await new Promise<void>((ok) => { const tick = () => (Buffer.concat(data).includes(0x1c) ? ok() : setTimeout(tick, 10)); tick() })
  socket.destroy()
  const text = Buffer.concat(data).toString('utf8')
  expect(readAck(text.slice(1, text.indexOf('\x1c')))).toMatchObject({ code: 'AA', controlId: 'NL1' })
  expect(inner.inputs.map((i) => i.attributes?.controlId)).toEqual(['NL1'])
}, 10_000)
