import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import listener from '../../../components/sources/mllp-listener.ts'
import type { Emit } from '../../../shared/component.ts'
import { errorCodes } from '../../../shared/errors.ts'
import { parseEr7, readAck } from '../../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient } from '../../../shared/mllp/client.ts'
import { encodeFrame } from '../../../shared/mllp/frame.ts'
import { gatedEmit, loadComponentConfig, recordingEmit, until, useSourceUnderTest } from '../../_setup.ts'

const FIXTURES = join(import.meta.dirname, '../../oauth/fixtures')
type Listener = { start: (e: Emit) => Promise<void>; stop: () => Promise<void>; address: () => AddressInfo }

const adt = (controlId: string, { trigger = 'A01', version = '2.5.1', msh15 = '', app = 'EPIC', facility = 'GENHOSP', eol = '\r' } = {}) => [
  `MSH|^~\\&|${app}|${facility}|WEIR|HIE|20260301120000||ADT^${trigger}^ADT_A01|${controlId}|P|${version}|||${msh15}`,
  'EVN|A01|20260301120000',
  'PID|1||100234^^^GENHOSP^MR||DOE^JANE^Q||19800101|F',
  'PV1|1|I|4B^401^1',
].join(eol)

const startSource = useSourceUnderTest<Listener>(listener)
const clients: MllpClient[] = []
// Registered after useSourceUnderTest, so it runs first: the clients go before the listener stops.
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy()
})

async function start(config: Record<string, unknown> = {}, emit = recordingEmit(), channelDir?: string) {
  const { source, t, stop } = await startSource({ port: 0, ...config }, emit, channelDir)
  return { emit, port: source.address().port, t, stop }
}

async function client(port: number, tls?: Parameters<typeof connectMllp>[0]['tls']) {
  const c = await connectMllp({ host: '127.0.0.1', port, ...(tls ? { tls } : {}) })
  clients.push(c)
  return c
}

/** A raw socket, for bytes that are not MLLP; resolves `closed` when the listener closes it. */
async function rawSocket(port: number): Promise<{ socket: Socket; closed: Promise<void>; data: Buffer[] }> {
  const socket = connect({ host: '127.0.0.1', port })
  await new Promise<void>((ok) => socket.once('connect', () => ok()))
  const data: Buffer[] = []
  socket.on('data', (d: Buffer) => data.push(d))
  socket.on('error', () => {})
  return { socket, data, closed: new Promise<void>((ok) => socket.once('close', () => ok())) }
}

/** Sends a frame start with `cut` and no end bytes, then a whole message with control id `whole`: the two ACKs' ER7 text. */
async function cutThenWhole(port: number, cut: string, whole: string): Promise<string[]> {
  const raw = await rawSocket(port)
  raw.socket.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(cut), encodeFrame(adt(whole))]))
  await until(() => Buffer.concat(raw.data).toString().split('\x1c\r').length >= 3, 5000, 'two ACKs')
  return Buffer.concat(raw.data).toString().split('\x1c\r').filter(Boolean).map((f) => f.slice(1))
}

const field = (ack: string, segment: string, n: number) => ack.split('\r').find((s) => s.startsWith(segment))?.split('|')[segment === 'MSH' ? n - 1 : n]

