import { errorCodes, type WeirErrorOptions } from '../errors.ts'

/** The separators of one message, read from its MSH-1 and MSH-2. */
export interface Delimiters {
  field: string
  component: string
  repetition: string
  escape: string
  subcomponent: string
  /** MSH-2 as written (4 characters, or 5 with the v2.7 truncation character). */
  encoding: string
  /** Matches a value that needs escaping (a separator, the escape character, a control character other than tab). */
  special: RegExp
  /** Sticky: a formatting escape kept as written (`\.br\`, `\H\`…), at `lastIndex`. */
  kept: RegExp
}

/** `ERR_HL7_PARSE` with where it happened: `segment` (1-based) and `field` (e.g. `MSH-2`) when known. */
export class Hl7ParseError extends errorCodes.ERR_HL7_PARSE {
  readonly segment?: number
  readonly field?: string
  constructor(message: string, where: { segment?: number; field?: string } = {}, options?: WeirErrorOptions) {
    super(`invalid HL7 v2 message: ${message}`, options)
    if (where.segment !== undefined) this.segment = where.segment
    if (where.field !== undefined) this.field = where.field
  }
}

/** A short, printable quote of untrusted input for an error message. */
export function quote(text: string, max = 24): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text)
}

const delimiterCache = new Map<string, Delimiters>()

/** The delimiters of a message whose first segment is `msh`, checking MSH-1 and MSH-2; segment 1 in errors. */
export function readDelimiters(msh: string): Delimiters {
  if (!msh.startsWith('MSH')) throw new Hl7ParseError(`segment 1: expected "MSH", found ${quote(msh.slice(0, 3))}`, { segment: 1 })
  if (msh.length < 4) throw new Hl7ParseError('segment 1 (MSH): truncated before MSH-1 (field separator)', { segment: 1, field: 'MSH-1' })
  const field = msh[3]!
  if (/[A-Za-z0-9\s]/.test(field)) throw new Hl7ParseError(`segment 1 (MSH): MSH-1 field separator ${quote(field)} must not be a letter, digit or space`, { segment: 1, field: 'MSH-1' })
  const end = msh.indexOf(field, 4)
  const encoding = end < 0 ? msh.slice(4) : msh.slice(4, end)
  const key = field + encoding
  const cached = delimiterCache.get(key)
  if (cached) return cached
  if (end < 0 && encoding.length === 0) throw new Hl7ParseError('segment 1 (MSH): truncated before MSH-2 (encoding characters)', { segment: 1, field: 'MSH-2' })
  if (!validEncoding(field, encoding)) {
    throw new Hl7ParseError(`segment 1 (MSH): MSH-2 encoding characters ${quote(encoding)} must be 4 or 5 distinct characters, none a letter, digit, space or the field separator`, { segment: 1, field: 'MSH-2' })
  }
  const d = makeDelimiters(field, encoding)
  if (delimiterCache.size < 64) delimiterCache.set(key, d)
  return d
}

function validEncoding(field: string, encoding: string): boolean {
  if (encoding.length < 4 || encoding.length > 5) return false
  if (/[A-Za-z0-9\s]/.test(encoding)) return false
  return new Set(field + encoding).size === encoding.length + 1
}

