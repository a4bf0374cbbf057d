import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { defineComponent, type ComponentContext, type ConfigOf, type Emit, type RejectReason } from '../../shared/component.ts'
import { serverTlsSchema } from '../../shared/inbound/tls-schema.ts'
import { errorCodes, isWeirError, refusalOf } from '../../shared/errors.ts'
import { buildAck, HL7_ER7_CONTENT_TYPE, Hl7ParseError, parseEr7, readHeader, type AckCode, type MshHeader } from '../../shared/hl7v2/index.ts'
import { createFrameDecoder, encodeFrame, type FrameDecoder, type FrameEvent } from '../../shared/mllp/frame.ts'
import { decodeText } from '../../shared/text.ts'
import { serverTlsOptions, serverTlsProblems, verifiedClientSubject } from '../../shared/tls.ts'

const configSchema = {
  type: 'object', additionalProperties: false, required: ['port'],
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 65535, description: 'TCP port to listen on (0 picks a free one).', examples: [2575] },
    host: { type: 'string', minLength: 1, default: '127.0.0.1', description: 'Interface to listen on; "0.0.0.0" accepts connections from other machines.', examples: ['127.0.0.1', '0.0.0.0'] },
    maxMessageBytes: { type: 'integer', minimum: 256, default: 1024 * 1024, description: 'Largest accepted message (bytes between the frame bytes). A larger one is read to its end, discarded and answered AR.' },
    maxConnections: { type: 'integer', minimum: 1, default: 100, description: 'Most open connections; a connection beyond it is closed at once (and logged).' },
    idleTimeoutMs: { type: 'integer', minimum: 1000, default: 300_000, description: 'A connection that sends nothing for this long is closed (a frame left without its end bytes is discarded, counted as rejected `malformed` and logged with its size).' },
    encoding: { enum: ['utf-8', 'latin1'], default: 'utf-8', description: 'Character encoding of the messages (MSH-18 is not read). With utf-8, a message that is not valid UTF-8 (e.g. Latin-1 from a legacy system) is answered AE and not stored; set latin1 for such a sender.' },
    versions: {
      type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', pattern: '^2\\.[0-9](\\.[0-9]+)?$', description: 'An HL7 version (MSH-12).' },
      description: 'Accepted HL7 versions (MSH-12); others are answered AR. Every version when absent.', examples: [['2.3', '2.5.1']],
    },
    parse: { type: 'boolean', default: true, description: 'Parse each whole message before storing it; one that does not parse is answered AE with the reason and not stored. With false only the MSH segment is read.' },
    dedupeByControlId: {
      type: 'boolean', default: false,
      description: 'Store a message only once per sending application and facility (MSH-3, MSH-4) and control id (MSH-10) within dedupeWindowMs: a resend (e.g. after a lost ACK) is answered AA without a second copy.',
    },
    dedupeWindowMs: {
      type: 'integer', minimum: 1000, default: 86_400_000,
      description: 'With dedupeByControlId: how long a control id is remembered (ms from its first message, default 24 h). A message with the same application, facility and control id after that is stored as new: senders that reuse control ids (after a counter reset) are not refused. Never longer than the first message stays in the message log.',
    },
    tls: serverTlsSchema('Accept MLLP over TLS instead of plain TCP.'),
  },
} as const

export type MllpListenerConfig = ConfigOf<typeof configSchema>

type OriginalCode = 'AA' | 'AE' | 'AR'

/**
 * What to answer one frame: an acknowledgement code, the reason for a negative one, the HL7 error
 * code (table 0357), and what the channel counts a refusal of the input itself as (`ctx.rejected`;
 * absent when the message was fine but could not be stored); `quiet`: a refusal for now (a full
 * queue or store, a stopping channel), which the channel logs once per episode, not per frame.
 */
interface Verdict { header: MshHeader; code: OriginalCode; reason?: string; errorCode?: string; rejected?: RejectReason; quiet?: boolean }

