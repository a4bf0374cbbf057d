/**
 * MLLP framing (HL7 v2 Minimal Lower Layer Protocol, Release 2): each message travels as
 * `0x0B <message bytes> 0x1C 0x0D`. The decoder is incremental (bytes arrive in any chunking),
 * never buffers more than `maxMessageBytes` of one frame, and reports every framing fault instead
 * of throwing, so a socket handler can answer or close with the reason.
 *
 * @see https://www.hl7.org/documentcenter/public/wg/inm/mllp_transport_specification.PDF
 */

export const START_BLOCK = 0x0b
export const END_BLOCK = 0x1c
export const CARRIAGE_RETURN = 0x0d

/** How much of an oversized or unterminated frame is kept, so that its MSH can still be read for the answer. */
export const HEAD_BYTES = 4096

/** A frame's content, with `\n`/`\r\n` segment terminators left as sent. */
export function encodeFrame(message: string | Buffer): Buffer {
  const body = typeof message === 'string' ? Buffer.from(message, 'utf8') : message
  const out = Buffer.allocUnsafe(body.length + 3)
  out[0] = START_BLOCK
  body.copy(out, 1)
  out[body.length + 1] = END_BLOCK
  out[body.length + 2] = CARRIAGE_RETURN
  return out
}

/** What the decoder found: a whole frame, or a fault with the first bytes of the frame it concerns. */
export type FrameEvent =
  | { type: 'frame'; data: Buffer }
  /** A frame larger than `maxMessageBytes`, read to its end and discarded: `head` is its first HEAD_BYTES bytes, `size` its length. */
  | { type: 'oversize'; head: Buffer; size: number }
  /** A start byte arrived inside a frame: the frame before it had no end bytes and is discarded. */
  | { type: 'unterminated'; head: Buffer }
  /** Bytes that cannot be framed: data outside a frame, or 0x1C not followed by 0x0D. The connection should be closed. */
  | { type: 'garbage'; reason: string }

export interface FrameDecoder {
  /** Feeds bytes; calls `onEvent` for each complete frame or fault, in order. */
  push(chunk: Buffer): void
  /** True while a frame has started and not ended (an idle timeout then means "no end bytes"). */
  readonly inFrame: boolean
  /** Bytes of the current, unfinished frame. */
  readonly pendingBytes: number
  /** True while the current frame's 0x1C has arrived and its final 0x0D not yet (a close then cuts only the 0x0D). */
  readonly endByteSeen: boolean
}

const isWhitespace = (b: number) => b === 0x0d || b === 0x0a || b === 0x20 || b === 0x09

const describeByte = (b: number) => `0x${b.toString(16).padStart(2, '0')}`

/**
 * An incremental MLLP decoder. Whitespace between frames (a stray CR/LF some senders add) is
 * ignored; anything else outside a frame is `garbage`, after which the decoder stops.
 *
 * @example
 * const decoder = createFrameDecoder({ maxMessageBytes: 1 << 20 }, (e) => { if (e.type === 'frame') handle(e.data) })
 * socket.on('data', (chunk) => decoder.push(chunk))
 */
export function createFrameDecoder(options: { maxMessageBytes: number }, onEvent: (event: FrameEvent) => void): FrameDecoder {
  const max = options.maxMessageBytes
  let inFrame = false
  let chunks: Buffer[] = []
  let size = 0
  let oversize = false
  // 0x1C seen as the last byte of a chunk: the next byte must be 0x0D.
  let endPending = false
  let broken = false

  const head = (): Buffer => {
    const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
    return all.subarray(0, HEAD_BYTES)
  }
  const keep = (part: Buffer) => {
    size += part.length
    if (oversize) return
    if (size > max) {
      oversize = true
      // Keep only the head; the rest is counted and dropped.
      chunks = [Buffer.concat([...chunks, part]).subarray(0, HEAD_BYTES)]
      return
    }
    if (part.length) chunks.push(part)
  }
  const reset = () => { inFrame = false; chunks = []; size = 0; oversize = false; endPending = false }
  const finish = () => {
    const event: FrameEvent = oversize ? { type: 'oversize', head: chunks[0] ?? Buffer.alloc(0), size } : { type: 'frame', data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) }
    reset()
    onEvent(event)
  }
  const fail = (reason: string) => {
    broken = true
    reset()
    onEvent({ type: 'garbage', reason })
  }

  const push = (chunk: Buffer) => {
    let i = 0
    while (i < chunk.length && !broken) {
      if (endPending) {
        endPending = false
        if (chunk[i] !== CARRIAGE_RETURN) return fail(`end byte 0x1c followed by ${describeByte(chunk[i]!)} instead of 0x0d`)
        i++
        finish()
        continue
      }
      if (!inFrame) {
        const b = chunk[i]!
        if (b === START_BLOCK) { inFrame = true; i++; continue }
        if (isWhitespace(b)) { i++; continue }
        return fail(`${describeByte(b)} outside a frame (expected the start byte 0x0b)`)
      }
      const end = chunk.indexOf(END_BLOCK, i)
      const start = chunk.indexOf(START_BLOCK, i)
      if (start !== -1 && (end === -1 || start < end)) {
        keep(chunk.subarray(i, start))
        const h = head()
        reset()
        onEvent({ type: 'unterminated', head: h })
        i = start
        continue
      }
      if (end === -1) { keep(chunk.subarray(i)); return }
      keep(chunk.subarray(i, end))
      endPending = true
      i = end + 1
    }
  }
  return {
    push,
    get inFrame() { return inFrame },
    get pendingBytes() { return size },
    get endByteSeen() { return endPending },
  }
}
