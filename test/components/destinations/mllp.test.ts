import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import mllp from '../../../components/destinations/mllp.ts'
import type { Destination } from '../../../shared/component.ts'
import type { Logger } from '../../../shared/log/index.ts'
import { readAck } from '../../../shared/hl7v2/index.ts'
import { startMllpReceiver, type MllpAnswer, type MllpReceiver } from '../../../engine/embedded/mllp-receiver.ts'
import { loadComponentConfig, message, testContext, type TestContext } from '../../_setup.ts'
import { readFileSync } from 'node:fs'

const FIXTURES = join(import.meta.dirname, '../../oauth/fixtures')

const oru = (controlId: string, eol = '\r') => [
  `MSH|^~\\&|WEIR|GENHOSP|LIS|LAB|20260301120000||ORU^R01^ORU_R01|${controlId}|P|2.5.1`,
  'PID|1||100234^^^GENHOSP^MR||DOE^JANE',
  'OBX|1|NM|2345-7^Glucose^LN||98|mg/dL|70-99|N|||F',
].join(eol)

let t: TestContext
let receiver: MllpReceiver | undefined
let dest: Destination | undefined
afterEach(async () => { await dest?.close?.(); dest = undefined; await receiver?.close(); receiver = undefined; await t?.cleanup() })

async function destination(config: Record<string, unknown>, channelDir?: string): Promise<Destination> {
  const loaded = await loadComponentConfig(mllp, config, { dir: channelDir })
  expect(loaded.problems).toEqual([])
  t = await testContext(channelDir ? { channelDir } : {})
  dest = (await mllp.create(loaded.config as never, t.ctx)) as Destination
  return dest
}

async function toReceiver(answers: MllpAnswer[], config: Record<string, unknown> = {}) {
  receiver = await startMllpReceiver({ answers })
  return destination({ host: receiver.host, port: receiver.port, ackTimeoutMs: 300, ...config })
}

const deliver = (d: Destination, body: unknown) => d.deliver(message(body), { signal: t.abort.signal, idempotencyKey: 'k' })
const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a failure') }, (e: Error & { code: string; retryable: boolean; retryAfterMs?: number; ack?: string }) => e)

