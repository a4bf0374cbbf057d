import { REDACTED, scrubSecrets } from '../shared/secret.ts'
import { redactedExcerpt } from '../shared/http/excerpt.ts'
import type { MessageDetail, MessageStore, StoredMessage } from '../shared/store/types.ts'

const SENSITIVE = /authorization|cookie|token|secret|password|passwd|assertion|api[-_]?key|private[-_]?key|dpop/i

/** A JWT (JWS, JWE) wherever it stands, cut short too: a bearer token or an assertion, which the view never shows. */
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){1,4}/g

/**
 * A credential after its HTTP authentication scheme (RFC 9110 §11.4: `Bearer`, `DPoP`, `Basic`, a
 * token68), as an Authorization header carries it, whatever header or text holds it. Not an auth-param
 * (`Bearer realm="x"`). The credential is 8 characters or more and not a word (it has a character
 * other than a letter, or is 20 long or more): "Bearer token expired" is text, not a credential.
 */
const SCHEME_CREDENTIAL = /\b(Bearer|DPoP|Basic)( +)([A-Za-z0-9\-._~+/]{8,}(?:=+(?![\w\-.~+/="])|(?![\w\-.~+/=])))/gi
const credentialLike = (c: string) => c.length >= 20 || /[^A-Za-z=]/.test(c)

/**
 * Text of a stored message as the view shows it (a body, an attribute, an error): registered secret
 * values, JWTs and the credential after an auth scheme (`Bearer [REDACTED]`) become [REDACTED]. The
 * process showing a message (`weir messages`, another engine's dashboard) does not know the tokens
 * the engine that stored it held, so a token is recognised by shape: a JWT anywhere, an opaque token
 * after its scheme.
 */
export function scrubShown(text: string): string {
  return scrubSecrets(text).replace(JWT_LIKE, REDACTED)
    .replace(SCHEME_CREDENTIAL, (all, scheme: string, space: string, credential: string) => (credentialLike(credential) ? `${scheme}${space}${REDACTED}` : all))
}

/** Values under credential-like keys become [REDACTED]; registered secret values and JWTs are scrubbed from the rest. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubShown(value)
  if (depth > 20 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1))
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SENSITIVE.test(k) ? REDACTED : redact(v, depth + 1)]))
}

/** Excerpts are redacted when stored; again here for those an older weir stored (token fields, JWTs). */
export const excerpt = (text: string) => redactedExcerpt(scrubShown(text), 500)

export const iso = (t: number | undefined) => (t === undefined ? '-' : new Date(t).toISOString())

/**
 * A stored message as people see it (`weir messages show`, the dashboard): body, attributes,
 * errors, deliveries and attempts redacted, times as ISO dates.
 */
export function shownMessage(d: MessageDetail) {
  const m = d.message
  return {
    id: m.id, channel: m.channel, status: m.status, receivedAt: iso(m.receivedAt), updatedAt: iso(m.updatedAt),
    ...(m.error ? { error: scrubShown(m.error) } : {}),
    ...filterRetryShown(m),
    ...(m.filteredBy ? { filteredBy: scrubShown(m.filteredBy) } : {}),
    contentType: m.contentType,
    attributes: redact(m.attributes),
    body: redact(m.body),
    deliveries: d.deliveries.map((delivery) => {
      const { budgetAttempts: _attempts, budgetSince: _since, ...x } = delivery
      return redact({
        ...x, ...(x.responseExcerpt !== undefined ? { responseExcerpt: excerpt(x.responseExcerpt) } : {}), firstAttemptAt: iso(x.firstAttemptAt),
        lastAttemptAt: iso(x.lastAttemptAt), nextAttemptAt: x.nextAttemptAt === undefined ? undefined : iso(x.nextAttemptAt), ...budgetSpent(delivery),
      })
    }),
    attempts: d.attempts.map((a) => redact({ ...a, ...(a.excerpt !== undefined ? { excerpt: excerpt(a.excerpt) } : {}), startedAt: iso(a.startedAt), endedAt: iso(a.endedAt) })),
  }
}

/**
 * What a delivery waiting for its retry has spent of its retry budget, as the engine counts it
 * (`retry.maxAttempts`, `retry.maxElapsedMs`): the stored baseline (budgetAttempts, budgetSince) is
 * bookkeeping, not an event, so it is shown as what it means.
 */
function budgetSpent(x: MessageDetail['deliveries'][number]): { budgetSpent?: { attempts: number; elapsedMs?: number } } {
  if (x.status !== 'retrying' && x.budgetAttempts === undefined) return {}
  const since = x.budgetSince ?? x.firstAttemptAt
  const elapsedMs = x.nextAttemptAt !== undefined && since !== undefined ? Math.max(0, x.nextAttemptAt - since) : undefined
  return { budgetSpent: { attempts: Math.max(0, x.attempts - (x.budgetAttempts ?? 0)), ...(elapsedMs !== undefined ? { elapsedMs } : {}) } }
}

/**
 * The retry of a message's filters that the engine scheduled (a filter failed retryably), shown as a
 * delivery's: `budgetSpent`, the part of the retry budget spent by the next attempt (`attempts`
 * toward `maxAttempts`, `elapsedMs` toward `maxElapsedMs`), and when that attempt is due.
 */
function filterRetryShown(m: StoredMessage): { filterRetry?: { budgetSpent: { attempts: number; elapsedMs: number }; nextAttemptAt: string } } {
  const r = m.filterRetry
  return r ? { filterRetry: { budgetSpent: { attempts: r.charged, elapsedMs: r.elapsedMs }, nextAttemptAt: iso(r.nextAttemptAt) } } : {}
}

/**
 * The error to show beside each message listed: why it is in error, or for one being retried the
 * last error of its latest failed attempt, after the destination's name (one read for the retrying
 * messages of the page, by their ids; a store that cannot tell shows none).
 */
export async function shownErrors(store: MessageStore, list: readonly StoredMessage[]): Promise<Map<StoredMessage, string>> {
  const shown = new Map<StoredMessage, string>()
  for (const m of list) if (m.error) shown.set(m, m.error)
  const retrying = list.filter((m) => !m.error && m.status === 'retrying')
  if (retrying.length === 0 || !store.latestErrors) return shown
  const latest = new Map((await store.latestErrors(retrying.map((m) => m.id))).map((e) => [e.id, e]))
  for (const m of retrying) {
    const e = latest.get(m.id)
    if (e) shown.set(m, `${e.destination}: ${e.error}`)
  }
  return shown
}
