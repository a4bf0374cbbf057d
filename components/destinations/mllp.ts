import type { ConnectionOptions } from 'node:tls'
import { defineComponent, type ComponentContext, type ConfigOf, type DeliveryResult } from '../../shared/component.ts'
import { secretSchema } from '../../shared/config/secret-schema.ts'
import { errorCodes, PermanentError } from '../../shared/errors.ts'
import { readAck, readHeader } from '../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient, type MllpSocketError } from '../../shared/mllp/client.ts'
import { readTlsFile } from '../../shared/tls.ts'
import { reveal } from '../../shared/secret.ts'

const configSchema = {
  type: 'object', additionalProperties: false, required: ['host', 'port'],
  properties: {
    host: { type: 'string', minLength: 1, description: 'Host of the MLLP receiver.', examples: ['lab-interface.hospital.example'] },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'TCP port of the MLLP receiver.', examples: [2575] },
    ackTimeoutMs: { type: 'integer', minimum: 100, default: 30_000, description: 'How long to wait for the ACK of a message. Without it the connection is closed and the message sent again (same control id).' },
    connectTimeoutMs: { type: 'integer', minimum: 100, default: 10_000, description: 'How long to wait for a connection.' },
    connections: { type: 'integer', minimum: 1, maximum: 16, default: 1, description: 'Persistent connections kept open; each carries one message at a time. Keep 1 when the receiver needs the messages in order.' },
    reconnectDelayMs: { type: 'integer', minimum: 10, default: 500, description: 'Wait after a failed connection attempt, doubled after each further failure.' },
    maxReconnectDelayMs: { type: 'integer', minimum: 10, default: 30_000, description: 'Longest wait between connection attempts.' },
    encoding: { enum: ['utf-8', 'latin1'], default: 'utf-8', description: 'Character encoding of the messages sent and of the ACKs read (MSH-18 is neither read nor set). Set latin1 for a receiver that expects ISO-8859-1; a message with a character latin1 cannot carry (above U+00FF) is then not sent but goes to error, naming the character and its field.' },
    retryOnError: { type: 'boolean', default: true, description: 'Retry a message answered AE/CE (application error). With false it goes to error at once, as AR/CR always does.' },
    tls: {
      type: 'object', additionalProperties: false,
      description: 'Connect with TLS (certificate checked against `caFile`, or the system CAs).',
      properties: {
        caFile: { type: 'string', minLength: 1, description: 'PEM file of the CAs the receiver\'s certificate must chain to.' },
        certFile: { type: 'string', minLength: 1, description: 'PEM client certificate (mutual TLS).' },
        key: secretSchema('PEM private key of the client certificate.'),
        serverName: { type: 'string', minLength: 1, description: 'Name the receiver\'s certificate must carry (default: host).' },
      },
    },
  },
} as const

export type MllpDestinationConfig = ConfigOf<typeof configSchema>

const oneLine = (s: string) => s.replace(/\r\n?|\n/g, ' ⏎ ').slice(0, 500)

/** A character the encoding cannot carry: above U+00FF in latin1; in utf-8 a lone UTF-16 surrogate (half of a character). */
const UNSENDABLE = { latin1: /[^\x00-\xff]/u, 'utf-8': /[\uD800-\uDFFF]/u } as const

/** Where `at` is in the ER7 `text` (CR-terminated segments, field separator MSH-1): `PID-5`, or `segment 3` for a segment name. */
function fieldAt(text: string, at: number): string {
  const start = text.lastIndexOf('\r', at - 1) + 1
  const fields = text.slice(start, at).split(text[3]!).length - 1
  if (fields === 0) return `segment ${text.slice(0, at).split('\r').length}`
  const name = text.slice(start, start + 3)
  // MSH-1 is the field separator itself: the first field after the name is MSH-2.
  return `${name}-${name === 'MSH' ? fields + 1 : fields}`
}

/**
 * Refuses `text` when `encoding` cannot carry one of its characters (a latin1 receiver would get
 * another letter): the error names the character's code point and field, never the content around it.
 */
