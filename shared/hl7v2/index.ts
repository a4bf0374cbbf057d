/**
 * HL7 v2 in ER7 (pipe-and-hat) encoding: parse to a JSON shape JSONata can address, serialize back byte for
 * byte, read the MSH header cheaply, build and read acknowledgements.
 */
export { parseEr7 } from './parse.ts'
export { serializeEr7 } from './serialize.ts'
export { readHeader } from './header.ts'
export { buildAck, readAck, type AckOptions } from './ack.ts'
export { Hl7ParseError } from './encoding.ts'
export type { Ack, AckCode, Hl7Component, Hl7Field, Hl7Message, Hl7Repetition, Hl7Segment, Hl7Subcomponents, Hl7Value, MshHeader } from './types.ts'

/** The content type of an ER7 message (as `mllp-listener` sets it). */
export const HL7_ER7_CONTENT_TYPE = 'x-application/hl7-v2+er7'
export { parseTersePath, readTersePath, type TersePath } from './path.ts'