/** The header used to answer input whose MSH cannot be read. */
const UNREADABLE: MshHeader = {
  fieldSeparator: '|', encodingCharacters: '^~\\&', sendingApplication: '', sendingFacility: '', receivingApplication: '', receivingFacility: '',
  messageType: '', trigger: '', structure: '', controlId: '', processingId: 'P', version: '2.5', acceptAckType: '', applicationAckType: '',
}

const headerOf = (text: string): MshHeader | undefined => {
  try { return readHeader(text) } catch { return undefined }
}

/**
 * The header read from the head of a frame that is answered without being read whole (cut short by
 * the next start byte, or too large). The head may end inside the MSH: its last field, not followed
 * by a field separator, may be cut, so it is read as absent. A control id cut to `MSG12` must not be
 * echoed: the sender could take the AR for its message `MSG12`. The head may also end before MSH-11
 * and MSH-12: an empty processing id or version is then UNREADABLE's, so the ACK carries both (`P`,
 * `2.5`) and the ERR segment of every other ACK, with the reason in ERR-8.
 */
const headerOfHead = (head: Buffer, encoding: BufferEncoding): MshHeader | undefined => {
  const h = headerOf(wholeMshFields(head.toString(encoding)))
  return h && { ...h, processingId: h.processingId || UNREADABLE.processingId, version: h.version || UNREADABLE.version }
}

/** `text` up to its MSH segment's last field separator when the segment's end is not in it (its last field may be cut); else `text`. */
function wholeMshFields(text: string): string {
  const start = /^[\r\n]*/.exec(text)![0].length
  if (/[\r\n]/.test(text.slice(start))) return text
  const separator = text[start + 3]
  return separator === undefined ? text : text.slice(0, text.lastIndexOf(separator) + 1)
}

/** What each MSH field that can make the MSH unreadable must be, as the ACK states it. */
const MSH_FIELD_RULES: Readonly<Record<string, string>> = {
  'MSH-1': 'MSH-1 (field separator) must be one character, not a letter, digit or space',
  'MSH-2': 'MSH-2 (encoding characters) must be 4 or 5 distinct characters, none a letter, digit, space or the field separator',
}

/** Text with nothing to escape in an ACK and nothing quoted: the parser quotes input only inside double quotes. */
const PLAIN_TEXT = /^[A-Za-z0-9 ().,:;-]+$/

/**
 * Why the MSH cannot be read, as the ACK and the log state it: the rule of the field at fault (MSH-1,
 * MSH-2), else the parser's message when it is plain text (a NUL byte at an offset), else no detail.
 * Never the message's own bytes: the parser's message quotes the bad separators, which the ACK would
 * have to HL7-escape into noise such as `\S\\R\`, and which may run on into the fields after them.
 */
function unreadableMshReason(e: unknown): string {
  const field = e instanceof Hl7ParseError ? e.field : undefined
  const rule = field !== undefined ? MSH_FIELD_RULES[field] : undefined
  if (rule !== undefined) return `MSH segment cannot be read: ${rule}`
  const message = e instanceof Error ? e.message.replace(/^invalid HL7 v2 message: /, '') : ''
  return PLAIN_TEXT.test(message) ? `MSH segment cannot be read: ${message}` : 'MSH segment cannot be read'
}

/**
 * The answer to a frame whose handling failed unexpectedly: AE, so the sender keeps the message and
 * sends it again, instead of a connection that waits forever for an ACK.
 */
const INTERNAL_ERROR: Verdict = { header: UNREADABLE, code: 'AE', errorCode: '207', reason: 'message not processed: internal error' }

/** What to log of an unexpected error: its name and code, never its message (it may quote the message's content). */
const errorSummary = (e: unknown) => ({ error: (e as Error | undefined)?.name ?? typeof e, code: (e as { code?: unknown } | undefined)?.code })

/**
 * The text of a frame in the configured encoding; undefined when `encoding` is utf-8 and the bytes are
 * not valid UTF-8: a message in another encoding (Latin-1 from a legacy system) is refused, so the
 * sender keeps its bytes, instead of being stored with its letters replaced by U+FFFD.
 */
const decode = (data: Buffer, config: MllpListenerConfig): string | undefined => decodeText(data, config.encoding)

