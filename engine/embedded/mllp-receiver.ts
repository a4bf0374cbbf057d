import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer, type TlsOptions } from 'node:tls'
import { buildAck, readHeader, type AckCode, type MshHeader } from '../../shared/hl7v2/index.ts'
import { createFrameDecoder, encodeFrame } from '../../shared/mllp/frame.ts'

/**
 * One scripted answer of the embedded MLLP receiver. Faults:
 * - `no-ack`: never answers (the sender's ACK timeout);
 * - `late-ack`: first sends an AA for the previous message (as a receiver that answers late would), then this answer;
 * - `wrong-control-id`: answers with an MSA-2 that is not the message's control id;
 * - `drop`: closes the connection without answering.
 */
export interface MllpAnswer {
  /** MSA-1 (default AA). */
  ack?: AckCode
  /** MSA-3 / ERR text of a negative answer. */
  text?: string
  /** Answer this late (ms): longer than the sender's ACK timeout makes a late ACK. */
  delayMs?: number
  fault?: 'no-ack' | 'late-ack' | 'wrong-control-id' | 'drop'
}

/** A message the receiver got, and what it answered. */
export interface ReceivedMllpMessage {
  text: string
  controlId: string
  messageType: string
  trigger: string
  /** 1 for the first connection accepted, 2 for the next… */
  connection: number
  /** The MSA-1 sent, or `none`. */
  answered: string
  at: number
}

export interface MllpReceiver {
  host: string
  port: number
  /** Every message received, in arrival order. */
  received: ReceivedMllpMessage[]
  /** Connections accepted so far. */
  readonly connections: number
  /** Replaces the script: answers in order (one per message received from now on), the last repeating. */
  setAnswers(answers: MllpAnswer[]): void
  close(): Promise<void>
}

/** Character encoding of the frames read and the ACKs written (an `mllp` destination's `encoding`). */
export type MllpEncoding = 'utf-8' | 'latin1'

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))

/**
 * A loopback MLLP receiver for tests, the harness and the demo: it acknowledges each message by
 * a script of answers and faults and records what it received.
 *
 * @example
 * const lab = await startMllpReceiver({ answers: [{ fault: 'no-ack' }, { ack: 'AA' }] })
 * // point an `mllp` destination at lab.host:lab.port; the first message times out and is resent
 * // `encoding: 'latin1'` for a destination that sends latin1 (default utf-8)
 */
export async function startMllpReceiver(options: { answers?: MllpAnswer[]; tls?: TlsOptions; maxMessageBytes?: number; encoding?: MllpEncoding } = {}): Promise<MllpReceiver> {
  const encoding: BufferEncoding = options.encoding === 'latin1' ? 'latin1' : 'utf8'
  /** An ACK framed in the receiver's encoding: a latin1 sender reads its own MSH-3/4 (echoed in MSH-5/6) back as sent. */
  const ackFrame = (...args: Parameters<typeof buildAck>) => encodeFrame(Buffer.from(buildAck(...args), encoding))
  let answers: MllpAnswer[] = options.answers ?? []
  let served = 0
  let connections = 0
  let previous: MshHeader | undefined
  const received: ReceivedMllpMessage[] = []
  const sockets = new Set<Socket>()

  const answerTo = async (socket: Socket, header: MshHeader, a: MllpAnswer): Promise<string> => {
    if (a.fault === 'drop') { socket.destroy(); return 'none' }
    if (a.fault === 'no-ack') return 'none'
    const code = a.ack ?? 'AA'
    if (a.fault === 'late-ack') socket.write(ackFrame(previous ?? { ...header, controlId: `${header.controlId}-EARLIER` }, 'AA'))
    if (a.delayMs) await sleep(a.delayMs)
    const acked = a.fault === 'wrong-control-id' ? { ...header, controlId: `${header.controlId}-OTHER` } : header
    if (!socket.destroyed) socket.write(ackFrame(acked, code, a.text !== undefined ? { text: a.text } : {}))
    return code
  }

  const onConnection = (socket: Socket) => {
    const connection = ++connections
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let chain = Promise.resolve()
    const decoder = createFrameDecoder({ maxMessageBytes: options.maxMessageBytes ?? 16 * 1024 * 1024 }, (e) => {
      if (e.type !== 'frame') { socket.destroy(); return }
      const text = e.data.toString(encoding)
      const a = answers[Math.min(served++, answers.length - 1)] ?? {}
      // In order per connection: a delayed answer holds back the next, as a real receiver would.
      chain = chain.then(async () => {
        let header: MshHeader
        try { header = readHeader(text) } catch { socket.destroy(); return }
        const entry: ReceivedMllpMessage = { text, controlId: header.controlId, messageType: header.messageType, trigger: header.trigger, connection, answered: 'none', at: Date.now() }
        received.push(entry)
        entry.answered = await answerTo(socket, header, a)
        previous = header
      })
    })
    socket.on('data', (chunk: Buffer) => decoder.push(chunk))
  }

  const server: Server = options.tls ? createTlsServer(options.tls, onConnection) : createTcpServer(onConnection)
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  return {
    host: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    received,
    get connections() { return connections },
    setAnswers(next) { answers = next; served = 0 },
    close: () => new Promise<void>((ok) => {
      for (const s of sockets) s.destroy()
      server.close(() => ok())
    }),
  }
}