const unicode = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`

/** HL7 formatting and other escapes passed through as written (v2.5 §2.7.4–2.7.6, v2.7 `\P\`). */
const KEPT_ESCAPES = 'H|N|P|\\.br|\\.fi|\\.nf|\\.ce|\\.sp[+-]?\\d*|\\.in[+-]?\\d*|\\.ti[+-]?\\d*|\\.sk[+-]?\\d*|C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4,6}|Z[0-9A-Fa-f]+'

function makeDelimiters(field: string, encoding: string): Delimiters {
  const [component, repetition, escape, subcomponent] = encoding as unknown as [string, string, string, string]
  const chars = [field, component, repetition, escape, subcomponent].map(unicode).join('')
  const e = unicode(escape)
  return {
    field, component, repetition, escape, subcomponent, encoding,
    special: new RegExp(`[${chars}\\u0000-\\u0008\\u000a-\\u001f]`),
    kept: new RegExp(`${e}(?:${KEPT_ESCAPES})${e}`, 'y'),
  }
}

/**
 * What may stand between the two escape characters of a sequence (v2.5 §2.7: a one-character escape
 * code, then data characters): a letter or the `.` of a formatting command, then letters, digits,
 * `.`, `+` or `-`. Text with anything else (a space, nothing at all) is not a sequence.
 */
const SEQUENCE = /^[A-Za-z.][A-Za-z0-9.+-]*$/

/**
 * Decodes the escape sequences of one leaf: `\F\ \S\ \T\ \R\ \E\` to the separators, `\Xhh…\` to text
 * (UTF-8, else Latin-1). Any other sequence (`\H\`, `\N\`, `\.br\`, `\P\`, an unknown `\Q\`…) is kept
 * as written, so the serializer can write it back. An escape character that opens no sequence (the
 * last one of the leaf, or one followed by text that cannot be a sequence, as in `\X4 then \S\`) is
 * kept as a literal character, and the sequences after it are still decoded.
 */
export function decodeLeaf(text: string, d: Delimiters): string {
  let at = text.indexOf(d.escape)
  if (at < 0) return text
  let out = ''
  let from = 0
  while (at >= 0) {
    const end = text.indexOf(d.escape, at + 1)
    if (end < 0) break
    const code = text.slice(at + 1, end)
    if (!SEQUENCE.test(code)) {
      // Not a sequence: the escape character at `at` is text; the one at `end` may open the next sequence.
      at = end
      continue
    }
    out += text.slice(from, at) + unescapeOne(code, d)
    from = end + 1
    at = text.indexOf(d.escape, from)
  }
  return from === 0 ? text : out + text.slice(from)
}

function unescapeOne(code: string, d: Delimiters): string {
  switch (code) {
    case 'F': return d.field
    case 'S': return d.component
    case 'T': return d.subcomponent
    case 'R': return d.repetition
    case 'E': return d.escape
  }
  if (code.length >= 3 && code[0] === 'X' && code.length % 2 === 1 && /^X[0-9A-Fa-f]+$/.test(code)) return hexText(code.slice(1))
  return d.escape + code + d.escape
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function hexText(hex: string): string {
  const bytes = Buffer.from(hex, 'hex')
  if (bytes.every((b) => b < 0x80)) return bytes.toString('latin1')
  try {
    return utf8.decode(bytes)
  } catch {
    return bytes.toString('latin1')
  }
}

/**
 * Encodes one leaf: the separators and the escape character as `\F\ \S\ \T\ \R\ \E\`, control characters other
 * than tab as `\Xhh\`; kept escapes (`\.br\`) stay as they are, so a value can hold them; `null` as `""`.
 */
export function encodeLeaf(value: string | null, d: Delimiters): string {
  if (value === null) return '""'
  if (value === '""') return `${d.escape}X22${d.escape}${d.escape}X22${d.escape}`
  if (!d.special.test(value)) return value
  let out = ''
  let from = 0
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!
    if (c === d.escape) {
      d.kept.lastIndex = i
      if (d.kept.test(value)) {
        i = d.kept.lastIndex - 1
        continue
      }
    }
    const code = escapeCodeOf(c, d)
    if (code !== undefined) {
      out += value.slice(from, i) + d.escape + code + d.escape
      from = i + 1
    }
  }
  return out + value.slice(from)
}

function escapeCodeOf(c: string, d: Delimiters): string | undefined {
  switch (c) {
    case d.field: return 'F'
    case d.component: return 'S'
    case d.subcomponent: return 'T'
    case d.repetition: return 'R'
    case d.escape: return 'E'
  }
  const n = c.charCodeAt(0)
  return n < 0x20 && n !== 0x09 ? `X${n.toString(16).toUpperCase().padStart(2, '0')}` : undefined
}
