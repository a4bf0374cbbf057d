import { scrubSecrets } from '../secret.ts'

// A body cut short (size limit, reset connection) may end inside a token: a JWT with one dot, a
// field value without its closing quote. Both are still redacted.
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?/g
const TOKEN_FIELDS = /("(?:access_token|refresh_token|id_token|assertion|client_secret|client_assertion)"\s*:\s*)"[^"]*"?/g

// C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides: a terminal acts on
// them (escape sequences, a rewritten line, text shown in another order) instead of showing them.
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
const CONTROL_BUT_LINES = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

const escapeOne = (c: string) => {
  const n = c.charCodeAt(0)
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`
}

/**
 * `text` with every control character shown as an escape (`\x1b`, `\u202e`), so printing it cannot
 * drive the terminal. `lines: true` keeps newlines and tabs (a carriage return becomes a newline:
 * HL7 v2 separates segments with it).
 */
export function escapeControl(text: string, options: { lines?: boolean } = {}): string {
  if (!options.lines) return text.replace(CONTROL, escapeOne)
  return text.replace(/\r\n?/g, '\n').replace(CONTROL_BUT_LINES, escapeOne)
}

/** Text from a remote server (an error code, a description, an issuer) as it may be printed or logged: one line, controls escaped, cut at `max`. */
export function remoteText(text: string, max = 200): string {
  const line = escapeControl(text.replace(/[\r\n\t]+/g, ' '))
  return line.length > max ? line.slice(0, max) + '…' : line
}

/** A short excerpt of a response body safe to put in an error: token fields, JWTs and known secrets removed, controls escaped. */
export function redactedExcerpt(body: string, max = 200): string {
  const cleaned = scrubSecrets(body).replace(TOKEN_FIELDS, '$1"[REDACTED]"').replace(JWT_LIKE, '[REDACTED]').replace(/\s+/g, ' ').trim()
  return remoteText(cleaned, max)
}
