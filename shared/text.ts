/**
 * Strict UTF-8, one decoder for every source: an invalid byte refuses the text instead of storing
 * U+FFFD in place of a character. Not ignoreBOM: a leading byte order mark (Notepad and PowerShell
 * write one) is dropped, since JSON.parse and the HL7 parser refuse it.
 */
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The text of `data` in `encoding` (latin1 as itself); undefined when `encoding` is utf-8 and the bytes are not valid UTF-8. */
export function decodeText(data: Uint8Array, encoding: 'utf-8' | 'latin1'): string | undefined {
  if (encoding === 'latin1') return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1')
  try {
    return utf8.decode(data)
  } catch {
    return undefined
  }
}
