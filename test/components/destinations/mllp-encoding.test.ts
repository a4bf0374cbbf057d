import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import mllp from '../../../components/destinations/mllp.ts'
import type { Destination } from '../../../shared/component.ts'
import { buildAck, readHeader } from '../../../shared/hl7v2/index.ts'
import { createFrameDecoder, encodeFrame } from '../../../shared/mllp/frame.ts'
import { loadComponentConfig, message, testContext, type TestContext } from '../../_setup.ts'

/**
 * The `encoding` of the mllp destination: the bytes each frame carries, and how the ACK is read.
 * The receiver is a raw loopback MLLP server that keeps the bytes of every frame it gets and answers
 * with an ACK encoded as the test says (as a latin1 hospital system would).
 */
interface RawReceiver { port: number; frames: Buffer[]; close(): Promise<void> }

async function rawReceiver(answer: { code: 'AA' | 'AE'; text?: string; encoding: 'utf8' | 'latin1' }): Promise<RawReceiver> {
  const frames: Buffer[] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const decoder = createFrameDecoder({ maxMessageBytes: 1 << 20 }, (e) => {
      if (e.type !== 'frame') return void socket.destroy()
      frames.push(e.data)
      // The header is ASCII here, whatever the encoding of the rest.
      const header = readHeader(e.data.toString('latin1'))
      socket.write(encodeFrame(Buffer.from(buildAck(header, answer.code, answer.text !== undefined ? { text: answer.text } : {}), answer.encoding)))
    })
    socket.on('data', (chunk: Buffer) => decoder.push(chunk))
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  return {
    port: (server.address() as AddressInfo).port,
    frames,
    close: () => new Promise<void>((ok) => { for (const s of sockets) s.destroy(); server.close(() => ok()) }),
  }
}

let t: TestContext | undefined
let receiver: RawReceiver | undefined
let dest: Destination | undefined
afterEach(async () => { await dest?.close?.(); dest = undefined; await receiver?.close(); receiver = undefined; await t?.cleanup(); t = undefined })

async function toReceiver(answer: Parameters<typeof rawReceiver>[0], config: Record<string, unknown> = {}): Promise<Destination> {
  receiver = await rawReceiver(answer)
  const loaded = await loadComponentConfig(mllp, { host: '127.0.0.1', port: receiver.port, ackTimeoutMs: 2000, ...config })
  expect(loaded.problems).toEqual([])
  t = await testContext()
  dest = (await mllp.create(loaded.config as never, t.ctx)) as Destination
  return dest
}

const deliver = (d: Destination, body: string) => d.deliver(message(body), { signal: t!.abort.signal, idempotencyKey: 'k' })
const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a failure') }, (e: Error & { code: string; retryable: boolean }) => e)

const adt = (controlId: string, name: string) => [
  `MSH|^~\\&|WEIR|HÔPITAL|ADT|SÜD|20261201120000||ADT^A08^ADT_A01|${controlId}|P|2.5`,
  `PID|1||4711^^^HOSP^MR||${name}`,
].join('\r')

