import type { Message } from './component.ts'
import { PermanentError } from './errors.ts'

/** A `{field}` in a template: `id`, `body.mrn`, `attributes.date`… */
export const TEMPLATE_FIELD = /\{([^{}]*)\}/g
const ROOTS = new Set(['id', 'channel', 'contentType', 'receivedAt', 'body', 'attributes'])

/**
 * Problems of a `{field}` template, as check() pairs: unknown field roots and, with `balanced`,
 * a `{` or `}` outside a field.
 */
export function templateProblems(template: string, pointer: string, options: { balanced?: boolean } = {}): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const [, field] of template.matchAll(TEMPLATE_FIELD)) {
    if (!ROOTS.has(field!.split('.')[0]!)) out.push([pointer, `unknown template field "{${field}}"; fields start with ${[...ROOTS].join(', ')}`])
  }
  if (options.balanced && /[{}]/.test(template.replace(TEMPLATE_FIELD, ''))) out.push([pointer, 'unbalanced "{" or "}" in template'])
  return out
}

/** The value at a split field path (`['body', 'mrn']`) of the message, or undefined. */
function lookup(message: Message, path: readonly string[]): unknown {
  let v: unknown = message
  for (const key of path) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined
  return v
}

function scalar(message: Message, field: string, v: unknown): string {
  if (v === undefined || v === null || typeof v === 'object') throw new PermanentError(`template field "{${field}}" has no ${v && typeof v === 'object' ? 'scalar ' : ''}value in message ${message.id}`)
  return String(v)
}

/** The scalar value of a field (`body.mrn`) of the message; a missing or structured value is a permanent error. */
export function fieldValue(message: Message, field: string): string {
  return scalar(message, field, lookup(message, field.split('.')))
}

/** True when the template has a `{field}` (a template without one renders to itself). */
export const hasTemplateField = (template: string): boolean => /\{[^{}]*\}/.test(template)

/**
 * A `{field}` template split once into literals and field paths, for templates rendered per message.
 * The render function replaces each field by the message's value, passed through `encode`
 * (URL-encoding, a safe file name…).
 */
export function compileTemplate(template: string): (message: Message, encode?: (value: string) => string) => string {
  const parts = template.split(/\{([^{}]*)\}/).map((part, i) => (i % 2 === 0 ? part : { field: part, path: part.split('.') }))
  return (message, encode) => {
    let out = ''
    for (const part of parts) {
      if (typeof part === 'string') out += part
      else {
        const value = scalar(message, part.field, lookup(message, part.path))
        out += encode ? encode(value) : value
      }
    }
    return out
  }
}
