import { errorCodes, type WeirError } from '../errors.ts'

// The HTTP-level parts, re-exported: shared/oauth builds on shared/http, never the other way round.
export { OAuthChallengeError, parseWwwAuthenticate, type Challenge } from '../http/challenge.ts'
export { redactedExcerpt } from '../http/excerpt.ts'

/** OAuth `error` codes after which retrying the same request cannot help: the credential is marked broken. */
export const TERMINAL_OAUTH_ERRORS = new Set([
  'invalid_client', 'unauthorized_client', 'invalid_scope', 'invalid_grant', 'unsupported_grant_type', 'invalid_target', 'access_denied',
])

/**
 * The token endpoint answered with an OAuth error body (RFC 6749 §5.2), possibly with status 200.
 * `error`, `error_description` and `error_uri` are the provider's own values; the response is non-enumerable.
 */
export class OAuthResponseError extends errorCodes.ERR_OAUTH_RESPONSE {
  status: number
  error: string
  error_description?: string
  error_uri?: string
  declare response: { status: number; headers: Record<string, string>; excerpt: string }
  constructor(message: string, fields: { status: number; error: string; error_description?: string; error_uri?: string; retryable?: boolean; retryAfterMs?: number; headers?: Record<string, string>; excerpt?: string }) {
    super(message, { retryable: fields.retryable ?? false, ...(fields.retryAfterMs !== undefined ? { retryAfterMs: fields.retryAfterMs } : {}) })
    this.status = fields.status
    this.error = fields.error
    if (fields.error_description !== undefined) this.error_description = fields.error_description
    if (fields.error_uri !== undefined) this.error_uri = fields.error_uri
    Object.defineProperty(this, 'response', { enumerable: false, value: { status: fields.status, headers: fields.headers ?? {}, excerpt: fields.excerpt ?? '' } })
  }
}

/**
 * The credential is broken (terminal error) and calls fail fast without contacting the endpoint.
 * Retryable, `retryAfterMs` the time left: a delivery waits for the credential (an operator fixing
 * its secret) instead of going to error, and comes back no sooner than the next token request.
 */
export class FailFastError extends errorCodes.ERR_OAUTH_FAIL_FAST {
  error?: string
  error_description?: string
  error_uri?: string
  /** Epoch ms after which the next call contacts the token endpoint again. */
  retryAt: number
  constructor(credential: string, cause: WeirError, retryAt: number, now = Date.now()) {
    super(`credential "${credential}" is failing: ${cause.message} (no new token request before ${new Date(retryAt).toISOString()})`, { cause, retryAfterMs: Math.max(0, retryAt - now) })
    const c = cause as Partial<OAuthResponseError>
    if (c.error) this.error = c.error
    if (c.error_description) this.error_description = c.error_description
    if (c.error_uri) this.error_uri = c.error_uri
    this.retryAt = retryAt
  }
}

/** A refresh token was rejected (invalid_grant) and no other holder had rotated it: a person must consent again. */
export class ReauthRequiredError extends errorCodes.ERR_OAUTH_REAUTH_REQUIRED {
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
