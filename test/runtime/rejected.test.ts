import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import { join } from 'node:path'
import { builtinComponents } from '../../components/index.ts'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { defineComponent, type Emit } from '../../shared/component.ts'
import { loadChannelObject } from '../../shared/config/load.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp } from '../../shared/mllp/client.ts'
import { encodeFrame } from '../../shared/mllp/frame.ts'
import { createLogger, silentLogger, type Logger } from '../../shared/log/index.ts'
import { rawSocket } from './_rejected.ts'
import { until, useRuntimeFixture } from './_helpers.ts'

const API_KEY = 'rejected-test-key-9f3a71c2'

const adt = (controlId: string, { version = '2.5.1' } = {}) => [
  `MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|${controlId}|P|${version}`,
  'EVN|A01|20260301120000',
  'PID|1||100234^^^GENHOSP^MR||DOE^JANE^Q||19800101|F',
].join('\r')

describe('input a listener rejects is counted per channel and reason, and shown in /metrics', () => {
  const rt = useRuntimeFixture()
  let admin: AdminServer
  beforeEach(async () => { admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: OPEN_CONFIG, log: silentLogger }) })
  afterEach(() => admin.close())
  /** The weir_messages_rejected_total lines of GET /metrics. */
  const rejectedLines = async () => (await (await fetch(`${admin.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('weir_messages_rejected_total{'))

  async function start(name: string, source: Record<string, unknown>, extra: { registry?: Parameters<typeof createRegistry>[0]; log?: Logger } = {}) {
    const raw = { name, source, destinations: [{ name: 'out', type: 'file', config: { directory: join(rt.dir.path, 'out') } }] }
    const loaded = await loadChannelObject(raw, { file: join(rt.dir.path, `${name}.json`), env: { LISTENER_KEY: API_KEY }, registry: createRegistry(extra.registry ?? builtinComponents) })
    const h = await startChannel(loaded, { store: rt.store, log: extra.log ?? silentLogger, dataDir: rt.dir.path, observer: admin.observer })
    rt.handles.push(h)
    admin.attach({ store: rt.store, handles: [h] })
    return h
  }

  it('http-listener: bad JSON, a wrong content type, a body above maxBytes and a missing API key are each counted once; a good request is not', async () => {
    const h = await start('http-in', { type: 'http-listener', config: { port: 0, maxBytes: 64, apiKey: { value: { $env: 'LISTENER_KEY' } } } })
    const url = `http://127.0.0.1:${h.source.address!()!.port}/`
    const post = (body: string, headers: Record<string, string> = {}) =>
      fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-api-key': API_KEY, ...headers } }).then((r) => r.status)
    expect(await post('{"mrn": ')).toBe(400)
    expect(await post('abc', { 'content-type': 'application/octet-stream' })).toBe(415)
    expect(await post(JSON.stringify({ pad: 'x'.repeat(100) }))).toBe(413)
    expect(await post('{"mrn": "1"}', { 'x-api-key': 'wrong' })).toBe(401)
    expect(await post('{"mrn": "2"}')).toBe(202)
    await h.whenIdle()
    expect(h.counters()).toMatchObject({ rejected: 4, received: 1, delivered: 1, errors: 0, refused: 0 })
    expect(h.rejections()).toMatchObject({ malformed: 1, too_large: 1, unauthorized: 1, unsupported_media_type: 1 })
    const lines = await rejectedLines()
    expect(lines).toEqual(expect.arrayContaining([
      'weir_messages_rejected_total{channel="http-in",reason="malformed"} 1',
      'weir_messages_rejected_total{channel="http-in",reason="too_large"} 1',
      'weir_messages_rejected_total{channel="http-in",reason="unauthorized"} 1',
      'weir_messages_rejected_total{channel="http-in",reason="unsupported_media_type"} 1',
      'weir_messages_rejected_total{channel="http-in",reason="unsupported_version"} 0',
    ]))
    // Never the free text of the refusal: the label values are the bounded set only.
    expect(lines.join('\n')).not.toMatch(/JSON|maxBytes|API key/)
  }, 20_000)

  it('mllp-listener: not HL7, two messages per frame, an oversized message, an unterminated frame and an HL7 version not accepted are each counted once', async () => {
    const h = await start('mllp-in', { type: 'mllp-listener', config: { port: 0, maxMessageBytes: 512, versions: ['2.5.1'] } })
    const port = h.source.address!()!.port
    const c = await connectMllp({ host: '127.0.0.1', port })
    try {
      const codes: string[] = []
      for (const text of ['hello, not HL7', `${adt('TWO1')}\r${adt('TWO2')}`, `${adt('BIG')}\rNTE|1||${'x'.repeat(600)}`, adt('OLD', { version: '2.3' }), adt('GOOD')]) {
        codes.push(readAck(await c.request(text, 5000)).code)
      }
      expect(codes).toEqual(['AR', 'AR', 'AR', 'AR', 'AA'])
    } finally {
      c.destroy()
    }
    const raw = await rawSocket(port)
    raw.socket.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(adt('CUT')), encodeFrame(adt('WHOLE'))]))
    await until(() => Buffer.concat(raw.data).toString().split('\x1c\r').length >= 3, 5000, 'two ACKs')
    raw.socket.destroy()
    await h.whenIdle()
    expect(h.counters()).toMatchObject({ rejected: 5, received: 2, delivered: 2, errors: 0 })
    expect(h.rejections()).toMatchObject({ malformed: 3, too_large: 1, unsupported_version: 1 })
    expect(await rejectedLines()).toEqual(expect.arrayContaining([
      'weir_messages_rejected_total{channel="mllp-in",reason="malformed"} 3',
      'weir_messages_rejected_total{channel="mllp-in",reason="too_large"} 1',
      'weir_messages_rejected_total{channel="mllp-in",reason="unsupported_version"} 1',
      'weir_messages_rejected_total{channel="mllp-in",reason="unauthorized"} 0',
    ]))
  }, 20_000)

  /** An mllp-listener channel whose log lines are kept, parsed. */
  async function startMllp(name: string, config: Record<string, unknown> = {}) {
    let text = ''
    const log = createLogger({ pretty: false, level: 'info', destination: { write: (line: string) => { text += line } } as NodeJS.WritableStream })
    const h = await start(name, { type: 'mllp-listener', config: { port: 0, ...config } }, { log })
    const lines = () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    return { h, port: h.source.address!()!.port, lines, text: () => text }
  }

  // The message's MRN (100234) must never reach the log: only the size of a discarded frame.
  it.each([
    ['ended by 0x1C (its final 0x0D missing)', Buffer.from([0x1c]), 'connection closed: frame ended by 0x1C without the final 0x0D, discarded'],
    ['without end bytes', Buffer.alloc(0), 'connection closed: frame without end bytes (0x1C 0x0D), discarded'],
  ])('mllp-listener: a frame %s, then the connection closed by the sender, is counted once as malformed; the log says what was missing and its size', async (_, tail, msg) => {
    const { h, port, lines, text } = await startMllp('mllp-cut')
    const raw = await rawSocket(port)
    raw.socket.end(Buffer.concat([Buffer.from([0x0b]), Buffer.from(adt('CUT9')), tail]))
    await until(() => lines().some((l) => l.msg === msg), 5000, msg)
    expect(lines().filter((l) => String(l.msg).includes('discarded'))).toMatchObject([{ msg, bytes: Buffer.byteLength(adt('CUT9')) }])
    expect(text()).not.toContain('100234')
    expect(h.counters()).toMatchObject({ rejected: 1, received: 0 })
    expect(h.rejections()).toMatchObject({ malformed: 1 })
    expect(await rejectedLines()).toContain('weir_messages_rejected_total{channel="mllp-cut",reason="malformed"} 1')
  }, 20_000)

  it('mllp-listener: a frame without end bytes when idleTimeoutMs passes is counted once as malformed, and the idle close says so', async () => {
    const { h, port, lines } = await startMllp('mllp-idle', { idleTimeoutMs: 1000 })
    const raw = await rawSocket(port)
    const closed = new Promise((ok) => raw.socket.once('close', ok))
    raw.socket.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(adt('IDLE1'))]))
    await closed
    await until(() => lines().some((l) => String(l.msg).includes('discarded')), 5000, 'the discard line')
    expect(lines().filter((l) => String(l.msg).includes('discarded') || l.msg === 'idle connection closed')).toMatchObject([
      { msg: 'connection closed: frame without end bytes (0x1C 0x0D), discarded', bytes: Buffer.byteLength(adt('IDLE1')), idleTimeoutMs: 1000 },
    ])
    expect(h.counters()).toMatchObject({ rejected: 1, received: 0 })
    expect(h.rejections()).toMatchObject({ malformed: 1 })
  }, 20_000)

  it('mllp-listener: a frame under way when the channel stops is logged as cut by the listener and not counted as rejected', async () => {
    const { h, port, lines } = await startMllp('mllp-stop')
    const raw = await rawSocket(port)
    // One write: the ACK of the whole frame says the unfinished one after it has reached the listener too.
    raw.socket.write(Buffer.concat([encodeFrame(adt('STOP1')), Buffer.from([0x0b]), Buffer.from(adt('STOP2'))]))
    await until(() => Buffer.concat(raw.data).includes(0x1c), 5000, 'the ACK of STOP1')
    await h.stop({ timeoutMs: 2000 })
    // The socket's 'close' (which logs the discard) may come a few ticks after the stop resolves.
    await until(() => lines().some((l) => String(l.msg).includes('discarded')), 5000, 'the discard line')
    expect(lines().filter((l) => String(l.msg).includes('discarded'))).toMatchObject([
      { msg: 'connection closed by the listener: frame without end bytes (0x1C 0x0D), discarded', bytes: Buffer.byteLength(adt('STOP2')) },
    ])
    expect(h.counters()).toMatchObject({ rejected: 0, received: 1 })
  }, 20_000)

  it('a custom source that never calls ctx.rejected works as before (nothing counted); one that passes an unknown reason counts as "other"', async () => {
    let emit: Emit | undefined
    let rejected: ((reason: never) => void) | undefined
    const custom = defineComponent({
      type: 'custom-in', kind: 'source', description: 'test source', configSchema: { type: 'object', additionalProperties: false, properties: {} },
      create: (_config, ctx) => {
        rejected = ctx.rejected as typeof rejected
        return { start(e: Emit) { emit = e }, stop() {} }
      },
    })
    const h = await start('custom', { type: 'custom-in' }, { registry: [...builtinComponents, custom] })
    await emit!({ body: { ok: true } })
    await h.whenIdle()
    expect(h.counters()).toMatchObject({ rejected: 0, received: 1, delivered: 1 })
    rejected!('free text from a sender' as never)
    expect(h.counters().rejected).toBe(1)
    expect(await rejectedLines()).toContain('weir_messages_rejected_total{channel="custom",reason="other"} 1')
  }, 20_000)
})
