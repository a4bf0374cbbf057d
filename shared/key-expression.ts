import type { MessageInput } from './component.ts'
import { bodyExpression, evaluationFailure, jsonataProblem } from './jsonata.ts'
import { HL7_ER7_CONTENT_TYPE, parseEr7, parseTersePath, readTersePath, type Hl7Message } from './hl7v2/index.ts'

/** Names of `options.searchKeys`. */
export const SEARCH_KEY_NAME = '^[a-z][a-z0-9_]{0,31}$'
/** At most this many `options.searchKeys`. */
export const MAX_SEARCH_KEYS = 16
/** Values of one search key per message kept, and the longest value kept (characters). */
const MAX_VALUES = 64
const MAX_VALUE_LENGTH = 256

const parsed = new WeakMap<MessageInput, Hl7Message | Error>()

/** Whether a message as received is HL7 v2 ER7 text (as `mllp-listener` delivers it). */
const isEr7 = (input: MessageInput) => typeof input.body === 'string' && input.contentType?.split(';')[0]?.trim().toLowerCase() === HL7_ER7_CONTENT_TYPE

/** The parsed ER7 body, parsed once per message whatever reads it (orderBy and each search key). */
function er7Of(input: MessageInput): Hl7Message {
  let m = parsed.get(input)
  if (m === undefined) {
    try {
      m = parseEr7(input.body as string)
    } catch (e) {
      m = e as Error
    }
    parsed.set(input, m)
  }
  if (m instanceof Error) throw new Error(`the message is not valid HL7 v2: ${m.message}`)
  return m
}

/** Why `source` is not a key expression (neither an HL7 terse path nor valid JSONata), or undefined. */
export function keyExpressionProblem(source: string): string | undefined {
  return parseTersePath(source) !== undefined ? undefined : jsonataProblem(source)
}

/**
 * Compiles a key expression (`options.orderBy`, `options.searchKeys`): on an HL7 v2 ER7 body, an HL7
 * terse path (`PID.3.1`, `OBX[2].5`, see shared/hl7v2/path.ts) reads that value; otherwise the
 * expression is JSONata on the body as received, with `$message` bound to the whole message.
 * The result may be anything JSONata gives (undefined for nothing); rejects when evaluation fails
 * (with JSONata's error: evaluationFailure says where).
 */
export function keyExpression(source: string): (input: MessageInput) => Promise<unknown> {
  const terse = parseTersePath(source)
  let evaluate: ReturnType<typeof bodyExpression> | undefined
  return async (input) => {
    if (terse !== undefined && isEr7(input)) return readTersePath(er7Of(input), terse)
    evaluate ??= bodyExpression(source)
    return evaluate(input.body, input)
  }
}

/** The string values of a search key's result: a string or number, or an array of them; why any other result is not. */
function valuesOf(v: unknown): { values: string[]; problem?: string } {
  const one = (x: unknown) => (typeof x === 'string' ? x : typeof x === 'number' && Number.isFinite(x) ? String(x) : undefined)
  const all = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]
  const values = new Set<string>()
  for (const x of all) {
    const s = one(x)
    if (s === undefined) return { values: [], problem: `the expression gave ${x === null ? 'null' : Array.isArray(x) ? 'a nested array' : typeof x === 'object' ? 'an object' : `a ${typeof x}`}, not a string or number` }
    if (s.length > MAX_VALUE_LENGTH) return { values: [], problem: `a value is longer than ${MAX_VALUE_LENGTH} characters` }
    if (s !== '') values.add(s)
  }
  if (values.size > MAX_VALUES) return { values: [...values].slice(0, MAX_VALUES), problem: `the expression gave ${values.size} values; the first ${MAX_VALUES} are kept` }
  return { values: [...values] }
}

/**
 * Compiles `options.searchKeys` (name → key expression): the values of each key for a message as
 * received, one entry per key that gave at least one value. A key whose expression fails or gives
 * something other than strings and numbers gives no value and is reported to `problem`: a search
 * key never drops or fails a message.
 */
export function searchKeysOf(keys: Readonly<Record<string, string>>): (input: MessageInput, problem: (name: string, reason: string) => void) => Promise<Record<string, string[]>> {
  const compiled = Object.entries(keys).map(([name, source]) => [name, source, keyExpression(source)] as const)
  return async (input, problem) => {
    const out: Record<string, string[]> = {}
    for (const [name, source, evaluate] of compiled) {
      let v: unknown
      try {
        v = await evaluate(input)
      } catch (e) {
        problem(name, `the expression ${evaluationFailure(source, e)}`)
        continue
      }
      const r = valuesOf(v)
      if (r.problem !== undefined) problem(name, r.problem)
      if (r.values.length > 0) out[name] = r.values
    }
    return out
  }
}
