import { randomBytes } from 'node:crypto'
import { encodeLeaf, Hl7ParseError, quote, readDelimiters } from './encoding.ts'
import { wholeField } from './header.ts'
import { parseEr7, splitSegments } from './parse.ts'
import type { Ack, AckCode, Hl7Field, Hl7Segment, MshHeader } from './types.ts'

const ACK_CODES: readonly string[] = ['AA', 'AE', 'AR', 'CA', 'CE', 'CR']

/** HL7 table 0357 (message error condition codes): the text written next to a code in ERR. */
const ERROR_TEXT: Readonly<Record<string, string>> = {
  0: 'Message accepted', 100: 'Segment sequence error', 101: 'Required field missing', 102: 'Data type error',
  103: 'Table value not found', 200: 'Unsupported message type', 201: 'Unsupported event code',
  202: 'Unsupported processing id', 203: 'Unsupported version id', 204: 'Unknown key identifier',
  205: 'Duplicate key identifier', 206: 'Application record locked', 207: 'Application internal error',
}

export interface AckOptions {
  /** MSA-3 (and the ERR user message): why the message was refused or not processed. */
  text?: string
  /** HL7 table 0357 code for ERR; default `207` (application internal error). */
  errorCode?: string
  /** The ACK's own MSH-10; default 20 random hex digits. */
  controlId?: string
  /** MSH-7; default now. */
  now?: Date
}

/**
 * Builds the acknowledgement of a message: MSH with sending and receiving application and facility swapped,
 * MSH-9 `ACK^<trigger>^ACK`, the message's separators, processing id and version, its own control id; MSA-1
 * `code`, MSA-2 the message's MSH-10 exactly as written (`header.controlId` is ER7 text), MSA-3 `text`; for AE, AR, CE and CR an ERR segment (ERR-3 and ERR-8 from
 * v2.5 and when MSH-12 is empty, ERR-1 before). Every segment ends with `\r`.
 *
 * @example
 * buildAck(readHeader(er7), 'AE', { text: 'PID-3 is missing', errorCode: '101' })
 * @see HL7 v2.5.1 chapter 2, sections 2.9 (acknowledgement modes) and 2.15.8 (ERR)
 */
export function buildAck(header: MshHeader, code: AckCode, options: AckOptions = {}): string {
  const d = readDelimiters(`MSH${header.fieldSeparator}${header.encodingCharacters}`)
  const enc = (v: string): string => encodeLeaf(v, d)
  const msh = [
    'MSH', d.encoding, header.receivingApplication, header.receivingFacility, header.sendingApplication, header.sendingFacility,
    timestamp(options.now ?? new Date()), '', ['ACK', enc(header.trigger), 'ACK'].join(d.component),
    enc(options.controlId ?? randomBytes(10).toString('hex').toUpperCase()), enc(header.processingId), enc(header.version),
  ]
  const text = options.text ?? ''
  const segments = [trimFields(msh).join(d.field), trimFields(['MSA', code, header.controlId, enc(text)]).join(d.field)]
  if (code !== 'AA' && code !== 'CA') {
    const errorCode = options.errorCode ?? '207'
    const described = [enc(errorCode), enc(ERROR_TEXT[errorCode] ?? ''), 'HL70357']
    segments.push(versionAtLeast(header.version, 2, 5)
      ? trimFields(['ERR', '', '', described.join(d.component), 'E', '', '', '', enc(text)]).join(d.field)
      : ['ERR', ['', '', '', described.join(d.subcomponent)].join(d.component)].join(d.field))
  }
  return segments.join('\r') + '\r'
}

function trimFields(fields: string[]): string[] {
  let n = fields.length
  while (n > 1 && fields[n - 1] === '') n--
  return fields.slice(0, n)
}

/** `YYYYMMDDHHMMSS+0000` in UTC. */
function timestamp(now: Date): string {
  return now.toISOString().slice(0, 19).replace(/[-T:]/g, '') + '+0000'
}

/**
 * Whether `version` (MSH-12) is `major.minor` or later. An empty or unreadable version is unknown and
 * counts as the newest: otherwise `Number('')` (0) would make an empty MSH-12 read as older than any.
 */
function versionAtLeast(version: string, major: number, minor: number): boolean {
  if (version.trim() === '') return true
  const [a, b] = version.split('.').map(Number)
  if (a === undefined || Number.isNaN(a)) return true
  return a > major || (a === major && (b ?? 0) >= minor)
}

/**
 * Reads an acknowledgement: MSA-1, MSA-2 (the whole field as written, as `readHeader` reads MSH-10), and MSA-3 or else the first ERR text (ERR-8, ERR-3.2, ERR-1.4.2).
 * Throws `ERR_HL7_PARSE` when the text is not an HL7 message, has no MSA, or MSA-1 is not an acknowledgement code.
 *
 * @example
 * readAck('MSH|^~\\&|LAB||EPIC||20240105||ACK^A01^ACK|A1|P|2.5.1\rMSA|AA|MSG0001\r') // { code: 'AA', controlId: 'MSG0001', text: '' }
 */
export function readAck(text: string): Ack {
  const message = parseEr7(text)
  const msa = (message.MSA as Hl7Segment[] | undefined)?.[0]
  if (!msa) throw new Hl7ParseError('the acknowledgement has no MSA segment')
  const code = leafOf(msa[1])
  if (!ACK_CODES.includes(code)) {
    throw new Hl7ParseError(`MSA-1 ${quote(code)} is not an acknowledgement code (AA, AE, AR, CA, CE, CR)`, { segment: message.segments.indexOf('MSA') + 1, field: 'MSA-1' })
  }
  const errors = (message.ERR as Hl7Segment[] | undefined) ?? []
  const errText = errors.map((e) => leafOf(e[8]) || leafOf(e[3], 2) || leafOf(e[1], 4, 2)).find((t) => t !== '') ?? ''
  return { code: code as AckCode, controlId: rawMsa2(text, message.segments.indexOf('MSA')), text: leafOf(msa[3]) || errText }
}

/** MSA-2 as written in the segment at `index` of `text` (already parsed, so well-formed). */
function rawMsa2(text: string, index: number): string {
  const lines = splitSegments(text)
  const d = readDelimiters(lines[0]!)
  return wholeField(lines[index]!.split(d.field)[2] ?? '')
}

/** The text at component `c`, subcomponent `s` of a field's first repetition; `''` when absent or null. */
function leafOf(field: Hl7Field | string | undefined, c = 1, s = 1): string {
  if (!Array.isArray(field)) return ''
  const component = field[0]?.[c]
  const value = typeof component === 'object' && component !== null ? component[s] : s === 1 ? component : undefined
  return typeof value === 'string' ? value : ''
}
