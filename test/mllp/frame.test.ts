import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { createFrameDecoder, encodeFrame, HEAD_BYTES, type FrameEvent } from '../../shared/mllp/frame.ts'

const decodeAll = (bytes: Buffer[], maxMessageBytes = 1024) => {
  const events: FrameEvent[] = []
  const d = createFrameDecoder({ maxMessageBytes }, (e) => events.push(e))
  for (const b of bytes) d.push(b)
  return { events, decoder: d }
}
const text = (e: FrameEvent) => (e.type === 'frame' ? e.data.toString('utf8') : e.type)

describe('MLLP framing', () => {
  it('wraps a message in 0x0B … 0x1C 0x0D', () => {
    expect([...encodeFrame('MSH|^~\\&|A')]).toEqual([0x0b, ...Buffer.from('MSH|^~\\&|A'), 0x1c, 0x0d])
  })

  it('decodes several frames in one chunk, in order, ignoring CR/LF between frames', () => {
    const { events } = decodeAll([Buffer.concat([encodeFrame('MSH|1'), Buffer.from('\r\n'), encodeFrame('MSH|2'), encodeFrame('MSH|3')])])
    expect(events.map(text)).toEqual(['MSH|1', 'MSH|2', 'MSH|3'])
  })

  it('decodes the same frames whatever the chunking (every split point, end bytes split too)', () => {
    fc.assert(fc.property(fc.array(fc.string({ minLength: 1, maxLength: 40 }).map((s) => s.replace(/[\x0b\x1c]/g, '')), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), (messages, cuts) => {
      const all = Buffer.concat(messages.map((m) => encodeFrame(m)))
      const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b)
      const parts: Buffer[] = []
      let last = 0
      for (const p of points) { parts.push(all.subarray(last, p)); last = p }
      parts.push(all.subarray(last))
      expect(decodeAll(parts).events.map(text)).toEqual(messages)
    }))
  })

  it('reads an oversized frame to its end without keeping it, and reports its head and size', () => {
    const big = 'MSH|^~\\&|APP|FAC\r' + 'OBX|'.padEnd(50_000, 'x')
    const { events } = decodeAll([encodeFrame(big).subarray(0, 7000), encodeFrame(big).subarray(7000), encodeFrame('MSH|next')], 10_000)
    expect(events[0]).toMatchObject({ type: 'oversize', size: Buffer.byteLength(big) })
    const head = (events[0] as { head: Buffer }).head
    expect(head.length).toBe(HEAD_BYTES)
    expect(head.toString().startsWith('MSH|^~\\&|APP|FAC\r')).toBe(true)
    expect(text(events[1]!)).toBe('MSH|next')
  })

  it('reports a frame without end bytes when the next frame starts, and decodes that next frame', () => {
    const { events } = decodeAll([Buffer.from('\x0bMSH|lost'), encodeFrame('MSH|kept')])
    expect(events[0]).toMatchObject({ type: 'unterminated' })
    expect((events[0] as { head: Buffer }).head.toString()).toBe('MSH|lost')
    expect(text(events[1]!)).toBe('MSH|kept')
  })

  it('says a frame is open while its end bytes are missing', () => {
    const { events, decoder } = decodeAll([Buffer.from('\x0bMSH|half')])
    expect(events).toEqual([])
    expect(decoder.inFrame).toBe(true)
    expect(decoder.pendingBytes).toBe(8)
    expect(decoder.endByteSeen).toBe(false)
  })

  it('says when only the final 0x0D is missing: the 0x1C arrived, the frame is still open', () => {
    const { events, decoder } = decodeAll([Buffer.from('\x0bMSH|half\x1c')])
    expect(events).toEqual([])
    expect([decoder.inFrame, decoder.pendingBytes, decoder.endByteSeen]).toEqual([true, 8, true])
    decoder.push(Buffer.from('\r'))
    expect(text(events[0]!)).toBe('MSH|half')
    expect([decoder.inFrame, decoder.endByteSeen]).toEqual([false, false])
  })

  it.each([
    ['binary garbage outside a frame', Buffer.from([0xff, 0x00, 0x13]), '0xff outside a frame (expected the start byte 0x0b)'],
    ['a message without framing', Buffer.from('MSH|^~\\&|'), '0x4d outside a frame (expected the start byte 0x0b)'],
    ['0x1C not followed by 0x0D', Buffer.from('\x0bMSH|x\x1cA'), 'end byte 0x1c followed by 0x41 instead of 0x0d'],
  ])('reports %s and stops decoding', (_name, bytes, reason) => {
    const { events } = decodeAll([bytes, encodeFrame('MSH|after')])
    expect(events).toEqual([{ type: 'garbage', reason }])
  })
})
