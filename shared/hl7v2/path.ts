import type { Hl7Message, Hl7Segment } from './types.ts'

/**
 * An HL7 v2 terse path: `SEG[.n]`-style address of one leaf, as written in HL7 documentation.
 * `PID.3.1` is PID-3, component 1; `OBX[2].5` is OBX-5 of the second OBX; `PID.3[2].1` is component 1
 * of the second repetition of PID-3; `PID.3.1.2` is subcomponent 2. Repetitions are 1-based and
 * default to the first; an omitted component or subcomponent means the first.
 */
export interface TersePath {
  segment: string
  /** 1-based occurrence of the segment in the message. */
  segmentRepetition: number
  field: number
  /** 1-based repetition of the field. */
  fieldRepetition: number
  component: number
  subcomponent: number
}

const TERSE = /^([A-Z][A-Z0-9]{2})(?:\[([1-9]\d{0,3})\])?\.([1-9]\d{0,3})(?:\[([1-9]\d{0,3})\])?(?:\.([1-9]\d{0,3}))?(?:\.([1-9]\d{0,3}))?$/

/** The terse path `text` spells (`PID.3.1`, `OBX[2].5`, `PID.3[2].1.1`), or undefined when it is not one. */
export function parseTersePath(text: string): TersePath | undefined {
  const m = TERSE.exec(text)
  if (!m) return undefined
  const n = (v: string | undefined) => (v === undefined ? 1 : Number(v))
  return { segment: m[1]!, segmentRepetition: n(m[2]), field: Number(m[3]), fieldRepetition: n(m[4]), component: n(m[5]), subcomponent: n(m[6]) }
}

/**
 * The decoded text at `path` in a parsed message, or undefined when the message has no value there
 * (no such segment, an empty field, the HL7 null `""`). MSH-1 and MSH-2 read as written.
 */
export function readTersePath(message: Hl7Message, path: TersePath): string | undefined {
  const segments = message[path.segment] as Hl7Segment[] | undefined
  const field = segments?.[path.segmentRepetition - 1]?.[path.field]
  if (typeof field === 'string') return field !== '' && path.fieldRepetition === 1 && path.component === 1 ? field : undefined
  const component = field?.[path.fieldRepetition - 1]?.[path.component]
  const leaf = typeof component === 'object' && component !== null ? component[path.subcomponent] : path.subcomponent === 1 ? component : undefined
  return typeof leaf === 'string' && leaf !== '' ? leaf : undefined
}
