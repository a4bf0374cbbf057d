import { decodeLeaf, Hl7ParseError, quote, readDelimiters, type Delimiters } from './encoding.ts'
import type { Hl7Component, Hl7Field, Hl7Message, Hl7Repetition, Hl7Segment, Hl7Value } from './types.ts'

/**
 * The segments of an ER7 text: split on `\r`, `\n` or `\r\n`, empty lines skipped.
 * Throws `ERR_HL7_PARSE` for a text that is empty or holds NUL bytes (binary data).
 */
export function splitSegments(text: string): string[] {
  if (typeof text !== 'string' || text.length === 0) throw new Hl7ParseError('the message is empty')
  const nul = text.indexOf('\u0000')
  if (nul >= 0) throw new Hl7ParseError(`binary data (a NUL byte at offset ${nul})`)
  const lines: string[] = []
  let from = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c !== 13 && c !== 10) continue
    if (i > from) lines.push(text.slice(from, i))
    from = i + 1
  }
  if (from < text.length) lines.push(text.slice(from))
  if (lines.length === 0) throw new Hl7ParseError('the message is empty')
  return lines
}

/**
 * Parses an HL7 v2 message in ER7 (pipe-and-hat) encoding into its JSON shape (see {@link Hl7Message}).
 * Separators come from MSH-1 and MSH-2; segment terminators may be `\r`, `\n` or `\r\n`.
 * Throws `ERR_HL7_PARSE` (an {@link Hl7ParseError} with `segment` and `field`) saying where and why.
 *
 * @example
 * const msg = parseEr7('MSH|^~\\&|LAB|HOSP|||20240105||ORU^R01^ORU_R01|123|P|2.5.1\rPID|1||100234^^^HOSP^MR||DOE^JANE\r')
 * msg.PID[0]['5'] // [{ '1': 'DOE', '2': 'JANE' }]
 * @see HL7 v2.5.1 chapter 2, section 2.5 (message construction rules) and 2.7 (escape sequences)
 */
export function parseEr7(text: string): Hl7Message {
  const lines = splitSegments(text)
  const d = readDelimiters(lines[0]!)
  const message: Hl7Message = { segments: [] }
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const name = segmentName(line, i + 1, d)
    const segment = i === 0 || name === 'MSH' ? parseMsh(line, i + 1, d) : parseFields(line, 4, 1, {}, d)
    message.segments.push(name)
    const same = message[name] as Hl7Segment[] | undefined
    if (same) same.push(segment)
    else message[name] = [segment]
  }
  return message
}

function segmentName(line: string, n: number, d: Delimiters): string {
  const name = line.slice(0, 3)
  if (!isSegmentName(name)) throw new Hl7ParseError(`segment ${n}: name ${quote(name)} is not 3 upper-case letters or digits`, { segment: n })
  if (line.length > 3 && line[3] !== d.field) {
    throw new Hl7ParseError(`segment ${n} (${name}): expected the field separator ${quote(d.field)} after the segment name, found ${quote(line[3]!)}`, { segment: n })
  }
  return name
}

/** Three characters, A–Z or 0–9, starting with a letter (`PID`, `ZPD`, `OBX`, `PV1`). */
export function isSegmentName(name: string): boolean {
  if (name.length !== 3) return false
  for (let i = 0; i < 3; i++) {
    const c = name.charCodeAt(i)
    if (!((c >= 65 && c <= 90) || (i > 0 && c >= 48 && c <= 57))) return false
  }
  return true
}

function parseMsh(line: string, n: number, first: Delimiters): Hl7Segment {
  const d = n === 1 ? first : readDelimiters(line)
  if (d.field + d.encoding !== first.field + first.encoding) throw new Hl7ParseError(`segment ${n} (MSH): its separators differ from the first MSH's (batches are not supported)`, { segment: n })
  const start = 4 + d.encoding.length
  const segment: Hl7Segment = { 1: d.field, 2: d.encoding }
  return line.length > start ? parseFields(line, start + 1, 3, segment, d) : segment
}

/** Fields of `line` from offset `from` (just past a field separator), numbered from `first`. */
function parseFields(line: string, from: number, first: number, segment: Hl7Segment, d: Delimiters): Hl7Segment {
  if (line.length <= 3) return segment
  let n = first
  for (;;) {
    const end = line.indexOf(d.field, from)
    const text = end < 0 ? line.slice(from) : line.slice(from, end)
    segment[n++] = parseField(text, d)
    if (end < 0) return segment
    from = end + 1
  }
}

function parseField(text: string, d: Delimiters): Hl7Field {
  if (text === '') return ''
  if (text === '""') return null
  const reps: Hl7Repetition[] = []
  let from = 0
  for (;;) {
    const end = text.indexOf(d.repetition, from)
    reps.push(parseRepetition(end < 0 ? text.slice(from) : text.slice(from, end), d))
    if (end < 0) return reps
    from = end + 1
  }
}

function parseRepetition(text: string, d: Delimiters): Hl7Repetition {
  return positions(text, d.component, parseComponent, d)
}

function parseComponent(text: string, d: Delimiters): Hl7Component {
  return text.indexOf(d.subcomponent) < 0 ? leaf(text, d) : positions<Hl7Value>(text, d.subcomponent, leaf, d)
}

/** The parts of `text` between separators, keyed "1".."n". */
function positions<T>(text: string, separator: string, each: (part: string, d: Delimiters) => T, d: Delimiters): Record<number, T> {
  const out: Record<number, T> = {}
  let from = 0
  let n = 1
  for (;;) {
    const end = text.indexOf(separator, from)
    out[n++] = each(end < 0 ? text.slice(from) : text.slice(from, end), d)
    if (end < 0) return out
    from = end + 1
  }
}

function leaf(text: string, d: Delimiters): string | null {
  return text === '""' ? null : decodeLeaf(text, d)
}
