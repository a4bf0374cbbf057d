import type { JsonSchema } from '../component.ts'

/** `{ "$env": "NAME" }`: the value of an environment variable. */
export const envRefSchema: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['$env'],
  properties: { $env: { type: 'string', minLength: 1, pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'Environment variable name.' } },
}

/** `{ "$file": "path" }`: a file's content (trailing whitespace trimmed), path relative to the channel file. */
export const fileRefSchema: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['$file'],
  properties: { $file: { type: 'string', minLength: 1, description: 'Path of a file, relative to the channel file.' } },
}

/**
 * Schema of a secret-bearing field: a literal string (warned about by `weir validate`) or a
 * reference `{ "$env": "NAME" }` / `{ "$file": "path" }`. The field is marked `writeOnly`, which is
 * what the loader resolves and what the logger redacts. After loading, the value is a `Secret`.
 */
export function secretSchema(description: string, extra: JsonSchema = {}): JsonSchema {
  return {
    description,
    writeOnly: true,
    anyOf: [{ type: 'string', minLength: 1 }, envRefSchema, fileRefSchema],
    ...extra,
  }
}