/**
 * The dedupe key of a message: sending application (MSH-3), sending facility (MSH-4) and control id
 * (MSH-10), since each application numbers its own messages; each part escaped, so that no two
 * different triples give one key through a ':' in a value.
 */
const dedupeKeyOf = (h: MshHeader) => ['mllp-listener', h.sendingApplication, h.sendingFacility, h.controlId].map(encodeURIComponent).join(':')

const ENHANCED_CODE: Record<OriginalCode, AckCode> = { AA: 'CA', AE: 'CE', AR: 'CR' }

/**
 * The acknowledgement to send, or undefined when none is wanted. Original mode (MSH-15 and MSH-16
 * empty): AA/AE/AR always. Enhanced mode: the accept acknowledgement CA/CE/CR as MSH-15 asks (AL,
 * NE, ER: errors only, SU: successes only; empty counts as AL). Application acknowledgements
 * (MSH-16) are not produced here: the listener's part ends at the durable write.
 */
function acknowledgement(v: Verdict): string | undefined {
  const h = v.header
  const options = { ...(v.reason !== undefined ? { text: v.reason } : {}), ...(v.errorCode !== undefined ? { errorCode: v.errorCode } : {}) }
  if (!h.acceptAckType && !h.applicationAckType) return buildAck(h, v.code, options)
  const wanted = h.acceptAckType || 'AL'
  if (wanted === 'NE' || (wanted === 'ER' && v.code === 'AA') || (wanted === 'SU' && v.code !== 'AA')) return undefined
  return buildAck(h, ENHANCED_CODE[v.code], options)
}

/** Attributes routing needs, from the MSH segment. */
function attributesOf(h: MshHeader, socket: Socket): Record<string, string> {
  const out: Record<string, string> = {
    messageType: h.messageType, trigger: h.trigger, controlId: h.controlId, sendingApplication: h.sendingApplication,
    sendingFacility: h.sendingFacility, receivingApplication: h.receivingApplication, receivingFacility: h.receivingFacility,
    version: h.version, processingId: h.processingId, remoteAddress: socket.remoteAddress ?? '',
  }
  const subject = verifiedClientSubject(socket)
  if (subject) out.clientCertSubject = subject
  return out
}

/**
 * The number (1-based, empty lines not counted) of a second MSH segment in `text`, or undefined: two
 * messages sent in one frame, which would otherwise be stored as one and only the first acknowledged.
 */
function secondMshAt(text: string): number | undefined {
  // One scan for the common case (no second MSH), past the empty lines before the first one;
  // segments are counted only on a hit.
  const second = /[\r\n]MSH(?![A-Z0-9])/g
  second.lastIndex = /^[\r\n]*/.exec(text)![0].length
  const hit = second.exec(text)
  if (!hit) return undefined
  return text.slice(0, hit.index).split(/[\r\n]+/).filter((s) => s !== '').length + 1
}

/** Checks one decoded message; a refusal, or the header of a message to store. */
function check(text: string, config: MllpListenerConfig): Verdict | { header: MshHeader; store: true } {
  // Empty lines before MSH are skipped, as the parser skips them.
  if (!text.startsWith('MSH') && !/^[\r\n]+MSH/.test(text)) return { header: UNREADABLE, code: 'AR', errorCode: '100', reason: 'not an HL7 v2 message: it does not start with an MSH segment', rejected: 'malformed' }
  let header: MshHeader
  try {
    header = readHeader(text)
  } catch (e) {
    // Answered with '|' and '^~\\&': the message's own separators are what could not be read.
    return { header: UNREADABLE, code: 'AE', errorCode: '100', reason: unreadableMshReason(e), rejected: 'malformed' }
  }
  if (config.versions && !config.versions.includes(header.version)) {
    return { header, code: 'AR', errorCode: '203', reason: `HL7 version ${JSON.stringify(header.version)} is not accepted (accepted: ${config.versions.join(', ')})`, rejected: 'unsupported_version' }
  }
  if (!header.controlId) return { header, code: 'AR', errorCode: '101', reason: 'MSH-10 (message control id) is empty', rejected: 'malformed' }
  const second = secondMshAt(text)
  if (second !== undefined) return { header, code: 'AR', errorCode: '100', reason: `one message per frame: a second MSH segment at segment ${second}`, rejected: 'malformed' }
  if (config.parse) {
    try { parseEr7(text) } catch (e) { return { header, code: 'AE', errorCode: '102', reason: (e as Error).message, rejected: 'malformed' } }
  }
  return { header, store: true }
}

