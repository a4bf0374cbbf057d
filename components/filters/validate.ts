import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { Ajv, type AnySchema, type ErrorObject, type ValidateFunction } from 'ajv'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'
import { defineComponent, type Message, type ConfigOf } from '../../shared/component.ts'
import { ConfigError, errorCodes } from '../../shared/errors.ts'

// ajv-formats is CommonJS; its default export arrives wrapped under ESM interop.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv

const configSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    schema: {
      type: 'object',
      description: 'JSON Schema the message body must satisfy (draft-07 by default; draft 2019-09 and 2020-12 when `$schema` says so). Give this or `schemaFile`.',
      examples: [{ type: 'object', required: ['mrn'], properties: { mrn: { type: 'string' } } }],
    },
    schemaFile: {
      type: 'string', minLength: 1,
      description: 'Path of a JSON Schema file, relative to the channel file. Give this or `schema`.',
      examples: ['schemas/patient.schema.json'],
    },
    onInvalid: {
      enum: ['error', 'drop'], default: 'error',
      description: 'What happens to an invalid message: "error" puts it in error state with the schema errors as the reason; "drop" filters it out and logs the schema errors.',
    },
    maxErrors: {
      type: 'integer', minimum: 1, default: 10,
      description: 'Most schema errors quoted in the error reason.',
    },
  },
} as const

export type ValidateConfig = ConfigOf<typeof configSchema>

function newAjv(schema: Record<string, unknown>): Ajv {
  const draft = String(schema.$schema ?? '')
  // User schemas come from elsewhere (FHIR, vendors): unknown keywords are tolerated, not fatal.
  const options = { allErrors: true, strict: false }
  const ajv = draft.includes('2020-12') ? new Ajv2020(options) : draft.includes('2019-09') ? new Ajv2019(options) : new Ajv(options)
  addFormats(ajv as Ajv)
  return ajv as Ajv
}

function compile(schema: Record<string, unknown>): ValidateFunction {
  return newAjv(schema).compile(schema as AnySchema)
}

/** One line per schema error: `/path must …`, the way ajv's errorsText does, with `/` for the root. */
export function describeErrors(errors: readonly ErrorObject[], max: number): string {
  const parts = errors.slice(0, max).map((e) => {
    const extra = e.keyword === 'additionalProperties' ? ` "${String((e.params as { additionalProperty: string }).additionalProperty)}"` : ''
    return `${e.instancePath || '/'} ${e.message ?? e.keyword}${extra}`
  })
  if (errors.length > max) parts.push(`and ${errors.length - max} more`)
  return parts.join('; ')
}

/**
 * The compiled schema of a config (`schema`, or `schemaFile` relative to the channel file), or what
 * is wrong with it: `check` reports that at the setting's JSON pointer, before anything starts.
 */
function schemaOf(config: { schema?: unknown; schemaFile?: string | undefined }, channelDir: string): { validate: ValidateFunction } | { problem: string } {
  let schema: Record<string, unknown>
  if (config.schemaFile) {
    try {
      schema = JSON.parse(readFileSync(resolve(channelDir, config.schemaFile), 'utf8')) as Record<string, unknown>
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      return { problem: code === 'ENOENT' ? `schema file not found: ${resolve(channelDir, config.schemaFile)}` : `cannot read schema file: ${code ?? (e as Error).message}` }
    }
  } else {
    schema = structuredClone(config.schema) as Record<string, unknown>
  }
  try {
    return { validate: compile(schema) }
  } catch (e) {
    return { problem: `invalid JSON Schema: ${(e as Error).message}` }
  }
}

export default defineComponent({
  type: 'validate', kind: 'filter',
  description: 'Checks the message body against a JSON Schema (ajv); an invalid message goes to error state with the schema errors, or is dropped.',
  configSchema,
  check(config, { channelDir }) {
    if (config.schema && config.schemaFile) return [['', 'give either "schema" or "schemaFile", not both']]
    if (!config.schema && !config.schemaFile) return [['', 'must have "schema" or "schemaFile"']]
    const got = schemaOf(config, channelDir)
    return 'problem' in got ? [[config.schemaFile ? '/schemaFile' : '/schema', got.problem]] : []
  },
  create(config, ctx) {
    const got = schemaOf(config, ctx.channelDir)
    if ('problem' in got) throw new ConfigError([{ file: config.schemaFile ? resolve(ctx.channelDir, config.schemaFile) : ctx.channelDir, pointer: '', message: got.problem }])
    const validate = got.validate
    return {
      process(message: Message) {
        if (validate(message.body)) return message
        const errors = [...(validate.errors ?? [])]
        const reason = `message does not match the schema: ${describeErrors(errors, config.maxErrors)}`
        if (config.onInvalid === 'drop') {
          ctx.log.warn({ messageId: message.id, reason }, 'invalid message dropped')
          return null
        }
        const err = new errorCodes.ERR_MESSAGE_INVALID(reason)
        Object.defineProperty(err, 'schemaErrors', { value: errors, enumerable: false })
        throw err
      },
    }
  },
})
