import { connect as connectTcp, type Socket } from 'node:net'
import { connect as connectTls, type ConnectionOptions } from 'node:tls'
import { createFrameDecoder, encodeFrame } from './frame.ts'

/** Options of one MLLP client connection. */
export interface MllpClientOptions {
  host: string
  port: number
  /** TLS options (node:tls `connect`); plain TCP when absent. */
  tls?: ConnectionOptions
  /** Give up connecting after this long (ms). */
  connectTimeoutMs?: number
  /** Largest answer frame accepted (bytes); a larger one closes the connection. Default 1 MiB. */
  maxFrameBytes?: number
  /**
   * Character encoding of the frames sent and read (default utf-8). With latin1 each character is
   * sent as one byte: a caller must not send characters above U+00FF (they would lose their high byte).
   */
  encoding?: 'utf-8' | 'latin1'
  /**
   * Gives up connecting when aborted: the socket is destroyed and the promise rejects with the
   * signal's reason at once, so a shutdown never waits out `connectTimeoutMs` (a TLS handshake the
   * peer never answers) nor gets a connection that opens after it.
   */
  signal?: AbortSignal
}

/** Why a connection ended or a wait failed: `code` is the Node error code, or `ETIMEDOUT`/`ECLOSED`/`EPROTO`. */
export class MllpSocketError extends Error {
  constructor(message: string, readonly code: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'MllpSocketError'
  }
}

/**
 * One MLLP client connection: sends frames and hands back the frames the peer answers, in order.
 * `next(timeoutMs)` waits for the next answer frame; frames that arrive with nobody waiting are
 * queued. Used by the `mllp` destination, the channel test harness, the demo and the benchmarks.
 */
export interface MllpClient {
  /** Writes one message as a frame, in the connection's encoding (`\n` and `\r\n` segment terminators are sent as written). */
  send(message: string): void
  /** The next frame the peer sent (decoded in the connection's encoding); rejects with `MllpSocketError` on timeout or when the connection ends. */
  next(timeoutMs: number): Promise<string>
  /** Sends a message and waits for the next frame: the answer, for a peer that answers in order. */
  request(message: string, timeoutMs: number): Promise<string>
  /** True once the connection has ended (closed by either side, or failed). */
  readonly closed: boolean
  /** Why the connection ended, once it has. */
  readonly closeReason: MllpSocketError | undefined
  /** Closes the connection at once (answers still on the way are never read). */
  destroy(): void
  /** Ends the connection gracefully (after written data is flushed). */
  end(): Promise<void>
}

/** Opens an MLLP client connection; rejects with `MllpSocketError` when the connection cannot be made, or with the reason of `signal` when it aborts first. */
export function connectMllp(options: MllpClientOptions): Promise<MllpClient> {
  const { signal } = options
  if (signal?.aborted) return Promise.reject(signal.reason)
  return new Promise((resolve, reject) => {
    const socket: Socket = options.tls
      ? connectTls({ ...options.tls, host: options.host, port: options.port, ...(options.tls.servername === undefined && !/^[\d.:]+$/.test(options.host) ? { servername: options.host } : {}) })
      : connectTcp({ host: options.host, port: options.port })
    socket.setNoDelay(true)
    /** The attempt is decided (connected, failed, timed out or aborted): no other outcome may follow. */
    const settled = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    const timer = setTimeout(() => {
      settled()
      socket.destroy()
      reject(new MllpSocketError(`connecting to ${options.host}:${options.port} timed out after ${options.connectTimeoutMs} ms`, 'ETIMEDOUT'))
    }, options.connectTimeoutMs ?? 10_000)
    const onAbort = () => {
      settled()
      socket.destroy()
      reject(signal!.reason)
    }
    const onError = (e: NodeJS.ErrnoException) => {
      settled()
      reject(new MllpSocketError(`cannot connect to ${options.host}:${options.port}: ${e.code ?? e.message}`, e.code ?? 'ECONNREFUSED', { cause: e }))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    socket.once('error', onError)
    socket.once(options.tls ? 'secureConnect' : 'connect', () => {
      settled()
      socket.off('error', onError)
      resolve(clientOn(socket, options.maxFrameBytes ?? 1024 * 1024, options.encoding === 'latin1' ? 'latin1' : 'utf8'))
    })
  })
}

function clientOn(socket: Socket, maxFrameBytes: number, encoding: 'utf8' | 'latin1'): MllpClient {
  const frames: string[] = []
  let waiter: { resolve: (s: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined
  let closeReason: MllpSocketError | undefined
  const settle = (f: (w: NonNullable<typeof waiter>) => void) => {
    const w = waiter
    if (!w) return
    waiter = undefined
    clearTimeout(w.timer)
    f(w)
  }
  const close = (reason: MllpSocketError) => {
    closeReason ??= reason
    socket.destroy()
    settle((w) => w.reject(closeReason!))
  }
  const decoder = createFrameDecoder({ maxMessageBytes: maxFrameBytes }, (e) => {
    if (e.type === 'frame') {
      const text = e.data.toString(encoding)
      if (waiter) settle((w) => w.resolve(text))
      else frames.push(text)
    } else if (e.type === 'garbage') close(new MllpSocketError(`the peer sent bytes that are not MLLP: ${e.reason}`, 'EPROTO'))
    else if (e.type === 'oversize') close(new MllpSocketError(`the peer sent a frame of ${e.size} bytes, above ${maxFrameBytes}`, 'EPROTO'))
    else close(new MllpSocketError('the peer sent a frame without end bytes', 'EPROTO'))
  })
  socket.on('data', (chunk: Buffer) => decoder.push(chunk))
  socket.on('error', (e: NodeJS.ErrnoException) => close(new MllpSocketError(`connection failed: ${e.code ?? e.message}`, e.code ?? 'ECONNRESET', { cause: e })))
  socket.on('close', () => close(new MllpSocketError('the peer closed the connection', 'ECLOSED')))

  const next = (timeoutMs: number) => {
    if (frames.length) return Promise.resolve(frames.shift()!)
    if (closeReason) return Promise.reject(closeReason)
    if (waiter) return Promise.reject(new Error('MllpClient.next: already waiting for a frame'))
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => settle((w) => w.reject(new MllpSocketError(`no answer within ${timeoutMs} ms`, 'ETIMEDOUT'))), timeoutMs)
      waiter = { resolve, reject, timer }
    })
  }
  const send = (message: string) => {
    if (closeReason) throw closeReason
    socket.write(encodeFrame(Buffer.from(message, encoding)))
  }
  return {
    send,
    next,
    request(message, timeoutMs) {
      try { send(message) } catch (e) { return Promise.reject(e) }
      return next(timeoutMs)
    },
    get closed() { return closeReason !== undefined },
    get closeReason() { return closeReason },
    destroy: () => close(new MllpSocketError('closed by this side', 'ECLOSED')),
    end: () => new Promise<void>((resolve) => {
      if (closeReason) return resolve()
      socket.once('close', () => resolve())
      socket.end()
    }),
  }
}