/** Stores one message through `emit`: AA only once it is durably stored, AE with the reason otherwise. */
async function store(emit: Emit, text: string, header: MshHeader, socket: Socket, config: MllpListenerConfig, ctx: ComponentContext): Promise<Verdict> {
  try {
    const r = await emit({
      body: text, contentType: HL7_ER7_CONTENT_TYPE, attributes: attributesOf(header, socket),
      ...(config.dedupeByControlId ? { dedupeKey: dedupeKeyOf(header), dedupeWindowMs: config.dedupeWindowMs } : {}),
    })
    if (r.duplicate) ctx.log.info({ controlId: header.controlId, sendingApplication: header.sendingApplication, sendingFacility: header.sendingFacility, message: r.id }, 'duplicate control id: acknowledged, not stored again')
    return { header, code: 'AA' }
  } catch (e) {
    if (isWeirError(e) && (e.retryable || e.statusCode === 503)) {
      // A full queue or store: the channel logs the episode (once as it starts, once as it ends), not every refusal;
      // a stopping channel logs its stop.
      const quiet = e.code === 'ERR_BACKPRESSURE' || e.code === 'ERR_SHUTDOWN'
      ctx.log[quiet ? 'debug' : 'warn']({ controlId: header.controlId, reason: e.message }, 'message not accepted')
      return { header, code: 'AE', errorCode: '207', reason: `message not stored, send it again later: ${refusalOf(e)}`, ...(quiet ? { quiet } : {}) }
    }
    ctx.log.error({ err: e, controlId: header.controlId }, 'message could not be stored')
    return { header, code: 'AE', errorCode: '207', reason: 'message not stored: internal error' }
  }
}

/** The verdict on one decoder event (a frame, or an oversized or unterminated one). */
async function judge(event: Exclude<FrameEvent, { type: 'garbage' }>, emit: Emit, socket: Socket, config: MllpListenerConfig, ctx: ComponentContext): Promise<Verdict> {
  const encoding = config.encoding === 'latin1' ? 'latin1' : 'utf8'
  if (event.type === 'oversize') {
    return { header: headerOfHead(event.head, encoding) ?? UNREADABLE, code: 'AR', errorCode: '207', reason: `message of ${event.size} bytes is larger than maxMessageBytes ${config.maxMessageBytes}`, rejected: 'too_large' }
  }
  if (event.type === 'unterminated') {
    return { header: headerOfHead(event.head, encoding) ?? UNREADABLE, code: 'AR', errorCode: '100', reason: 'frame without end bytes (0x1C 0x0D) before the next start byte; discarded', rejected: 'malformed' }
  }
  const decoded = decode(event.data, config)
  if (decoded === undefined) {
    return {
      header: headerOf(event.data.toString('latin1')) ?? UNREADABLE, code: 'AE', errorCode: '103',
      reason: 'message is not valid UTF-8 (the listener\'s "encoding" is utf-8; for a sender of ISO-8859-1 set "encoding": "latin1")',
      rejected: 'malformed',
    }
  }
  const text = decoded.replace(/^\uFEFF/, '')
  const c = check(text, config)
  return 'store' in c ? store(emit, text, c.header, socket, config, ctx) : c
}

/** Judges one decoder event and writes its answer to `socket`; throws only when no answer can be built. */
async function answer(event: Exclude<FrameEvent, { type: 'garbage' }>, socket: Socket, emit: Emit, config: MllpListenerConfig, ctx: ComponentContext, peer: Record<string, unknown>): Promise<void> {
  const v = await judge(event, emit, socket, config, ctx).catch((e: unknown) => {
    ctx.log.error({ ...peer, ...errorSummary(e) }, 'message could not be handled')
    return INTERNAL_ERROR
  })
  if (v.code !== 'AA') ctx.log[v.quiet ? 'debug' : 'warn']({ ...peer, ack: v.code, controlId: v.header.controlId, reason: v.reason }, 'message refused')
  if (v.rejected) ctx.rejected?.(v.rejected)
  const ack = acknowledgement(v)
  // In the listener's encoding: a latin1 sender must read its own MSH-3/4 (echoed in MSH-5/6) back as sent.
  if (ack !== undefined && !socket.destroyed) socket.write(encodeFrame(config.encoding === 'latin1' ? Buffer.from(ack, 'latin1') : ack))
}