describe('mllp destination config', () => {
  it.each([
    [{ port: 2575 }, '/source/config', 'must have required property "host"'],
    [{ host: 'lab', port: 0 }, '/source/config/port', 'must be >= 1'],
    [{ host: 'lab', port: 2575, ackTimeoutMs: 5 }, '/source/config/ackTimeoutMs', 'must be >= 100'],
    [{ host: 'lab', port: 2575, tls: { key: 5 } }, '/source/config/tls/key', 'must be a string or a secret reference {"$env": "NAME"} or {"$file": "path"}'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(mllp, config)
    expect(problems.map((p) => [p.pointer.replace('/destinations/0', '/source'), p.message])).toContainEqual([pointer, msg])
  })
})

describe('mllp destination', () => {
  it('sends the message in an MLLP frame and counts it delivered on its AA', async () => {
    const d = await toReceiver([{ ack: 'AA' }])
    const r = await deliver(d, oru('LAB-1'))
    expect(receiver!.received.map((m) => [m.controlId, m.text])).toEqual([['LAB-1', oru('LAB-1')]])
    expect(r.excerpt).toMatch(/MSA\|AA\|LAB-1/)
  })

  it('sends LF-terminated text with CR segment terminators', async () => {
    const d = await toReceiver([{ ack: 'AA' }])
    await deliver(d, oru('LAB-2', '\n'))
    expect(receiver!.received[0]!.text).toBe(oru('LAB-2'))
  })

  it('keeps one persistent connection for many messages', async () => {
    const d = await toReceiver([{ ack: 'AA' }])
    for (const id of ['A', 'B', 'C']) await deliver(d, oru(id))
    expect(receiver!.connections).toBe(1)
    expect(receiver!.received.map((m) => m.controlId)).toEqual(['A', 'B', 'C'])
  })

  it('AE: a retryable ERR_MLLP_NACK quoting the text; with retryOnError false, permanent', async () => {
    const d = await toReceiver([{ ack: 'AE', text: 'unknown patient' }])
    const e = await failure(deliver(d, oru('LAB-3')))
    expect([e.code, e.retryable, e.ack, e.message]).toEqual(['ERR_MLLP_NACK', true, 'AE', `127.0.0.1:${receiver!.port} answered AE for control id LAB-3: unknown patient`])
    await dest!.close?.()
    await receiver!.close()
    await t.cleanup()
    const strict = await toReceiver([{ ack: 'AE', text: 'unknown patient' }], { retryOnError: false })
    expect((await failure(deliver(strict, oru('LAB-3')))).retryable).toBe(false)
  })

  it('AR: a permanent ERR_MLLP_NACK with the receiver\'s reason', async () => {
    const d = await toReceiver([{ ack: 'AR', text: 'unsupported message type' }])
    const e = await failure(deliver(d, oru('LAB-4')))
    expect([e.code, e.retryable, e.ack]).toEqual(['ERR_MLLP_NACK', false, 'AR'])
    expect(e.message).toMatch(/answered AR for control id LAB-4: unsupported message type$/)
  })

  it('no ACK within ackTimeoutMs: ERR_MLLP_TIMEOUT, the connection is closed and the resend (same control id) uses a new one', async () => {
    const d = await toReceiver([{ fault: 'no-ack' }, { ack: 'AA' }])
    const e = await failure(deliver(d, oru('LAB-5')))
    expect([e.code, e.retryable, e.message]).toEqual(['ERR_MLLP_TIMEOUT', true, `127.0.0.1:${receiver!.port}: no ACK for control id LAB-5 within 300 ms; connection closed`])
    await deliver(d, oru('LAB-5'))
    expect(receiver!.received.map((m) => [m.controlId, m.connection, m.answered])).toEqual([['LAB-5', 1, 'none'], ['LAB-5', 2, 'AA']])
  })

  it('an ACK answered after the timeout is never taken for the next message: each message is delivered only on its own ACK', async () => {
    // Message 1's ACK comes 600 ms late (after the 300 ms timeout); messages 2 and 1 (resent) are answered at once.
    const d = await toReceiver([{ delayMs: 600 }, { ack: 'AA' }])
    const e = await failure(deliver(d, oru('MSG-1')))
    expect(e.code).toBe('ERR_MLLP_TIMEOUT')
    const second = await deliver(d, oru('MSG-2'))
    expect(readAck(second.excerpt!.replaceAll(' ⏎ ', '\r')).controlId).toBe('MSG-2')
    const resent = await deliver(d, oru('MSG-1'))
    expect(readAck(resent.excerpt!.replaceAll(' ⏎ ', '\r')).controlId).toBe('MSG-1')
    // The late ACK went to the closed first connection; nothing else was read as an ACK.
    await new Promise((ok) => setTimeout(ok, 400))
    expect(receiver!.received.map((m) => [m.controlId, m.connection])).toEqual([['MSG-1', 1], ['MSG-2', 2], ['MSG-1', 2]])
  })

  it('a late ACK for the previous message on the same connection is discarded, and the message\'s own ACK counts', async () => {
    const d = await toReceiver([{ ack: 'AA' }, { fault: 'late-ack', ack: 'AE', text: 'try later' }])
    await deliver(d, oru('P-1'))
    const e = await failure(deliver(d, oru('P-2')))
    // Had the late AA for P-1 been taken, P-2 would have counted as delivered.
    expect([e.code, e.ack]).toEqual(['ERR_MLLP_NACK', 'AE'])
    expect(t.logs.find((l) => l.msg === 'ACK for another message discarded')).toMatchObject({ controlId: 'P-2', ackFor: 'P-1', ack: 'AA' })
  })

  it('an ACK with a wrong control id is discarded: the message times out and is retried', async () => {
    const d = await toReceiver([{ fault: 'wrong-control-id' }])
    const e = await failure(deliver(d, oru('W-1')))
    expect(e.code).toBe('ERR_MLLP_TIMEOUT')
    expect(t.logs.find((l) => l.msg === 'ACK for another message discarded')).toMatchObject({ controlId: 'W-1', ackFor: 'W-1-OTHER' })
  })

  it('a dropped connection: a retryable ERR_MLLP_NETWORK; the next attempt reconnects', async () => {
    const d = await toReceiver([{ fault: 'drop' }, { ack: 'AA' }])
    const e = await failure(deliver(d, oru('D-1')))
    expect([e.code, e.retryable]).toEqual(['ERR_MLLP_NETWORK', true])
    expect(e.message).toMatch(/the peer closed the connection \(waiting for the ACK of control id D-1\)$/)
    await deliver(d, oru('D-1'))
    expect(receiver!.connections).toBe(2)
  })

  it('a refused connection backs off: the next attempt within the delay fails at once without connecting', async () => {
    const closed: Server = createServer()
    await new Promise<void>((ok) => closed.listen(0, '127.0.0.1', () => ok()))
    const port = (closed.address() as { port: number }).port
    await new Promise<void>((ok) => closed.close(() => ok()))
    const d = await destination({ host: '127.0.0.1', port, reconnectDelayMs: 60_000, maxReconnectDelayMs: 60_000 })
    const first = await failure(deliver(d, oru('R-1')))
    expect([first.code, first.retryable, first.retryAfterMs]).toEqual(['ERR_MLLP_NETWORK', true, 60_000])
    expect(first.message).toBe(`127.0.0.1:${port}: cannot connect to 127.0.0.1:${port}: ECONNREFUSED`)
    const second = await failure(deliver(d, oru('R-1')))
    expect(second.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:${port}: not reconnecting for another \\d+ ms after 1 failed attempt\\(s\\)$`))
  })

  it('an abort (engine shutdown) during a TLS handshake ends the delivery at once as ERR_SHUTDOWN, and counts no failed connection', async () => {
    // Accepts the TCP connection and never answers the handshake: without the signal, connecting waits out connectTimeoutMs.
    const sockets: Socket[] = []
    const silent = createServer((s) => { sockets.push(s); s.on('error', () => {}) })
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', () => ok()))
    try {
      const port = (silent.address() as { port: number }).port
      const d = await destination({ host: '127.0.0.1', port, tls: { serverName: 'lis.example' }, connectTimeoutMs: 4000, reconnectDelayMs: 60_000 })
      const abortedAfter = async (ms: number) => {
        const abort = new AbortController()
        setTimeout(() => abort.abort(), ms)
        const started = Date.now()
        const e = await failure(d.deliver(message(oru('S-1')), { signal: abort.signal, idempotencyKey: 'k' }))
        return { code: e.code, message: e.message, fast: Date.now() - started < 1500 }
      }
      const shutdown = { code: 'ERR_SHUTDOWN', message: `127.0.0.1:${port}: delivery aborted while connecting`, fast: true }
      expect(await abortedAfter(100)).toEqual(shutdown)
      // Not a failed attempt: the next delivery connects again rather than waiting out a reconnect delay.
      expect(await abortedAfter(100)).toEqual(shutdown)
      expect(sockets.length).toBe(2)
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise<void>((ok) => silent.close(() => ok()))
    }
  }, 10_000)

  it('a connection that opens just as the delivery is aborted sends nothing', async () => {
    receiver = await startMllpReceiver({ answers: [{ ack: 'AA' }] })
    const loaded = await loadComponentConfig(mllp, { host: receiver.host, port: receiver.port })
    t = await testContext()
    // The shutdown lands between the connection opening and the message being written.
    const log = Object.assign(Object.create(t.ctx.log) as Logger, {
      debug: (fields: object, msg: string) => { if (msg === 'MLLP connection open') t.abort.abort(); t.ctx.log.debug(fields, msg) },
    })
    dest = (await mllp.create(loaded.config as never, { ...t.ctx, log })) as Destination
    const e = await failure(deliver(dest, oru('S-2')))
    expect([e.code, e.message]).toEqual(['ERR_SHUTDOWN', `${receiver.host}:${receiver.port}: delivery aborted`])
    await new Promise((ok) => setTimeout(ok, 100))
    expect(receiver.received).toEqual([])
  })

  it.each([
    [{ resourceType: 'Observation' }, 'ERR_DELIVERY_PERMANENT', 'the mllp destination sends ER7 text; this message body is structured (add an "hl7v2" filter with "to": "er7" before it)'],
    ['MSH|^~\\&|A|B|C|D|20260101||ORU^R01|||2.5', 'ERR_DELIVERY_PERMANENT', 'MSH-10 (message control id) is empty: the ACK could not be matched to the message'],
    ['PID|1||1', 'ERR_HL7_PARSE', undefined],
  ])('refuses %j without sending it (%s)', async (body, code, msg) => {
    const d = await toReceiver([{ ack: 'AA' }])
    const e = await failure(deliver(d, body))
    expect([e.code, e.retryable]).toEqual([code, false])
    if (msg) expect(e.message).toBe(msg)
    expect(receiver!.received).toEqual([])
  })

  it('over TLS, checking the receiver\'s certificate against caFile', async () => {
    receiver = await startMllpReceiver({ answers: [{ ack: 'AA' }], tls: { cert: readFileSync(join(FIXTURES, 'server.pem')), key: readFileSync(join(FIXTURES, 'server.key')) } })
    const d = await destination({ host: '127.0.0.1', port: receiver.port, tls: { caFile: 'ca.pem' } }, FIXTURES)
    await deliver(d, oru('TLS-1'))
    expect(receiver.received.map((m) => m.controlId)).toEqual(['TLS-1'])
    await dest!.close?.()
    await t.cleanup()
    // Without the CA the certificate is refused (and retried: it may be a rotation in progress).
    const untrusted = await destination({ host: '127.0.0.1', port: receiver.port, tls: {} })
    const e = await failure(deliver(untrusted, oru('TLS-2')))
    expect([e.code, e.retryable]).toEqual(['ERR_MLLP_NETWORK', true])
    expect(e.message).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|unable to verify/i)
  })
})
