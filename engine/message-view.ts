import { REDACTED, scrubSecrets } from '../shared/secret.ts'
import { redactedExcerpt } from '../shared/http/excerpt.ts'
import type { MessageDetail } from '../shared/store/types.ts'

const SENSITIVE = /authorization|cookie|token|secret|password|passwd|assertion|api[-_]?key|private[-_]?key|dpop/i

/** Values under credential-like keys become [REDACTED]; registered secret values are scrubbed from the rest. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubSecrets(value)
  if (depth > 20 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1))
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SENSITIVE.test(k) ? REDACTED : redact(v, depth + 1)]))
}

/** Excerpts are redacted when stored; again here for those an older weir stored (token fields, JWTs). */
export const excerpt = (text: string) => redactedExcerpt(text, 500)

export const iso = (t: number | undefined) => (t === undefined ? '-' : new Date(t).toISOString())

/**
 * A stored message as people see it (`weir messages show`, the dashboard): body, attributes,
 * errors, deliveries and attempts redacted, times as ISO dates.
 */
export function shownMessage(d: MessageDetail) {
  const m = d.message
  return {
    id: m.id, channel: m.channel, status: m.status, receivedAt: iso(m.receivedAt), updatedAt: iso(m.updatedAt),
    ...(m.error ? { error: scrubSecrets(m.error) } : {}),
    contentType: m.contentType,
    attributes: redact(m.attributes),
    body: redact(m.body),
    deliveries: d.deliveries.map((x) => redact({ ...x, ...(x.responseExcerpt !== undefined ? { responseExcerpt: excerpt(x.responseExcerpt) } : {}), firstAttemptAt: iso(x.firstAttemptAt), lastAttemptAt: iso(x.lastAttemptAt), nextAttemptAt: x.nextAttemptAt === undefined ? undefined : iso(x.nextAttemptAt) })),
    attempts: d.attempts.map((a) => redact({ ...a, ...(a.excerpt !== undefined ? { excerpt: excerpt(a.excerpt) } : {}), startedAt: iso(a.startedAt), endedAt: iso(a.endedAt) })),
  }
}
