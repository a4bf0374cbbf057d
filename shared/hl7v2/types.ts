/**
 * The JSON shape of a parsed HL7 v2 message: a public contract, read by `map` expressions.
 *
 * ```json
 * { "segments": ["MSH", "PID", "OBX", "OBX"],
 *   "MSH": [{ "1": "|", "2": "^~\\&", "3": [{ "1": "EPIC" }], … }],
 *   "PID": [{ "1": [{ "1": "1" }], "2": "", "3": [{ "1": "100234", "4": "HOSP", "5": "MR" }], "5": [{ "1": "DOE", "2": "JANE" }], … }],
 *   "OBX": [{ … }, { … }] }
 * ```
 * In JSONata (numeric names need backticks): PID-3.1 is ``PID.`3`.`1` ``, the family name of the first
 * PID-5 repetition is ``PID.`5`[0].`1` ``, OBX-5 of every OBX is ``OBX.`5` ``.
 */

/** A leaf: the decoded text, or `null` for the HL7 null value `""`. */
export type Hl7Value = string | null

/** Subcomponents of a component that holds the subcomponent separator, keyed "1".."n". */
export interface Hl7Subcomponents { [position: string]: Hl7Value }

/** A component: a leaf, or its subcomponents when it holds the subcomponent separator. */
export type Hl7Component = Hl7Value | Hl7Subcomponents

/** One repetition of a field: its components keyed "1".."n" (always an object, even with one component). */
export interface Hl7Repetition { [position: string]: Hl7Component }

/** A field: `""` when empty, `null` when it is the HL7 null `""`, otherwise its repetitions (at least one). */
export type Hl7Field = '' | null | Hl7Repetition[]

/**
 * A segment: its fields keyed by their HL7 number "1".."n", every field up to the last one present (empty ones as `""`).
 * In MSH, "1" is the field separator and "2" the encoding characters, as written (MSH-1 and MSH-2).
 */
export interface Hl7Segment { [position: string]: Hl7Field | string }

/**
 * A message: `segments` lists the segment names in their order; each segment name is a key holding that
 * name's segments in order. Serializing walks `segments` and takes the next segment of each name.
 */
export interface Hl7Message {
  segments: string[]
  [name: string]: Hl7Segment[] | string[]
}

/** The MSH fields routing and acknowledgements need. Every value is `''` when the field is absent. */
export interface MshHeader {
  /** MSH-1, e.g. `|`. */
  fieldSeparator: string
  /** MSH-2 as written, e.g. `^~\&` (component, repetition, escape, subcomponent and, from v2.7, truncation). */
  encodingCharacters: string
  /** MSH-3 as ER7 text (escapes kept), so an ACK can copy it unchanged. */
  sendingApplication: string
  /** MSH-4 as ER7 text. */
  sendingFacility: string
  /** MSH-5 as ER7 text. */
  receivingApplication: string
  /** MSH-6 as ER7 text. */
  receivingFacility: string
  /** MSH-9.1, e.g. `ADT`. */
  messageType: string
  /** MSH-9.2, e.g. `A01`. */
  trigger: string
  /** MSH-9.3, e.g. `ADT_A01`. */
  structure: string
  /** MSH-10, the message control id: the whole field as ER7 text (`CX^1` stays `CX^1`), `''` when empty or `""`. */
  controlId: string
  /** MSH-11.1, e.g. `P`. */
  processingId: string
  /** MSH-12.1, e.g. `2.5.1`. */
  version: string
  /** MSH-15, e.g. `AL`; empty in original acknowledgement mode. */
  acceptAckType: string
  /** MSH-16, e.g. `NE`. */
  applicationAckType: string
}

/** MSA-1 codes: original mode (AA, AE, AR) and enhanced mode accept acknowledgements (CA, CE, CR). */
export type AckCode = 'AA' | 'AE' | 'AR' | 'CA' | 'CE' | 'CR'

/** What an acknowledgement says. */
export interface Ack {
  code: AckCode
  /** MSA-2 as ER7 text, the whole field: the control id of the message acknowledged. */
  controlId: string
  /** MSA-3, or the ERR segment's text when MSA-3 is empty; `''` when neither has one. */
  text: string
}
