import { decodeLeaf, Hl7ParseError, readDelimiters, type Delimiters } from './encoding.ts'
import type { MshHeader } from './types.ts'

/** The first segment of an ER7 text, without parsing the rest. */
function firstSegment(text: string): string {
  if (typeof text !== 'string' || text.length === 0) throw new Hl7ParseError('the message is empty')
  let start = 0
  while (start < text.length && (text[start] === '\r' || text[start] === '\n')) start++
  let end = start
  while (end < text.length && text[end] !== '\r' && text[end] !== '\n') end++
  const line = text.slice(start, end)
  if (line.length === 0) throw new Hl7ParseError('the message is empty')
  const nul = line.indexOf('\u0000')
  if (nul >= 0) throw new Hl7ParseError(`binary data (a NUL byte at offset ${start + nul})`)
  return line
}

/**
 * Reads the MSH fields that routing and acknowledgements need, without parsing the rest of the message.
 * Separators come from MSH-1 and MSH-2. Throws `ERR_HL7_PARSE` when the text does not start with a
 * well-formed MSH. Absent fields read as `''`; whether a missing MSH-10 is acceptable is the caller's call.
 *
 * @example
 * const h = readHeader('MSH|^~\\&|EPIC|HOSP|LAB|LABFAC|20240105120000||ADT^A01^ADT_A01|MSG0001|P|2.5.1\rPID|…')
 * h.trigger // 'A01'
 * h.controlId // 'MSG0001' (the whole MSH-10 as written: 'CX^1' stays 'CX^1')
 */
export function readHeader(text: string): MshHeader {
  const line = firstSegment(text)
  const d = readDelimiters(line)
  const fields = line.split(d.field)
  const raw = (n: number): string => fields[n - 1] ?? ''
  const type = raw(9)
  return {
    fieldSeparator: d.field,
    encodingCharacters: d.encoding,
    sendingApplication: raw(3),
    sendingFacility: raw(4),
    receivingApplication: raw(5),
    receivingFacility: raw(6),
    messageType: component(type, 0, d),
    trigger: component(type, 1, d),
    structure: component(type, 2, d),
    controlId: wholeField(raw(10)),
    processingId: component(raw(11), 0, d),
    version: component(raw(12), 0, d),
    acceptAckType: component(raw(15), 0, d),
    applicationAckType: component(raw(16), 0, d),
  }
}

/**
 * A field's text as written (escapes and separators kept), `''` for the HL7 null `""`: what the
 * control id is, so that an ACK's MSA-2 echoes it exactly and no two control ids read as one.
 */
export function wholeField(field: string): string {
  return field === '""' ? '' : field
}

/** The decoded text of component `index` (0-based) of a field's first repetition, its first subcomponent. */
function component(field: string, index: number, d: Delimiters): string {
  const rep = field.indexOf(d.repetition)
  const first = rep < 0 ? field : field.slice(0, rep)
  const value = first.split(d.component)[index] ?? ''
  const sub = value.indexOf(d.subcomponent)
  const leaf = sub < 0 ? value : value.slice(0, sub)
  return leaf === '""' ? '' : decodeLeaf(leaf, d)
}
