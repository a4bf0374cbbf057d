const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d

/**
 * Whether JSON text nests arrays and objects deeper than `max`, found by one pass over the raw
 * bytes (brackets inside strings do not count) before `JSON.parse` builds anything. A document
 * nested 100,000 deep parses, but every recursive step after it (serialising it for the store,
 * a JSONata map) overflows the stack. UTF-8 continuation bytes are all above 0x7f, so they never
 * look like a quote or a bracket.
 */
export function jsonDeeperThan(raw: Uint8Array, max: number): boolean {
  if (atMostOpenings(raw, max)) return false
  let depth = 0
  let inString = false
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]
    if (inString) {
      if (b === BACKSLASH) i++
      else if (b === QUOTE) inString = false
    } else if (b === QUOTE) inString = true
    else if (b === OPEN_ARRAY || b === OPEN_OBJECT) {
      if (++depth > max) return true
    } else if (b === CLOSE_ARRAY || b === CLOSE_OBJECT) depth--
  }
  return false
}

/**
 * True when `raw` holds at most `max` opening brackets, so it cannot nest deeper than `max`: the
 * common case, told by the native byte search (about 30 times faster than the scan above for a
 * 1 KB message).
 */
function atMostOpenings(raw: Uint8Array, max: number): boolean {
  const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
  let n = 0
  for (const open of [OPEN_ARRAY, OPEN_OBJECT]) {
    for (let i = bytes.indexOf(open); i !== -1; i = bytes.indexOf(open, i + 1)) if (++n > max) return false
  }
  return true
}
