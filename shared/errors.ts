import type { ErrorObject } from 'ajv'

/** Stable error codes. Branch on `code`, never on `instanceof` (a duplicated package copy breaks it). */
export type ErrorCode =
  | 'ERR_CONFIG_INVALID'
  | 'ERR_COMPONENT_INVALID'
  | 'ERR_COMPONENT_UNKNOWN'
  | 'ERR_SECRET_UNRESOLVED'
  | 'ERR_OAUTH_RESPONSE'
  | 'ERR_OAUTH_REQUEST'
  | 'ERR_OAUTH_CHALLENGE'
  | 'ERR_OAUTH_FAIL_FAST'
  | 'ERR_OAUTH_REAUTH_REQUIRED'
  | 'ERR_HTTP_STATUS'
  | 'ERR_HTTP_NETWORK'
  | 'ERR_HTTP_TIMEOUT'
  | 'ERR_SCHEDULE_INVALID'
  | 'ERR_BACKPRESSURE'
  | 'ERR_DELIVERY_PERMANENT'
  | 'ERR_MESSAGE_INVALID'
  | 'ERR_STORE'
  | 'ERR_SHUTDOWN'

export const ERROR_CODES: readonly ErrorCode[] = [
  'ERR_CONFIG_INVALID', 'ERR_COMPONENT_INVALID', 'ERR_COMPONENT_UNKNOWN', 'ERR_SECRET_UNRESOLVED',
  'ERR_OAUTH_RESPONSE', 'ERR_OAUTH_REQUEST', 'ERR_OAUTH_CHALLENGE', 'ERR_OAUTH_FAIL_FAST', 'ERR_OAUTH_REAUTH_REQUIRED',
  'ERR_HTTP_STATUS', 'ERR_HTTP_NETWORK', 'ERR_HTTP_TIMEOUT', 'ERR_SCHEDULE_INVALID', 'ERR_BACKPRESSURE',
  'ERR_DELIVERY_PERMANENT', 'ERR_MESSAGE_INVALID', 'ERR_STORE', 'ERR_SHUTDOWN',
]

export class WeirError extends Error {
  code: ErrorCode | 'ERR_WEIR' = 'ERR_WEIR'
  /** True when the same operation may succeed later (network, 429, 5xx, outages). */
  retryable = false
  /** Server-requested delay (Retry-After), when there was one. */
  retryAfterMs?: number
  /** Errors a user caused (bad config, bad input): the CLI prints them without a stack. */
  userError = false
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = this.constructor.name
  }
}

/** An error the user caused that has no class of its own (a bad flag, key or credential): the CLI prints it without a stack. */
export function userError(message: string, code: ErrorCode | 'ERR_WEIR' = 'ERR_WEIR'): WeirError {
  const e = new WeirError(message)
  e.code = code
  e.userError = true
  return e
}

/** One problem found in a channel file, located by file and JSON pointer. */
export interface ConfigProblem {
  file: string
  pointer: string
  message: string
  /** Set when the problem has its own code (e.g. ERR_COMPONENT_INVALID for a broken module). */
  code?: string
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}#${p.pointer}: ${p.message}`
}

export class ConfigError extends WeirError {
  override code = 'ERR_CONFIG_INVALID' as const
  override userError = true
  problems: ConfigProblem[]
  /** Raw ajv errors, when the problems came from schema validation. Non-enumerable: they quote the data, which may hold a secret. */
  declare readonly errors: ErrorObject[]
  constructor(problems: ConfigProblem[], errors: ErrorObject[] = []) {
    super(problems.map(formatProblem).join('\n'))
    this.problems = problems
    Object.defineProperty(this, 'errors', { value: errors, enumerable: false })
  }
}

export class ComponentError extends WeirError {
  override code: 'ERR_COMPONENT_INVALID' | 'ERR_COMPONENT_UNKNOWN' = 'ERR_COMPONENT_INVALID'
  override userError = true
  constructor(message: string, code: 'ERR_COMPONENT_INVALID' | 'ERR_COMPONENT_UNKNOWN' = 'ERR_COMPONENT_INVALID', options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

export class ScheduleError extends WeirError {
  override code = 'ERR_SCHEDULE_INVALID' as const
  override userError = true
}

/** A failure that may succeed later; carries the server's Retry-After when known. */
export class RetryableError extends WeirError {
  override retryable = true
  constructor(message: string, options?: { cause?: unknown; retryAfterMs?: number; code?: ErrorCode }) {
    super(message, options)
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs
    if (options?.code) this.code = options.code
  }
}

/** A failure that will not succeed by retrying (most 4xx, invalid_client, invalid_grant). */
export class PermanentError extends WeirError {
  override code: ErrorCode | 'ERR_WEIR' = 'ERR_DELIVERY_PERMANENT'
  constructor(message: string, options?: { cause?: unknown; code?: ErrorCode }) {
    super(message, options)
    if (options?.code) this.code = options.code
  }
}

export function isWeirError(e: unknown): e is WeirError {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string' && (e as { code: string }).code.startsWith('ERR_')
}

/** Parses an HTTP Retry-After header (delta-seconds or HTTP-date) into milliseconds. */
export function parseRetryAfter(value: string | string[] | null | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value
  if (v == null || v === '') return undefined
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000
  const t = Date.parse(v)
  if (Number.isNaN(t)) return undefined
  return Math.max(0, t - now)
}
