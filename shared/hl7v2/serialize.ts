import { encodeLeaf, Hl7ParseError, quote, readDelimiters, type Delimiters } from './encoding.ts'
import { isSegmentName } from './parse.ts'
import type { Hl7Message, Hl7Segment } from './types.ts'

/**
 * Writes a message in ER7, every segment ended by `\r` (the HL7 segment terminator), separators from
 * MSH-1 and MSH-2 of the first MSH (`|` and `^~\&` when absent). Each segment name holds an array of
 * segments or one segment object (JSONata's singleton). Segments follow `segments`; without it,
 * MSH first, then the keys in their order. Where a field, repetition or component is expected, a plain
 * string or number is accepted as its text. Throws `ERR_HL7_PARSE` for a shape it cannot write.
 *
 * @example
 * serializeEr7(parseEr7(text)) === text // for a text with \r terminators and canonical escapes
 */
export function serializeEr7(message: Hl7Message): string {
  if (typeof message !== 'object' || message === null) throw new Hl7ParseError('cannot serialize: the message is not an object')
  const lists = segmentLists(message)
  const msh = lists.get('MSH')?.[0]
  if (msh === undefined) throw new Hl7ParseError('cannot serialize: no MSH segment', { segment: 1 })
  const d = readDelimiters(`MSH${text(msh[1], '|')}${text(msh[2], '^~\\&')}`)
  let out = ''
  for (const [name, segment] of orderedSegments(message.segments, lists)) out += serializeSegment(name, segment, d) + '\r'
  return out
}

function text(v: unknown, fallback: string): string {
  return typeof v === 'string' && v !== '' ? v : fallback
}

const isSegment = (v: unknown): v is Hl7Segment => typeof v === 'object' && v !== null && !Array.isArray(v)

const describeValue = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`)

/**
 * Each segment name's segments, in the message's key order: an array is its segments in order, one
 * object is one segment (what JSONata makes of a one-item result). Throws for a key that is not a
 * segment name and for any other value, naming the segment.
 */
function segmentLists(message: Hl7Message): Map<string, Hl7Segment[]> {
  const lists = new Map<string, Hl7Segment[]>()
  for (const [name, value] of Object.entries(message)) {
    if (name === 'segments') continue
    if (!isSegmentName(name)) throw new Hl7ParseError(`cannot serialize: ${quote(name)} is not a segment name`)
    lists.set(name, segmentsOf(name, value))
  }
  return lists
}

function segmentsOf(name: string, value: unknown): Hl7Segment[] {
  if (isSegment(value)) return [value]
  if (!Array.isArray(value)) throw new Hl7ParseError(`cannot serialize: ${name} is ${describeValue(value)}: a segment is an object (or an array of them)`)
  const wrong = value.findIndex((s) => !isSegment(s))
  if (wrong >= 0) throw new Hl7ParseError(`cannot serialize: ${name}[${wrong}] is ${describeValue(value[wrong])}: a segment is an object`)
  return value as Hl7Segment[]
}

/** The segments in the order `segments` gives, or without it MSH first and then the keys in their order. */
function orderedSegments(segments: unknown, lists: Map<string, Hl7Segment[]>): Array<[string, Hl7Segment]> {
  const order = segments ?? ['MSH', ...[...lists].flatMap(([name, list]) => (name === 'MSH' ? [] : list.map(() => name)))]
  if (!Array.isArray(order)) throw new Hl7ParseError('cannot serialize: "segments" must be an array of segment names')
  const used = new Map<string, number>()
  const out: Array<[string, Hl7Segment]> = []
  for (const name of order) {
    if (typeof name !== 'string' || !isSegmentName(name)) throw new Hl7ParseError(`cannot serialize: ${quote(String(name))} in "segments" is not a segment name`)
    const n = used.get(name) ?? 0
    const segment = lists.get(name)?.[n]
    if (segment === undefined) throw new Hl7ParseError(`cannot serialize: "segments" lists ${name} ${n + 1} times but ${name} holds ${n} segments`)
    used.set(name, n + 1)
    out.push([name, segment])
  }
  for (const [name, list] of lists) {
    const n = used.get(name) ?? 0
    if (list.length > n) throw new Hl7ParseError(`cannot serialize: ${name} holds ${list.length} segments but "segments" lists it ${n} times`)
  }
  return out
}

function serializeSegment(name: string, segment: Hl7Segment, d: Delimiters): string {
  const count = lastPosition(segment)
  let out = name
  let i = 1
  if (name === 'MSH') {
    out += d.field + d.encoding
    i = 3
  }
  for (; i <= count; i++) out += d.field + serializeField(segment[i], d, name, i)
  return out
}

function lastPosition(node: object): number {
  let max = 0
  for (const key in node) {
    const n = Number(key)
    if (Number.isInteger(n) && n > max) max = n
  }
  return max
}

function serializeField(field: unknown, d: Delimiters, name: string, i: number): string {
  if (field === undefined || field === '') return ''
  if (!Array.isArray(field)) return serializeRepetition(field, d, name, i)
  let out = ''
  for (let r = 0; r < field.length; r++) out += (r === 0 ? '' : d.repetition) + serializeRepetition(field[r], d, name, i)
  return out
}

function serializeRepetition(rep: unknown, d: Delimiters, name: string, i: number): string {
  if (typeof rep !== 'object' || rep === null) return serializeLeaf(rep, d, name, i)
  return joinPositions(rep, d.component, serializeComponent, d, name, i)
}

function serializeComponent(component: unknown, d: Delimiters, name: string, i: number): string {
  if (typeof component !== 'object' || component === null) return serializeLeaf(component, d, name, i)
  return joinPositions(component, d.subcomponent, serializeLeaf, d, name, i)
}

/** The values of `node` at "1".."n", each written by `each`, joined by `separator`. */
function joinPositions(node: object, separator: string, each: (v: unknown, d: Delimiters, name: string, i: number) => string, d: Delimiters, name: string, i: number): string {
  const count = lastPosition(node)
  let out = ''
  for (let p = 1; p <= count; p++) out += (p === 1 ? '' : separator) + each((node as Record<number, unknown>)[p], d, name, i)
  return out
}

function serializeLeaf(value: unknown, d: Delimiters, name: string, i: number): string {
  if (value === undefined) return ''
  if (value === null || typeof value === 'string') return encodeLeaf(value, d)
  if (typeof value === 'number' || typeof value === 'boolean') return encodeLeaf(String(value), d)
  throw new Hl7ParseError(`cannot serialize ${name}-${i}: expected text, null or an object of positions, found ${Array.isArray(value) ? 'an array' : typeof value} too deep`)
}