/** What a connection needs of its listener: a call once its queued frames are answered, and whether the listener stops. */
interface ListenerHooks { onDone: () => void; stopping: () => boolean }

/** A connection's frames, handled one at a time in the order they arrived. */
function serve(socket: Socket, emit: Emit, config: MllpListenerConfig, ctx: ComponentContext, listener: ListenerHooks): { busy: () => boolean } {
  const peer = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }
  const queue: Array<Exclude<FrameEvent, { type: 'garbage' }>> = []
  let working = false
  let closing = false
  // The listener itself closed the connection (a frame it could not answer), so a frame cut by it is not the sender's fault.
  let closedByListener = false
  const turn = (event: Exclude<FrameEvent, { type: 'garbage' }>) => answer(event, socket, emit, config, ctx, peer)
  // Each turn is guarded: an error in one frame must neither reject unhandled (Node ends the process)
  // nor leave the connection waiting. A frame that cannot be answered closes the connection (after the
  // ACKs already written), so the sender reconnects and sends it again.
  const drain = async () => {
    if (working) return
    working = true
    try {
      while (queue.length && !socket.destroyed && !closing) {
        const event = queue.shift()!
        if (queue.length < 4) socket.resume()
        try {
          await turn(event)
        } catch (e) {
          ctx.log.error({ ...peer, ...errorSummary(e) }, 'connection closed: message could not be answered')
          closedByListener = true
          closing = true
          queue.length = 0
          closeGently(socket)
        }
      }
    } finally {
      working = false
      if (peerEnded && !closing) { closing = true; closeGently(socket) }
      listener.onDone()
    }
  }
  const decoder = createFrameDecoder({ maxMessageBytes: config.maxMessageBytes }, (event) => {
    if (event.type === 'garbage') {
      ctx.log.warn({ ...peer, reason: event.reason }, 'connection closed: bytes that are not MLLP')
      ctx.rejected?.('malformed')
      socket.destroy()
      return
    }
    if (closing) return
    queue.push(event)
    // Pipelined frames wait their turn; stop reading while a few are waiting.
    if (queue.length >= 8) socket.pause()
    drain().catch((e: unknown) => ctx.log.error({ ...peer, ...errorSummary(e) }, 'connection handler failed'))
  })
  socket.on('data', (chunk: Buffer) => decoder.push(chunk))
  // The peer sent all it will send: answer what is queued, then end our side.
  let peerEnded = false
  socket.on('end', () => {
    peerEnded = true
    if (!working && queue.length === 0 && !closing) { closing = true; closeGently(socket) }
  })
  const discard = discardOnClose(decoder, ctx, peer, () => closedByListener || listener.stopping())
  socket.setTimeout(config.idleTimeoutMs)
  socket.on('timeout', () => {
    if (working) return socket.setTimeout(config.idleTimeoutMs)
    if (!discard({ idleTimeoutMs: config.idleTimeoutMs })) ctx.log.info({ ...peer, idleTimeoutMs: config.idleTimeoutMs }, 'idle connection closed')
    socket.destroy()
  })
  socket.on('close', () => discard({}))
  socket.on('error', (e: NodeJS.ErrnoException) => ctx.log.debug({ ...peer, code: e.code }, 'connection error'))
  return { busy: () => working || queue.length > 0 }
}

/**
 * Handles, once, the frame left unfinished when a connection closes: dropped by the sender mid-frame,
 * or idle past `idleTimeoutMs`. It is counted as malformed input (`ctx.rejected`), like a frame cut
 * short by the next start byte, and logged with what was missing (the end bytes, or only the final
 * 0x0D after a 0x1C) and its size, never its content. A frame cut by the listener itself (stopping,
 * or after a frame it could not answer) is logged only: the sender sends it again. Returns whether
 * there was such a frame.
 */
