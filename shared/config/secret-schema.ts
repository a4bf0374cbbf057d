import type { JsonSchema } from '../component.ts'

/** `{ "$env": "NAME" }`: the value of an environment variable. */
export const envRefSchema = {
  type: 'object', additionalProperties: false, required: ['$env'],
  properties: { $env: { type: 'string', minLength: 1, pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'Environment variable name.' } },
} as const

/** `{ "$file": "path" }`: a file's content (trailing whitespace trimmed), path relative to the channel file. */
export const fileRefSchema = {
  type: 'object', additionalProperties: false, required: ['$file'],
  properties: { $file: { type: 'string', minLength: 1, description: 'Path of a file, relative to the channel file.' } },
} as const

/**
 * Schema of a secret-bearing field: a literal string (warned about by `weir validate`) or a
 * reference `{ "$env": "NAME" }` / `{ "$file": "path" }`. The field is marked `writeOnly`, which is
 * what the loader resolves and what the logger redacts. After loading, the value is a `Secret`,
 * and a component's config type says so (`ConfigOf` maps `writeOnly` fields to `Secret`).
 */
export function secretSchema<const E extends JsonSchema = {}>(description: string, extra?: E) {
  return {
    description,
    writeOnly: true,
    anyOf: [{ type: 'string', minLength: 1 }, envRefSchema, fileRefSchema],
    ...(extra as E),
  } as const
}