describe('mllp destination encoding option', () => {
  it('is utf-8 by default and takes the listener\'s values; anything else is refused', async () => {
    expect((await loadComponentConfig(mllp, { host: 'lab', port: 2575 })).config).toMatchObject({ encoding: 'utf-8' })
    expect((await loadComponentConfig(mllp, { host: 'lab', port: 2575, encoding: 'latin1' })).problems).toEqual([])
    const { problems } = await loadComponentConfig(mllp, { host: 'lab', port: 2575, encoding: 'iso-8859-1' })
    expect(problems.map((p) => [p.pointer.replace('/destinations/0', ''), p.message])).toEqual([['/config/encoding', 'must be one of "utf-8", "latin1"']])
    const schema = mllp.configSchema as { properties: Record<string, unknown> }
    const listener = (await import('../../../components/sources/mllp-listener.ts')).default.configSchema as { properties: Record<string, { enum?: unknown; default?: unknown }> }
    expect(schema.properties.encoding).toMatchObject({ enum: listener.properties.encoding!.enum, default: listener.properties.encoding!.default })
  })

  it('utf-8 (default): the frame carries the UTF-8 bytes of the message', async () => {
    const d = await toReceiver({ code: 'AA', encoding: 'utf8' })
    await deliver(d, adt('U-1', 'MÜLLER^JOSÉ'))
    expect(receiver!.frames).toEqual([Buffer.from(adt('U-1', 'MÜLLER^JOSÉ'), 'utf8')])
  })

  it('latin1: the frame carries one ISO-8859-1 byte per character, and the latin1 ACK is read as latin1', async () => {
    const d = await toReceiver({ code: 'AA', encoding: 'latin1' }, { encoding: 'latin1' })
    const r = await deliver(d, adt('L-1', 'MÜLLER^JOSÉ'))
    const wire = receiver!.frames[0]!
    expect(wire).toEqual(Buffer.from(adt('L-1', 'MÜLLER^JOSÉ'), 'latin1'))
    expect(wire.includes(Buffer.from([0x4d, 0xdc, 0x4c, 0x4c, 0x45, 0x52]))).toBe(true) // M Ü L L E R
    expect(wire.includes(Buffer.from('Ü', 'utf8'))).toBe(false)
    // The ACK echoes MSH-3/4 in MSH-5/6: read as latin1, the facility is the one sent.
    expect(r.excerpt).toMatch(/^MSH\|\^~\\&\|ADT\|SÜD\|WEIR\|HÔPITAL\|/)
  })

  it('latin1: the text of a negative ACK is read as latin1', async () => {
    const d = await toReceiver({ code: 'AE', text: 'Patient unbekannt: Prüfung nötig', encoding: 'latin1' }, { encoding: 'latin1' })
    const e = await failure(deliver(d, adt('L-2', 'DOE^JANE')))
    expect([e.code, e.retryable]).toEqual(['ERR_MLLP_NACK', true])
    expect(e.message).toMatch(/answered AE for control id L-2: Patient unbekannt: Prüfung nötig$/)
  })

  it('latin1: a message with a character ISO-8859-1 lacks is refused, permanently, naming the character and where it is, not the content; nothing is sent', async () => {
    const d = await toReceiver({ code: 'AA', encoding: 'latin1' }, { encoding: 'latin1' })
    const e = await failure(deliver(d, adt('L-3', 'KOVÁCS^ŐRS')))
    expect([e.code, e.retryable]).toEqual(['ERR_DELIVERY_PERMANENT', false])
    expect(e.message).toBe('character U+0150 (PID-5) cannot be sent in latin1 (ISO-8859-1); the message was not sent (set "encoding": "utf-8" if the receiver reads UTF-8)')
    expect(e.message).not.toMatch(/KOV|RS/)
    // A character outside the Basic Multilingual Plane is named by its code point, not as two halves.
    const emoji = await failure(deliver(d, `${adt('L-4', 'DOE^JANE')}\rNTE|1||ok 😀`))
    expect(emoji.message).toMatch(/^character U\+1F600 \(NTE-3\) cannot be sent in latin1/)
    await new Promise((ok) => setTimeout(ok, 100))
    expect(receiver!.frames).toEqual([])
    // Nothing was refused by the receiver: the connection is still good for a message latin1 can carry.
    await deliver(d, adt('L-5', 'KOVÁCS^ORS'))
    expect(receiver!.frames).toEqual([Buffer.from(adt('L-5', 'KOVÁCS^ORS'), 'latin1')])
  })

  it('utf-8: a lone surrogate (no character at all) is refused rather than sent as U+FFFD', async () => {
    const d = await toReceiver({ code: 'AA', encoding: 'utf8' })
    const e = await failure(deliver(d, adt('U-2', 'DOE^JANE\uD83D')))
    expect([e.code, e.message]).toEqual(['ERR_DELIVERY_PERMANENT', 'character U+D83D (PID-5) cannot be sent in utf-8 (a lone UTF-16 surrogate); the message was not sent'])
    await new Promise((ok) => setTimeout(ok, 100))
    expect(receiver!.frames).toEqual([])
  })
})
