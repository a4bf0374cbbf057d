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

/** The scalar value of a field (`body.mrn`) of the message; a missing or structured value is a permanent error. */
export function fieldValue(message: Message, field: string): string {
  let v: unknown = message
  for (const part of field.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined
  if (v === undefined || v === null || typeof v === 'object') throw new PermanentError(`template field "{${field}}" has no ${v && typeof v === 'object' ? 'scalar ' : ''}value in message ${message.id}`)
  return String(v)
}

/** Replaces each `{field}` of `template` by the message's value, passed through `encode` (URL-encoding, a safe file name…). */
export function renderTemplate(template: string, message: Message, encode: (value: string) => string = (v) => v): string {
  return template.replace(TEMPLATE_FIELD, (_, field: string) => encode(fieldValue(message, field)))
}
