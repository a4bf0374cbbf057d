import { defineComponent, withBody, type ConfigOf, type Message } from '../../shared/component.ts'
import { errorCodes } from '../../shared/errors.ts'
import { HL7_ER7_CONTENT_TYPE, parseEr7, serializeEr7, type Hl7Message } from '../../shared/hl7v2/index.ts'

const configSchema = {
  type: 'object', additionalProperties: false, required: ['to'],
  properties: {
    to: {
      enum: ['json', 'er7'],
      description: '"json" parses an ER7 (pipe-and-hat) body into the HL7 v2 JSON shape described in the README section "HL7 v2", content type application/json; "er7" writes that shape back as ER7, content type x-application/hl7-v2+er7.',
      examples: ['json'],
    },
  },
} as const

export type Hl7v2Config = ConfigOf<typeof configSchema>

function toJson(message: Message): Message {
  if (typeof message.body !== 'string') {
    throw new errorCodes.ERR_HL7_PARSE(`invalid HL7 v2 message: hl7v2 (to json) expects ER7 text, the body is ${describeBody(message.body)} (content type ${message.contentType})`)
  }
  return withBody(message, parseEr7(message.body), 'application/json')
}

function toEr7(message: Message): Message {
  if (typeof message.body !== 'object' || message.body === null || Array.isArray(message.body)) {
    throw new errorCodes.ERR_HL7_PARSE(`invalid HL7 v2 message: hl7v2 (to er7) expects the HL7 v2 JSON shape, the body is ${describeBody(message.body)} (content type ${message.contentType})`)
  }
  return withBody(message, serializeEr7(message.body as Hl7Message), HL7_ER7_CONTENT_TYPE)
}

function describeBody(body: unknown): string {
  return body === null ? 'null' : Array.isArray(body) ? 'an array' : typeof body === 'object' ? 'an object' : `a ${typeof body}`
}

export default defineComponent({
  type: 'hl7v2', kind: 'filter',
  description: 'Converts an HL7 v2 message between ER7 text and its JSON shape; a message that does not parse goes to error (ERR_HL7_PARSE, no retry).',
  configSchema,
  create(config) {
    const convert = config.to === 'json' ? toJson : toEr7
    return { process: convert }
  },
})
