import jsonata from 'jsonata'
import type { Message } from './component.ts'
import { PermanentError } from './errors.ts'
import { DEFER, directEvaluator } from './jsonata-direct.ts'

/** Why a JSONata expression does not compile, or undefined when it does (or is absent). */
export function jsonataProblem(expr: string | undefined): string | undefined {
  if (expr === undefined) return undefined
  try {
    jsonata(expr)
    return undefined
  } catch (e) {
    const err = e as { message?: string; position?: number }
    return `invalid JSONata expression${err.position !== undefined ? ` at position ${err.position}` : ''}: ${err.message ?? String(e)}`
  }
}

/** Compiles a JSONata expression, returning `[pointer, message]` problems for check(). */
export function jsonataProblems(expr: string, pointer: string): Array<[string, string]> {
  const problem = jsonataProblem(expr)
  return problem === undefined ? [] : [[pointer, problem]]
}

/** Past this depth plainJson hands the rest to JSON, which reports a cycle as JSON.stringify does. */
const MAX_WALK_DEPTH = 200

/** JSON's round trip, which plainJson falls back to for anything but plain data. */
const viaJson = (v: unknown): unknown => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)))

/**
 * A JSONata result as the plain JSON the store keeps: what `JSON.parse(JSON.stringify(v))` gives
 * (arrays lose JSONata's hidden `sequence` flags, `undefined` and functions are left out of objects
 * and become null in arrays, non-finite numbers become null), copied directly, about five times
 * faster than through the text. Anything but plain objects, arrays and primitives (a Date, a Buffer)
 * goes through JSON.
 */
export const plainJson = (v: unknown): unknown => plainCopy(v, 0)

function plainCopy(v: unknown, depth: number): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v
  if (typeof v === 'number') return Number.isFinite(v) ? v + 0 : null
  if (typeof v !== 'object' || depth > MAX_WALK_DEPTH) return viaJson(v)
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length)
    for (let i = 0; i < v.length; i++) {
      const e: unknown = v[i]
      out[i] = e === undefined || typeof e === 'function' || typeof e === 'symbol' ? null : plainCopy(e, depth + 1)
    }
    return out
  }
  const proto: unknown = Object.getPrototypeOf(v)
  if ((proto !== Object.prototype && proto !== null) || typeof (v as { toJSON?: unknown }).toJSON === 'function') return viaJson(v)
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(v)) {
    const e = (v as Record<string, unknown>)[key]
    if (e === undefined || typeof e === 'function' || typeof e === 'symbol') continue
    if (key === '__proto__') Object.defineProperty(out, key, { value: plainCopy(e, depth + 1), enumerable: true, writable: true, configurable: true })
    else out[key] = plainCopy(e, depth + 1)
  }
  return out
}

/**
 * Compiles `source` for evaluation against a message body, `$message` bound to the message given:
 * the simplest expressions (field paths, fixed-key objects, comparisons) are evaluated directly,
 * with JSONata's result (./jsonata-direct.ts); JSONata evaluates the rest. Rejects as JSONata does.
 */
export function bodyExpression(source: string): (body: unknown, message: unknown) => Promise<unknown> {
  const expr = jsonata(source)
  const direct = directEvaluator(expr.ast())
  return async (body, message) => {
    const v = direct ? direct(body) : DEFER
    return v !== DEFER ? v : expr.evaluate(body, { message })
  }
}

/**
 * A failed evaluation of `source`, as "failed at position 19 ($undefinedFn): <JSONata's message>":
 * where, as compile-time problems say it, and the token there, so that the channel's author finds the
 * call or operator at fault; just "failed: <message>" for an error without a position (not JSONata's).
 * Adds never JSONata's `value` (the data the expression was applied to: a patient's name, an MRN),
 * and the token only when it is text of the expression itself. JSONata's message is kept as it
 * gives it (a few of its messages quote the value, as they always did).
 */
export function evaluationFailure(source: string, e: unknown): string {
  // JSONata rejects with plain objects ({ code, position, token, value, message }), not Errors.
  const { position, token, message } = (typeof e === 'object' && e !== null ? e : {}) as { position?: unknown; token?: unknown; message?: unknown }
  const shown = typeof position === 'number' && typeof token === 'string' ? tokenIn(source, token, position) : undefined
  const at = typeof position === 'number' ? ` at position ${position}${shown !== undefined ? ` (${shown})` : ''}` : ''
  return `failed${at}: ${typeof message === 'string' ? message : String(e)}`
}

/**
 * `token` as written in `source` at or before JSONata's `position` (which points just past the token,
 * or past the `(` of a call), with its `$` when it names a function or variable (JSONata's token
 * leaves the `$` out); undefined when the expression holds no such text.
 */
function tokenIn(source: string, token: string, position: number): string | undefined {
  const at = token === '' ? -1 : source.lastIndexOf(token, position)
  if (at === -1) return undefined
  return source[at - 1] === '$' ? `$${token}` : token
}

/**
 * Compiles an expression evaluated against a message body, with `$message` bound to the whole message
 * (bodyExpression). A failed evaluation is a PermanentError "<what> failed at position <n> (<token>):
 * <reason>" (evaluationFailure) with the JSONata error as its cause.
 */
export function messageExpression(source: string, what: string): (message: Message) => Promise<unknown> {
  const evaluate = bodyExpression(source)
  return async (message) => {
    try {
      return await evaluate(message.body, message)
    } catch (e) {
      throw new PermanentError(`${what} ${evaluationFailure(source, e)}`, { cause: e })
    }
  }
}
