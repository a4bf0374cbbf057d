import { scrubSecrets } from '../secret.ts'

// A body cut short (size limit, reset connection) may end inside a token: a JWT with one dot, a
// field value without its closing quote. Both are still redacted.
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?/g
const TOKEN_FIELDS = /("(?:access_token|refresh_token|id_token|assertion|client_secret|client_assertion)"\s*:\s*)"[^"]*"?/g

/** A short excerpt of a response body safe to put in an error: token fields, JWTs and known secrets removed. */
export function redactedExcerpt(body: string, max = 200): string {
  const cleaned = scrubSecrets(body).replace(TOKEN_FIELDS, '$1"[REDACTED]"').replace(JWT_LIKE, '[REDACTED]').replace(/\s+/g, ' ').trim()
  return cleaned.length > max ? cleaned.slice(0, max) + '…' : cleaned
}