function discardOnClose(decoder: FrameDecoder, ctx: ComponentContext, peer: Record<string, unknown>, byListener: () => boolean): (extra: Record<string, unknown>) => boolean {
  let done = false
  return (extra) => {
    if (done || !decoder.inFrame) return false
    done = true
    const missing = decoder.endByteSeen ? 'frame ended by 0x1C without the final 0x0D' : 'frame without end bytes (0x1C 0x0D)'
    const fields = { ...peer, bytes: decoder.pendingBytes, ...extra }
    if (byListener()) {
      ctx.log.info(fields, `connection closed by the listener: ${missing}, discarded`)
    } else {
      ctx.log.warn(fields, `connection closed: ${missing}, discarded`)
      ctx.rejected?.('malformed')
    }
    return true
  }
}

/** Ends a connection once what was written to it (the last ACK) is flushed. */
const closeGently = (socket: Socket) => socket.end(() => socket.destroy())

export default defineComponent({
  type: 'mllp-listener', kind: 'source',
  description: 'Receives HL7 v2 messages over MLLP (TCP, optionally TLS); acknowledges each one (AA) only once it is durably stored, AE/AR with the reason otherwise.',
  configSchema,
  check(config, { channelDir }) {
    return serverTlsProblems(config.tls, channelDir)
  },
  create(config, ctx) {
    const tlsOptions = config.tls ? serverTlsOptions(config.tls, ctx.channelDir) : undefined
    let server: Server | undefined
    const connections = new Map<Socket, { busy: () => boolean }>()
    let stopping = false

    const onConnection = (emit: Emit) => (socket: Socket) => {
      if (connections.size >= config.maxConnections || stopping) {
        ctx.log.warn({ remoteAddress: socket.remoteAddress, maxConnections: config.maxConnections }, stopping ? 'connection refused: stopping' : 'connection refused: maxConnections reached')
        socket.destroy()
        return
      }
      socket.setNoDelay(true)
      const state = serve(socket, emit, config, ctx, { onDone: () => { if (stopping) closeGently(socket) }, stopping: () => stopping })
      connections.set(socket, state)
      socket.on('close', () => connections.delete(socket))
    }

    return {
      start(emit: Emit) {
        // allowHalfOpen: a peer that sends its last message and then shuts its side down (FIN) still
        // gets the ACK; the connection is ended once its frames are answered (serve's 'end' handler).
        const s = tlsOptions ? createTlsServer({ ...tlsOptions, allowHalfOpen: true }, onConnection(emit)) : createTcpServer({ allowHalfOpen: true }, onConnection(emit))
        s.on('tlsClientError', (e: NodeJS.ErrnoException, socket: Socket) => ctx.log.warn({ remoteAddress: socket.remoteAddress, reason: e.code ?? e.message }, 'TLS handshake refused'))
        server = s
        return new Promise<void>((ok, fail) => {
          s.once('error', (err: NodeJS.ErrnoException) => fail(new errorCodes.ERR_LISTEN(`cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`, { cause: err })))
          s.listen(config.port, config.host, () => {
            const a = s.address() as AddressInfo
            ctx.log.info({ address: `${tlsOptions ? 'mllps' : 'mllp'}://${a.address}:${a.port}` }, 'listening')
            ok()
          })
        })
      },
      async stop() {
        const s = server
        if (!s) return
        server = undefined
        stopping = true
        const closed = new Promise<void>((ok) => s.close(() => ok()))
        // A connection waiting for its durable write gets its ACK first; the others close now.
        for (const [socket, state] of connections) if (!state.busy()) closeGently(socket)
        const force = setTimeout(() => { for (const socket of connections.keys()) socket.destroy() }, 5000)
        force.unref()
        await closed
        clearTimeout(force)
      },
      /** The bound address (useful with port 0). */
      address(): AddressInfo | undefined {
        return server?.address() as AddressInfo | undefined
      },
    }
  },
})