describe('mllp-listener config', () => {
  it.each([
    [{}, '/source/config', 'must have required property "port"'],
    [{ port: 1, maxMessageBytes: 10 }, '/source/config/maxMessageBytes', 'must be >= 256'],
    [{ port: 1, idleTimeoutMs: 10 }, '/source/config/idleTimeoutMs', 'must be >= 1000'],
    [{ port: 1, versions: ['3.0'] }, '/source/config/versions/0', 'must match pattern "^2\\.[0-9](\\.[0-9]+)?$"'],
    [{ port: 1, tls: { certFile: 'c.pem', key: 'literal-key-pem', requireClientCert: true } }, '/source/config/tls/requireClientCert', 'requires "caFile" (the CAs client certificates must chain to)'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(listener, config)
    expect(problems.map((p) => [p.pointer, p.message])).toContainEqual([pointer, msg])
  })
})

describe('mllp-listener', () => {
  it('answers AA only after emit resolves (the durable write), with the ACK built from the message header', async () => {
    const g = gatedEmit()
    const { port } = await start({}, g.emit)
    const c = await client(port)
    c.send(adt('MSG00001'))
    await expect(c.next(300)).rejects.toMatchObject({ code: 'ETIMEDOUT' })
    g.release()
    const ack = await c.next(5000)
    expect(readAck(ack)).toEqual({ code: 'AA', controlId: 'MSG00001', text: '' })
    expect(ack.split('\r')[0]).toMatch(/^MSH\|\^~\\&\|WEIR\|HIE\|EPIC\|GENHOSP\|\d{14}\+0000\|\|ACK\^A01\^ACK\|[0-9A-F]+\|P\|2\.5\.1$/)
  })

  it('stores ER7 text with the content type and the MSH attributes routing needs', async () => {
    const { port, emit } = await start()
    const c = await client(port)
    await c.request(adt('MSG00002'), 5000)
    expect(emit.inputs[0]).toMatchObject({
      body: adt('MSG00002'), contentType: 'x-application/hl7-v2+er7',
      attributes: { messageType: 'ADT', trigger: 'A01', controlId: 'MSG00002', sendingApplication: 'EPIC', sendingFacility: 'GENHOSP', version: '2.5.1', remoteAddress: '127.0.0.1' },
    })
    expect(emit.inputs[0]!.dedupeKey).toBeUndefined()
  })

  it('handles several messages sent at once on one connection in order, one ACK each', async () => {
    const { port, emit } = await start()
    const c = await client(port)
    const ids = Array.from({ length: 20 }, (_, i) => `SEQ${i}`)
    for (const id of ids) c.send(adt(id))
    const acks = []
    for (const _ of ids) acks.push(readAck(await c.next(5000)).controlId)
    expect(acks).toEqual(ids)
    expect(emit.inputs.map((i) => i.attributes!.controlId)).toEqual(ids)
  })

  it.each([
    ['a message that does not start with MSH', 'PID|1||100234', 'AR', '', /^not an HL7 v2 message: it does not start with an MSH segment$/],
    ['an unaccepted version', adt('V1', { version: '2.3' }), 'AR', 'V1', /^HL7 version "2\.3" is not accepted \(accepted: 2\.5\.1\)$/],
    ['a message without a control id', adt(''), 'AR', '', /^MSH-10 \(message control id\) is empty$/],
  ])('refuses %s: %s with the reason, nothing stored', async (_name, text, code, controlId, reason) => {
    const { port, emit, t } = await start({ versions: ['2.5.1'] })
    const c = await client(port)
    const ack = readAck(await c.request(text, 5000))
    expect([ack.code, ack.controlId]).toEqual([code, controlId])
    expect(ack.text).toMatch(reason)
    expect(emit.inputs).toEqual([])
    expect(t.logs.find((l) => l.msg === 'message refused')).toMatchObject({ ack: code })
  })

  it('answers AE with an ERR segment for a message that does not parse', async () => {
    const broken = 'MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301||ADT^A01|BAD1|P|2.5.1\rPID|1||100234\rpv1|1|I'
    const parseError = (() => { try { parseEr7(broken); return '' } catch (e) { return (e as Error).message } })()
    expect(parseError).toMatch(/^invalid HL7 v2 message: segment 3: name "pv1"/)
    const { port, emit } = await start()
    const c = await client(port)
    const ack = await c.request(broken, 5000)
    expect(readAck(ack)).toEqual({ code: 'AE', controlId: 'BAD1', text: parseError })
    expect(field(ack, 'ERR', 3)).toBe('102^Data type error^HL70357')
    expect(emit.inputs).toEqual([])
  })

  const MSH1_RULE = 'MSH segment cannot be read: MSH-1 (field separator) must be one character, not a letter, digit or space'
  const MSH2_RULE = 'MSH segment cannot be read: MSH-2 (encoding characters) must be 4 or 5 distinct characters, none a letter, digit, space or the field separator'
  it.each([
    ['a letter after MSH', 'MSHX|^~\\&|EPIC|H|||20260301||ADT^A01|1|P|2.5.1\r', MSH1_RULE],
    ['a segment end right after MSH', 'MSH\rPID|1||9^^^H^MR\r', MSH1_RULE],
    ['the component separator as field separator', 'MSH^~\\&|EPIC|H\r', MSH2_RULE],
    ['three encoding characters', 'MSH|^~\\|EPIC|H|||20260301||ADT^A01|1|P|2.5.1\r', MSH2_RULE],
    ['an encoding character twice', 'MSH|^^\\&|EPIC|H|||20260301||ADT^A01|1|P|2.5.1\r', MSH2_RULE],
    ['a NUL byte in MSH', 'MSH|^~\\&|EP\u0000IC|H|||20260301||ADT^A01|1|P|2.5.1\r', 'MSH segment cannot be read: binary data (a NUL byte at offset 11)'],
  ])('answers AE with "|" and "^~\\&" when MSH cannot be read (%s): a readable reason quoting none of the message, and the connection serves the next message', async (_name, frame, reason) => {
    const rejections: unknown[] = []
    const onRejection = (e: unknown) => { rejections.push(e) }
    process.on('unhandledRejection', onRejection)
    try {
      const { port, emit, t } = await start()
      const c = await client(port)
      const ack = await c.request(frame, 5000)
      expect(readAck(ack)).toEqual({ code: 'AE', controlId: '', text: reason })
      // MSA-3 and ERR-8 as written: no HL7 escape sequence (the message's quoted separators, escaped, were noise such as \S\\R\).
      expect(field(ack, 'MSA', 3)).toBe(reason)
      expect(field(ack, 'ERR', 8)).toBe(reason)
      expect(field(ack, 'MSA', 3)).not.toMatch(/\\[SRETF]\\/)
      expect(ack.startsWith('MSH|^~\\&|')).toBe(true)
      // The log says why, and holds nothing of the message (MSH-3 "EPIC", or "EP" before the NUL byte).
      const refused = t.logs.find((l) => l.msg === 'message refused')
      expect(refused).toMatchObject({ ack: 'AE', reason })
      expect(JSON.stringify(refused)).not.toMatch(/EP/)
      expect(field(ack, 'ERR', 3)).toBe('100^Segment sequence error^HL70357')
      expect(readAck(await c.request(adt('NEXT'), 5000)).code).toBe('AA')
      expect(emit.inputs.map((i) => i.attributes!.controlId)).toEqual(['NEXT'])
      expect(rejections).toEqual([])
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  })

  it('answers AE (103, naming the "encoding" option) to a message that is not valid UTF-8; nothing stored', async () => {
    const { port, emit, stop } = await start()
    const raw = await rawSocket(port)
    // PID-5 "MÜLLER^JÖRG" as a legacy system sends it: ISO-8859-1 bytes (MSH-18 8859/1, which is not read).
    const latin1 = 'MSH|^~\\&|LEGACY|H|||20260301||ADT^A01|L1|P|2.3||||||8859/1\rPID|1||9^^^H^MR||MÜLLER^JÖRG\r'
    raw.socket.write(encodeFrame(Buffer.from(latin1, 'latin1')))
    await until(() => Buffer.concat(raw.data).includes(0x1c), 5000, 'an ACK')
    const ack = Buffer.concat(raw.data).toString().slice(1, -2)
    expect(readAck(ack)).toEqual({ code: 'AE', controlId: 'L1', text: 'message is not valid UTF-8 (the listener\'s "encoding" is utf-8; for a sender of ISO-8859-1 set "encoding": "latin1")' })
    expect(field(ack, 'ERR', 1)).toBe('^^^103&Table value not found&HL70357')
    expect(emit.inputs).toEqual([])
    // The same bytes are stored intact with "encoding": "latin1"; UTF-8 with a BOM under the default.
    await stop()
    const asLatin1 = await start({ encoding: 'latin1' })
    const raw2 = await rawSocket(asLatin1.port)
    raw2.socket.write(encodeFrame(Buffer.from(latin1, 'latin1')))
    await until(() => Buffer.concat(raw2.data).includes(0x1c), 5000, 'an ACK')
    raw2.socket.destroy()
    expect(readAck(Buffer.concat(raw2.data).toString('latin1').slice(1, -2)).code).toBe('AA')
    expect(asLatin1.emit.inputs.map((i) => i.body)).toEqual([latin1])
  })

  it('stores valid UTF-8 (after a byte order mark) as sent', async () => {
    const { port, emit } = await start()
    const c = await client(port)
    const text = adt('U1').replace('DOE^JANE', 'MÜLLER^JÖRG')
    const raw = await rawSocket(port)
    raw.socket.write(encodeFrame(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])))
    await until(() => Buffer.concat(raw.data).includes(0x1c), 5000, 'an ACK')
    expect(readAck(Buffer.concat(raw.data).toString().slice(1, -2)).code).toBe('AA')
    expect(readAck(await c.request(adt('U2'), 5000)).code).toBe('AA')
    expect(emit.inputs.map((i) => i.body)).toEqual([text, adt('U2')])
  })

  it('refuses a 20 MB frame with AR (read to its end, never held whole), then serves the next message on the same connection', async () => {
    const { port, emit } = await start({ maxMessageBytes: 1024 * 1024 })
    const c = await client(port)
    const big = adt('BIG1') + '\rOBX|1|ED|PDF^Report||' + 'A'.repeat(20 * 1024 * 1024)
    const ack = readAck(await c.request(big, 30_000))
    expect([ack.code, ack.controlId, ack.text]).toEqual(['AR', 'BIG1', `message of ${Buffer.byteLength(big)} bytes is larger than maxMessageBytes 1048576`])
    expect(readAck(await c.request(adt('AFTER'), 5000)).code).toBe('AA')
    expect(emit.inputs.map((i) => i.attributes!.controlId)).toEqual(['AFTER'])
  })

  it('closes a connection that sends bytes outside a frame, logging why; nothing stored, the listener keeps serving', async () => {
    const { port, emit, t } = await start()
    const raw = await rawSocket(port)
    raw.socket.write(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x0b]))
    await raw.closed
    expect(t.logs.find((l) => l.msg === 'connection closed: bytes that are not MLLP')).toMatchObject({ reason: '0xde outside a frame (expected the start byte 0x0b)' })
    expect(emit.inputs).toEqual([])
    const c = await client(port)
    expect(readAck(await c.request(adt('OK1'), 5000)).code).toBe('AA')
  })

  it('a frame whose end bytes never come is discarded when the connection goes idle, with the reason logged', async () => {
    const { port, emit, t } = await start({ idleTimeoutMs: 1000 })
    const raw = await rawSocket(port)
    raw.socket.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(adt('HALF'))]))
    await raw.closed
    expect(t.logs.find((l) => l.msg === 'connection closed: frame without end bytes (0x1C 0x0D), discarded')).toMatchObject({ bytes: Buffer.byteLength(adt('HALF')) })
    expect(raw.data).toEqual([])
    expect(emit.inputs).toEqual([])
  })

  it('a frame cut short by the next start byte is answered AR, and the next message is stored', async () => {
    const { port, emit } = await start()
    const raw = await rawSocket(port)
    raw.socket.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(adt('CUT')), encodeFrame(adt('WHOLE'))]))
    await until(() => Buffer.concat(raw.data).toString().split('\x1c\r').length >= 3, 5000, 'two ACKs')
    const acks = Buffer.concat(raw.data).toString().split('\x1c\r').filter(Boolean).map((f) => readAck(f.slice(1)))
    expect(acks.map((a) => [a.code, a.controlId])).toEqual([['AR', 'CUT'], ['AA', 'WHOLE']])
    expect(emit.inputs.map((i) => i.attributes!.controlId)).toEqual(['WHOLE'])
  })

  it('closes a connection that never sends anything after idleTimeoutMs', async () => {
    const { port, t } = await start({ idleTimeoutMs: 1000 })
    const raw = await rawSocket(port)
    await raw.closed
    expect(t.logs.find((l) => l.msg === 'idle connection closed')).toMatchObject({ idleTimeoutMs: 1000 })
  })

  it('answers a frame cut short before MSH-11 by the next start byte with AR, MSH-11 "P", MSH-12 "2.5" and the v2.5 ERR segment; the next message is stored', async () => {
    const { port, emit } = await start()
    const [ar, aa] = await cutThenWhole(port, 'MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|CUT2|', 'WHOLE2')
    const reason = 'frame without end bytes (0x1C 0x0D) before the next start byte; discarded'
    expect(readAck(ar!)).toEqual({ code: 'AR', controlId: 'CUT2', text: reason })
    expect([field(ar!, 'MSH', 3), field(ar!, 'MSH', 5), field(ar!, 'MSH', 9), field(ar!, 'MSH', 11), field(ar!, 'MSH', 12)]).toEqual(['WEIR', 'EPIC', 'ACK^A01^ACK', 'P', '2.5'])
    expect(ar!.split('\r').find((s) => s.startsWith('ERR|'))).toBe(`ERR|||100^Segment sequence error^HL70357|E||||${reason}`)
    expect(readAck(aa!)).toMatchObject({ code: 'AA', controlId: 'WHOLE2' })
    expect(emit.inputs.map((i) => i.attributes!.controlId)).toEqual(['WHOLE2'])
  })

  it('a frame cut short inside MSH-10 is answered AR without echoing the partial control id (MSA-2 empty)', async () => {
    const { port, emit } = await start()
    // The sender's control id is CUT345; the frame ends after "CUT3", which must not read as a control id of its own.
    const [ar, aa] = await cutThenWhole(port, 'MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|CUT3', 'WHOLE3')
    expect(readAck(ar!)).toMatchObject({ code: 'AR', controlId: '' })
    expect([field(ar!, 'MSH', 5), field(ar!, 'MSH', 9)]).toEqual(['EPIC', 'ACK^A01^ACK'])
    expect(readAck(aa!)).toMatchObject({ code: 'AA', controlId: 'WHOLE3' })
    expect(emit.inputs.map((i) => i.attributes!.controlId)).toEqual(['WHOLE3'])
  })

  it('closes connections beyond maxConnections at once, logging it', async () => {
    const { port, t } = await start({ maxConnections: 1 })
    const first = await client(port)
    const second = await rawSocket(port)
    await second.closed
    expect(t.logs.find((l) => l.msg === 'connection refused: maxConnections reached')).toMatchObject({ maxConnections: 1 })
    expect(readAck(await first.request(adt('STILL'), 5000)).code).toBe('AA')
  })

  it('answers AE (send again later) when the message cannot be stored, never AA', async () => {
    const emit = recordingEmit({ fail: (_i, n) => (n === 0 ? new errorCodes.ERR_BACKPRESSURE('channel test: queue is full (10 messages pending)', { retryAfterMs: 1000 }) : undefined) })
    const { port } = await start({}, emit)
    const c = await client(port)
    const ack = readAck(await c.request(adt('FULL1'), 5000))
    expect(ack).toEqual({ code: 'AE', controlId: 'FULL1', text: 'message not stored, send it again later: queue full' })
    expect(readAck(await c.request(adt('FULL1'), 5000)).code).toBe('AA')
    expect(emit.inputs).toHaveLength(1)
  })

  it('with dedupeByControlId, a resent control id from the same facility is acknowledged and stored once', async () => {
    const { port, emit } = await start({ dedupeByControlId: true })
    const c = await client(port)
    for (const m of [adt('DUP1'), adt('DUP1'), adt('DUP1', { facility: 'OTHERHOSP' })]) expect(readAck(await c.request(m, 5000)).code).toBe('AA')
    expect(emit.results.map((r) => r.duplicate)).toEqual([false, true, false])
    expect(emit.inputs[0]!.dedupeKey).toBe('mllp-listener:EPIC:GENHOSP:DUP1')
    expect(emit.inputs[0]!.dedupeWindowMs).toBe(86_400_000)
  })

  it('with dedupeByControlId, two applications of one facility numbering their messages from 1 are two messages', async () => {
    const { port, emit } = await start({ dedupeByControlId: true })
    const c = await client(port)
    // The ADT system and the lab system of one hospital: the same facility and control id, different MSH-3.
    for (const m of [adt('1', { app: 'EPIC' }), adt('1', { app: 'BEAKER' }), adt('1', { app: 'BEAKER' })]) expect(readAck(await c.request(m, 5000)).code).toBe('AA')
    expect(emit.results.map((r) => r.duplicate)).toEqual([false, false, true])
  })

  it('with dedupeByControlId, a ":" in application, facility or control id cannot make two messages one key', async () => {
    const { port, emit } = await start({ dedupeByControlId: true })
    const c = await client(port)
    const messages = [adt('B:1', { facility: 'A' }), adt('1', { facility: 'A:B' }), adt('1', { app: 'EPIC:A', facility: 'B' })]
    for (const m of messages) expect(readAck(await c.request(m, 5000)).code).toBe('AA')
    expect(emit.results.map((r) => r.duplicate)).toEqual([false, false, false])
    expect(emit.inputs.map((i) => i.dedupeKey)).toEqual(['mllp-listener:EPIC:A:B%3A1', 'mllp-listener:EPIC:A%3AB:1', 'mllp-listener:EPIC%3AA:B:1'])
  })

  it('dedupeWindowMs is handed to the store with the key', async () => {
    const { port, emit } = await start({ dedupeByControlId: true, dedupeWindowMs: 60_000 })
    const c = await client(port)
    expect(readAck(await c.request(adt('W1'), 5000)).code).toBe('AA')
    expect(emit.inputs[0]).toMatchObject({ dedupeKey: 'mllp-listener:EPIC:GENHOSP:W1', dedupeWindowMs: 60_000 })
  })

  it.each([
    ['AL', [['CA', 'E1'], ['CR', 'E2']]],
    ['ER', [['CR', 'E2']]],
    ['SU', [['CA', 'E1']]],
    ['NE', []],
  ])('enhanced mode, MSH-15 %s: accept acknowledgements as asked', async (msh15, expected) => {
    const { port, emit } = await start({ versions: ['2.5.1'] })
    const c = await client(port)
    c.send(adt('E1', { msh15 }))
    c.send(adt('E2', { msh15, version: '2.4' }))
    // A marker in original mode: its AA comes after any answer to E1 and E2.
    c.send(adt('MARK'))
    const got: string[][] = []
    for (;;) {
      const a = readAck(await c.next(5000))
      if (a.controlId === 'MARK') break
      got.push([a.code, a.controlId])
    }
    expect(got).toEqual(expected)
    expect(emit.inputs.map((i) => i.attributes!.controlId)).toEqual(['E1', 'MARK'])
  })

  it('serves MLLP over mutual TLS and records the client certificate subject', async () => {
    const { port, emit } = await start({ tls: { certFile: 'server.pem', key: { $file: 'server.key' }, caFile: 'ca.pem', requireClientCert: true } }, recordingEmit(), FIXTURES)
    const ca = readFileSync(join(FIXTURES, 'ca.pem'))
    const c = await client(port, { ca, cert: readFileSync(join(FIXTURES, 'client.pem')), key: readFileSync(join(FIXTURES, 'client.key')) })
    expect(readAck(await c.request(adt('TLS1'), 5000)).code).toBe('AA')
    expect(emit.inputs[0]!.attributes).toMatchObject({ controlId: 'TLS1', clientCertSubject: 'weir-mtls-client' })
    // Without a client certificate the handshake fails.
    const without = await connectMllp({ host: '127.0.0.1', port, tls: { ca } }).then((c2) => c2.request(adt('TLS2'), 5000)).catch((e: Error) => e)
    expect(without).toBeInstanceOf(Error)
    expect(emit.inputs).toHaveLength(1)
  })

  it('with optional client certificates, records the subject only of a certificate that chains to caFile', async () => {
    const { port, emit } = await start({ tls: { certFile: 'server.pem', key: { $file: 'server.key' }, caFile: 'ca.pem' } }, recordingEmit(), FIXTURES)
    const ca = readFileSync(join(FIXTURES, 'ca.pem'))
    const cert = (name: string) => ({ cert: readFileSync(join(FIXTURES, `${name}.pem`)), key: readFileSync(join(FIXTURES, `${name}.key`)) })
    const trusted = await client(port, { ca, ...cert('client') })
    expect(readAck(await trusted.request(adt('T1'), 5000)).code).toBe('AA')
    // A self-signed certificate with the same subject is let in (client certificates are optional
    // here) but names no one: its subject must not be recorded as if it had been verified.
    const rogue = await client(port, { ca, ...cert('rogue-client') })
    expect(readAck(await rogue.request(adt('T2'), 5000)).code).toBe('AA')
    const plain = await client(port, { ca })
    expect(readAck(await plain.request(adt('T3'), 5000)).code).toBe('AA')
    expect(emit.inputs.map((i) => [i.attributes!.controlId, i.attributes!.clientCertSubject])).toEqual([['T1', 'weir-mtls-client'], ['T2', undefined], ['T3', undefined]])
  })

  it('stop() lets a message waiting for its durable write get its ACK', async () => {
    const g = gatedEmit()
    const { port, stop } = await start({}, g.emit)
    const c = await client(port)
    c.send(adt('LAST'))
    await g.called
    const stopped = stop()
    g.release()
    expect(readAck(await c.next(5000))).toMatchObject({ code: 'AA', controlId: 'LAST' })
    await stopped
  })
})
