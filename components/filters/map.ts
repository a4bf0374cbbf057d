import { defineComponent, withBody, type Message, isJsonContentType, type ConfigOf } from '../../shared/component.ts'
import { PermanentError } from '../../shared/errors.ts'
import { jsonataProblems, messageExpression, plainJson } from '../../shared/jsonata.ts'

const configSchema = {
  type: 'object', additionalProperties: false, required: ['jsonata'],
  properties: {
    jsonata: {
      type: 'string', minLength: 1,
      description: 'JSONata expression evaluated against the message body; its result becomes the new body. `$message` is bound to the whole message (id, attributes, contentType…).',
      examples: ["{ 'resourceType': 'Patient', 'id': mrn }"],
    },
    contentType: {
      type: 'string', minLength: 1,
      description: 'Content type of the result. When absent: "application/json" for a structured result, the previous type for a string result from a text message, "text/plain" for a string result from a JSON message.',
      examples: ['application/fhir+json'],
    },
  },
} as const

export type MapConfig = ConfigOf<typeof configSchema>

/** A JSONata function value: a built-in or lambda is an object flagged so, a regex a JS function. */
function isFunctionValue(v: unknown): boolean {
  if (typeof v === 'function') return true
  if (typeof v !== 'object' || v === null) return false
  const f = v as { _jsonata_function?: unknown; _jsonata_lambda?: unknown }
  return f._jsonata_function === true || f._jsonata_lambda === true
}

/**
 * The result as the body to store. A function result (`$uppercase` without its call, `/abc/`) is not
 * data: stored, it would be JSONata's internal object or a bare TypeError/SyntaxError from the copy,
 * which the runtime would not classify. Both fail the message permanently, like a failed evaluation.
 */
function bodyOf(result: unknown): unknown {
  if (isFunctionValue(result)) throw new PermanentError('map expression produced a function (a JSONata function, lambda or regex), not a value; call it, e.g. $uppercase(name)')
  try {
    return plainJson(result)
  } catch (e) {
    throw new PermanentError(`map expression produced a value that is not JSON: ${(e as Error).message}`, { cause: e })
  }
}

export default defineComponent({
  type: 'map', kind: 'filter',
  description: 'Transforms the message body with a JSONata expression.',
  configSchema,
  check: (config) => jsonataProblems(config.jsonata, '/jsonata'),
  create(config) {
    const evaluate = messageExpression(config.jsonata, 'map expression')
    return {
      async process(message: Message) {
        const result = await evaluate(message)
        if (result === undefined) throw new PermanentError('map expression produced no value (use the match filter to drop messages)')
        const body = bodyOf(result)
        const contentType = config.contentType
          ?? (typeof result === 'string'
            ? (isJsonContentType(message.contentType) ? 'text/plain' : message.contentType)
            : (isJsonContentType(message.contentType) ? message.contentType : 'application/json'))
        return withBody(message, body, contentType)
      },
    }
  },
})
