import jsonata from 'jsonata'
import { defineComponent, type Message } from '../../shared/component.ts'
import { PermanentError } from '../../shared/errors.ts'

export interface MatchConfig {
  jsonata: string
  onError: 'error' | 'drop'
}

const configSchema = {
  type: 'object', additionalProperties: false, required: ['jsonata'],
  properties: {
    jsonata: {
      type: 'string', minLength: 1,
      description: 'JSONata predicate evaluated against the message body; the message is kept when the result is truthy (JSONata $boolean rules). `$message` is bound to the whole message (id, attributes, contentType…).',
      examples: ["type = 'ADT^A01'", "$message.attributes.fileName ~> /\\.json$/"],
    },
    onError: {
      enum: ['error', 'drop'], default: 'error',
      description: 'When evaluation fails at run time: "error" puts the message in error state, "drop" filters it out.',
    },
  },
}

/** Compiles a JSONata expression, returning `[pointer, message]` problems for check(). */
function jsonataProblems(expr: string, pointer: string): Array<[string, string]> {
  try {
    jsonata(expr)
    return []
  } catch (e) {
    const err = e as { message?: string; position?: number }
    return [[pointer, `invalid JSONata expression${err.position !== undefined ? ` at position ${err.position}` : ''}: ${err.message ?? String(e)}`]]
  }
}

/** JSONata's $boolean casting rules. */
function truthy(v: unknown): boolean {
  if (v === undefined || v === null) return false
  if (Array.isArray(v)) return v.some(truthy)
  switch (typeof v) {
    case 'boolean': return v
    case 'number': return v !== 0
    case 'string': return v.length > 0
    case 'function': return false
    case 'object': return Object.keys(v).length > 0
    default: return false
  }
}

export default defineComponent<'filter', MatchConfig>({
  type: 'match', kind: 'filter',
  description: 'Keeps the messages for which a JSONata predicate is true and drops (filters) the others.',
  configSchema,
  check: (config) => jsonataProblems(config.jsonata, '/jsonata'),
  create(config, ctx) {
    const expr = jsonata(config.jsonata)
    return {
      async process(message: Message) {
        let result: unknown
        try {
          result = await expr.evaluate(message.body, { message })
        } catch (e) {
          const reason = `match expression failed: ${(e as Error).message}`
          if (config.onError === 'drop') {
            ctx.log.warn({ messageId: message.id, reason }, 'message dropped')
            return null
          }
          throw new PermanentError(reason, { cause: e })
        }
        return truthy(result) ? message : null
      },
    }
  },
})
