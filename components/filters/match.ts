import { defineComponent, type Message, type ConfigOf } from '../../shared/component.ts'
import { jsonataProblems, messageExpression } from '../../shared/jsonata.ts'

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
} as const

export type MatchConfig = ConfigOf<typeof configSchema>

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

export default defineComponent({
  type: 'match', kind: 'filter',
  description: 'Keeps the messages for which a JSONata predicate is true and drops (filters) the others.',
  configSchema,
  check: (config) => jsonataProblems(config.jsonata, '/jsonata'),
  create(config, ctx) {
    const evaluate = messageExpression(config.jsonata, 'match expression')
    return {
      async process(message: Message) {
        let result: unknown
        try {
          result = await evaluate(message)
        } catch (e) {
          if (config.onError !== 'drop') throw e
          ctx.log.warn({ messageId: message.id, reason: (e as Error).message }, 'message dropped')
          return null
        }
        return truthy(result) ? message : null
      },
    }
  },
})