function checkEncodable(text: string, encoding: MllpDestinationConfig['encoding']): void {
  const m = UNSENDABLE[encoding].exec(text)
  if (!m) return
  const codePoint = `U+${m[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`
  const why = encoding === 'latin1' ? 'latin1 (ISO-8859-1); the message was not sent (set "encoding": "utf-8" if the receiver reads UTF-8)' : 'utf-8 (a lone UTF-16 surrogate); the message was not sent'
  throw new PermanentError(`character ${codePoint} (${fieldAt(text, m.index)}) cannot be sent in ${why}`)
}

/** Persistent connections, one message in flight on each; connection attempts back off after failures. */
function connectionPool(config: MllpDestinationConfig, ctx: ComponentContext) {
  const tls: ConnectionOptions | undefined = config.tls ? {
    ...(config.tls.caFile ? { ca: readTlsFile(ctx.channelDir, config.tls.caFile) } : {}),
    ...(config.tls.certFile ? { cert: readTlsFile(ctx.channelDir, config.tls.certFile) } : {}),
    ...(config.tls.key ? { key: reveal(config.tls.key) } : {}),
    ...(config.tls.serverName ? { servername: config.tls.serverName } : {}),
  } : undefined
  const where = `${config.host}:${config.port}`
  const idle: MllpClient[] = []
  const waiters: Array<() => void> = []
  let open = 0
  let failures = 0
  let nextAttemptAt = 0
  let closing = false

  /**
   * Opens a connection for a delivery; `signal` (the engine's shutdown) ends the attempt at once,
   * even mid-handshake. An aborted attempt says nothing about the receiver, so it is not counted
   * as a failure and sets no reconnect delay.
   */
  const connect = async (signal: AbortSignal): Promise<MllpClient> => {
    const wait = nextAttemptAt - Date.now()
    if (wait > 0) throw new errorCodes.ERR_MLLP_NETWORK(`${where}: not reconnecting for another ${wait} ms after ${failures} failed attempt(s)`, { retryAfterMs: wait })
    try {
      const c = await connectMllp({ host: config.host, port: config.port, connectTimeoutMs: config.connectTimeoutMs, encoding: config.encoding, signal, ...(tls ? { tls } : {}) })
      failures = 0
      ctx.log.debug({ receiver: where }, 'MLLP connection open')
      return c
    } catch (e) {
      if (signal.aborted) throw new errorCodes.ERR_SHUTDOWN(`${where}: delivery aborted while connecting`, { cause: e })
      failures++
      const delay = Math.min(config.maxReconnectDelayMs, config.reconnectDelayMs * 2 ** (failures - 1))
      nextAttemptAt = Date.now() + delay
      throw new errorCodes.ERR_MLLP_NETWORK(`${where}: ${(e as Error).message}`, { cause: e, retryAfterMs: delay })
    }
  }
  const wake = () => waiters.shift()?.()
  return {
    where,
    async acquire(signal: AbortSignal): Promise<MllpClient> {
      for (;;) {
        if (closing || signal.aborted) throw new errorCodes.ERR_SHUTDOWN(`${where}: destination closing`)
        const c = idle.pop()
        if (c && !c.closed) return c
        if (c) { open--; continue }
        if (open < config.connections) {
          open++
          try { return await connect(signal) } catch (e) { open--; wake(); throw e }
        }
        // Woken by a release or close(); an abort reaches waiters through the in-flight delivery it ends.
        await new Promise<void>((ok) => waiters.push(ok))
      }
    },
    /** Gives a connection back; a broken or timed-out one is closed (a late ACK can never be read from it). */
    release(c: MllpClient, healthy: boolean) {
      if (healthy && !c.closed && !closing) idle.push(c)
      else { c.destroy(); open-- }
      wake()
    },
    close() {
      closing = true
      for (const c of idle.splice(0)) c.destroy()
      for (const w of waiters.splice(0)) w()
    },
  }
}

