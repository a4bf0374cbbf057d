import { WeirError, type ErrorCode } from '../errors.ts'
import { scrubSecrets } from '../secret.ts'

/** OAuth `error` codes after which retrying the same request cannot help: the credential is marked broken. */
export const TERMINAL_OAUTH_ERRORS = new Set([
  'invalid_client', 'unauthorized_client', 'invalid_scope', 'invalid_grant', 'unsupported_grant_type', 'invalid_target', 'access_denied',
])

/**
 * The token endpoint answered with an OAuth error body (RFC 6749 §5.2), possibly with status 200.
 * `error`, `error_description` and `error_uri` are the provider's own values; the response is non-enumerable.
 */
export class OAuthResponseError extends WeirError {
  override code: ErrorCode = 'ERR_OAUTH_RESPONSE'
  status: number
  error: string
  error_description?: string
  error_uri?: string
  declare response: { status: number; headers: Record<string, string>; excerpt: string }
  constructor(message: string, fields: { status: number; error: string; error_description?: string; error_uri?: string; retryable?: boolean; retryAfterMs?: number; headers?: Record<string, string>; excerpt?: string }) {
    super(message)
    this.status = fields.status
    this.error = fields.error
    if (fields.error_description !== undefined) this.error_description = fields.error_description
    if (fields.error_uri !== undefined) this.error_uri = fields.error_uri
    this.retryable = fields.retryable ?? false
    if (fields.retryAfterMs !== undefined) this.retryAfterMs = fields.retryAfterMs
    Object.defineProperty(this, 'response', { enumerable: false, value: { status: fields.status, headers: fields.headers ?? {}, excerpt: fields.excerpt ?? '' } })
  }
}

/** A 401 whose only explanation is a `WWW-Authenticate` challenge (oauth4webapi `WWWAuthenticateChallengeError`). */
export class OAuthChallengeError extends WeirError {
  override code: ErrorCode = 'ERR_OAUTH_CHALLENGE'
  status: number
  scheme: string
  error?: string
  error_description?: string
  parameters: Record<string, string>
  constructor(message: string, status: number, challenge: Challenge) {
    super(message)
    this.status = status
    this.scheme = challenge.scheme
    this.parameters = challenge.parameters
    if (challenge.parameters.error) this.error = challenge.parameters.error
    if (challenge.parameters.error_description) this.error_description = challenge.parameters.error_description
  }
}

/** The credential is broken (terminal error) and calls fail fast without contacting the endpoint. */
export class FailFastError extends WeirError {
  override code: ErrorCode = 'ERR_OAUTH_FAIL_FAST'
  error?: string
  error_description?: string
  error_uri?: string
  /** Epoch ms after which the next call contacts the token endpoint again. */
  retryAt: number
  constructor(credential: string, cause: WeirError, retryAt: number) {
    super(`credential "${credential}" is failing: ${cause.message} (no new token request before ${new Date(retryAt).toISOString()})`, { cause })
    const c = cause as Partial<OAuthResponseError>
    if (c.error) this.error = c.error
    if (c.error_description) this.error_description = c.error_description
    if (c.error_uri) this.error_uri = c.error_uri
    this.retryAt = retryAt
  }
}

/** A refresh token was rejected (invalid_grant) and no other holder had rotated it: a person must consent again. */
export class ReauthRequiredError extends WeirError {
  override code: ErrorCode = 'ERR_OAUTH_REAUTH_REQUIRED'
  override userError = true
  error?: string
  error_description?: string
  error_uri?: string
  constructor(message: string, cause?: OAuthResponseError) {
    super(message, cause ? { cause } : undefined)
    if (cause) {
      this.error = cause.error
      if (cause.error_description) this.error_description = cause.error_description
      if (cause.error_uri) this.error_uri = cause.error_uri
    }
  }
}

export interface Challenge {
  scheme: string
  parameters: Record<string, string>
}

/** Parses `WWW-Authenticate` (RFC 9110 §11.6.1) into challenges with lower-cased parameter names. */
export function parseWwwAuthenticate(header: string | string[] | null | undefined): Challenge[] {
  if (!header) return []
  const text = Array.isArray(header) ? header.join(', ') : header
  const out: Challenge[] = []
  const token = /[A-Za-z0-9!#$%&'*+.^_`|~-]+/y
  let current: Challenge | undefined
  let i = 0
  while (i < text.length) {
    while (i < text.length && /[\s,]/.test(text[i]!)) i++
    token.lastIndex = i
    const t = token.exec(text)
    if (!t) { i++; continue }
    i = token.lastIndex
    let j = i
    while (j < text.length && text[j] === ' ') j++
    if (text[j] === '=' && current) {
      i = j + 1
      while (i < text.length && text[i] === ' ') i++
      let value = ''
      if (text[i] === '"') {
        i++
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\') i++
          value += text[i] ?? ''
          i++
        }
        i++
      } else {
        while (i < text.length && !/[\s,]/.test(text[i]!)) value += text[i++]
      }
      current.parameters[t[0].toLowerCase()] = value
    } else {
      current = { scheme: t[0], parameters: {} }
      out.push(current)
    }
  }
  return out
}

// A body cut short (size limit, reset connection) may end inside a token: a JWT with one dot, a
// field value without its closing quote. Both are still redacted.
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?/g
const TOKEN_FIELDS = /("(?:access_token|refresh_token|id_token|assertion|client_secret|client_assertion)"\s*:\s*)"[^"]*"?/g

/** A short excerpt of a response body safe to put in an error: token fields, JWTs and known secrets removed. */
export function redactedExcerpt(body: string, max = 200): string {
  const cleaned = scrubSecrets(body).replace(TOKEN_FIELDS, '$1"[REDACTED]"').replace(JWT_LIKE, '[REDACTED]').replace(/\s+/g, ' ').trim()
  return cleaned.length > max ? cleaned.slice(0, max) + '…' : cleaned
}
