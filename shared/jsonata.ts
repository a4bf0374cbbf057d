import jsonata from 'jsonata'
import type { Message } from './component.ts'
import { PermanentError } from './errors.ts'

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

/** JSONata results carry a hidden `sequence` flag on arrays; a plain JSON copy is what the store keeps. */
export const plainJson = (v: unknown): unknown => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)))

/**
 * Compiles an expression evaluated against a message body, with `$message` bound to the whole message.
 * A failed evaluation is a PermanentError "<what> failed: <reason>" with the JSONata error as its cause.
 */
export function messageExpression(source: string, what: string): (message: Message) => Promise<unknown> {
  const expr = jsonata(source)
  return async (message) => {
    try {
      return await expr.evaluate(message.body, { message })
    } catch (e) {
      throw new PermanentError(`${what} failed: ${(e as Error).message}`, { cause: e })
    }
  }
}