/**
 * Sends `text` on `c` and waits for the ACK whose MSA-2 is `controlId`. An ACK for another message
 * (a late one for a message already given up on) is logged and discarded, never counted.
 */
async function exchange(c: MllpClient, text: string, controlId: string, timeoutMs: number, ctx: ComponentContext): Promise<{ code: string; text: string; raw: string }> {
  const deadline = Date.now() + timeoutMs
  c.send(text)
  for (;;) {
    const raw = await c.next(Math.max(1, deadline - Date.now()))
    let ack: ReturnType<typeof readAck>
    try {
      ack = readAck(raw)
    } catch (e) {
      ctx.log.warn({ controlId, reason: (e as Error).message }, 'answer that is not an ACK discarded')
      continue
    }
    if (ack.controlId === controlId) return { code: ack.code, text: ack.text ?? '', raw }
    ctx.log.warn({ controlId, ackFor: ack.controlId, ack: ack.code }, 'ACK for another message discarded')
  }
}

export default defineComponent({
  type: 'mllp', kind: 'destination',
  description: 'Sends each message (HL7 v2 ER7 text) to an MLLP receiver over a persistent connection and waits for the ACK with its control id: AA/CA delivered, AE/CE retried, AR/CR in error.',
  configSchema,
  create(config, ctx) {
    const pool = connectionPool(config, ctx)
    return {
      async deliver(message, { signal }): Promise<DeliveryResult> {
        if (typeof message.body !== 'string') throw new PermanentError('the mllp destination sends ER7 text; this message body is structured (add an "hl7v2" filter with "to": "er7" before it)')
        // HL7 v2 segments end in CR; text written with LF or CRLF is sent with CR.
        const text = message.body.replace(/\r\n|\n/g, '\r')
        const controlId = readHeader(text).controlId
        if (!controlId) throw new PermanentError('MSH-10 (message control id) is empty: the ACK could not be matched to the message')
        checkEncodable(text, config.encoding)
        const c = await pool.acquire(signal)
        // An abort that came while the connection was being made (after acquire() looked) ends
        // the delivery here: a message must not be sent once the engine has given it up.
        if (signal.aborted) {
          pool.release(c, true)
          throw new errorCodes.ERR_SHUTDOWN(`${pool.where}: delivery aborted`)
        }
        const onAbort = () => c.destroy()
        signal.addEventListener('abort', onAbort, { once: true })
        let ack: Awaited<ReturnType<typeof exchange>>
        try {
          ack = await exchange(c, text, controlId, config.ackTimeoutMs, ctx)
        } catch (e) {
          pool.release(c, false)
          if (signal.aborted) throw new errorCodes.ERR_SHUTDOWN(`${pool.where}: delivery aborted`, { cause: e })
          if ((e as MllpSocketError).code === 'ETIMEDOUT') throw new errorCodes.ERR_MLLP_TIMEOUT(`${pool.where}: no ACK for control id ${controlId} within ${config.ackTimeoutMs} ms; connection closed`, { cause: e })
          throw new errorCodes.ERR_MLLP_NETWORK(`${pool.where}: ${(e as Error).message} (waiting for the ACK of control id ${controlId})`, { cause: e })
        } finally {
          signal.removeEventListener('abort', onAbort)
        }
        pool.release(c, true)
        const excerpt = oneLine(ack.raw)
        if (ack.code === 'AA' || ack.code === 'CA') return { excerpt }
        const permanent = ack.code === 'AR' || ack.code === 'CR' || !config.retryOnError
        const err = new errorCodes.ERR_MLLP_NACK(`${pool.where} answered ${ack.code} for control id ${controlId}${ack.text ? `: ${oneLine(ack.text)}` : ''}`, { retryable: !permanent })
        Object.defineProperties(err, { ack: { value: ack.code, enumerable: true }, excerpt: { value: excerpt, enumerable: false } })
        throw err
      },
      close() {
        pool.close()
      },
    }
  },
})
