import jsonata from 'jsonata'
import { defineComponent, withBody, type Message } from '../../shared/component.ts'
import { PermanentError } from '../../shared/errors.ts'

export interface MapConfig {
  jsonata: string
  contentType?: string
}

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
}

function jsonataProblems(expr: string, pointer: string): Array<[string, string]> {
  try {
    jsonata(expr)
    return []
  } catch (e) {
    const err = e as { message?: string; position?: number }
    return [[pointer, `invalid JSONata expression${err.position !== undefined ? ` at position ${err.position}` : ''}: ${err.message ?? String(e)}`]]
  }
}

const isJsonType = (t: string) => /^application\/([\w.+-]*\+)?json\b/i.test(t)

/** JSONata results carry a hidden `sequence` flag on arrays; a plain JSON copy is what the store keeps. */
const plain = (v: unknown): unknown => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)))

export default defineComponent<'filter', MapConfig>({
  type: 'map', kind: 'filter',
  description: 'Transforms the message body with a JSONata expression.',
  configSchema,
  check: (config) => jsonataProblems(config.jsonata, '/jsonata'),
  create(config) {
    const expr = jsonata(config.jsonata)
    return {
      async process(message: Message) {
        let result: unknown
        try {
          result = await expr.evaluate(message.body, { message })
        } catch (e) {
          throw new PermanentError(`map expression failed: ${(e as Error).message}`, { cause: e })
        }
        if (result === undefined) throw new PermanentError('map expression produced no value (use the match filter to drop messages)')
        const contentType = config.contentType
          ?? (typeof result === 'string'
            ? (isJsonType(message.contentType) ? 'text/plain' : message.contentType)
            : (isJsonType(message.contentType) ? message.contentType : 'application/json'))
        return withBody(message, plain(result), contentType)
      },
    }
  },
})
