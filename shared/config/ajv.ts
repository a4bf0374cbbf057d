import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { JsonSchema } from '../component.ts'

// ajv-formats is CommonJS; its default export arrives wrapped under ESM interop.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule) as unknown as (ajv: Ajv) => Ajv

/**
 * Instance paths of every `writeOnly` value met during the current validation. Validation is
 * synchronous, so a module-level collector is safe; `validateCollectingSecrets` sets and clears it.
 */
let secretCollector: string[] | null = null

/**
 * The project's ajv: strict, allErrors, useDefaults, formats, and no removeAdditional (a typo in a
 * key is an error, not silently dropped). `writeOnly` is re-registered as a keyword that records
 * where secrets are, so the loader can resolve `$env`/`$file` references exactly there.
 */
export function createAjv(): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: true, useDefaults: true, verbose: true, allowUnionTypes: true })
  addFormats(ajv)
  ajv.removeKeyword('writeOnly')
  ajv.addKeyword({
    keyword: 'writeOnly',
    schemaType: 'boolean',
    errors: false,
    validate(schemaValue: boolean, _data: unknown, _parentSchema: unknown, dataCxt?: { instancePath: string }) {
      if (schemaValue && secretCollector && dataCxt) secretCollector.push(dataCxt.instancePath)
      return true
    },
  })
  return ajv
}

let shared: Ajv | undefined
/** One ajv for the process: compiled schemas are cached by object identity. */
export function sharedAjv(): Ajv {
  shared ??= createAjv()
  return shared
}

const compiled = new WeakMap<object, ValidateFunction>()
export function compileSchema(schema: JsonSchema): ValidateFunction {
  let fn = compiled.get(schema)
  if (!fn) {
    fn = sharedAjv().compile(schema)
    compiled.set(schema, fn)
  }
  return fn
}

export interface ValidationOutcome {
  valid: boolean
  errors: ErrorObject[]
  /** Instance paths (JSON pointers inside `data`) of writeOnly values. */
  secretPaths: string[]
}

/** Validates (and defaults, in place) `data`, collecting where its secrets are. */
export function validateCollectingSecrets(validate: ValidateFunction, data: unknown): ValidationOutcome {
  const paths: string[] = []
  secretCollector = paths
  try {
    const valid = validate(data) as boolean
    return { valid, errors: validate.errors ? [...validate.errors] : [], secretPaths: [...new Set(paths)] }
  } finally {
    secretCollector = null
  }
}
