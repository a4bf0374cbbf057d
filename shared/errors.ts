import type { ErrorObject } from 'ajv'
import { isRetryableStatus } from './http/status.ts'

/** What every error code documents about itself; the README's error table is generated from these entries. */
export interface ErrorSpec {
  /** One line for the README table: when the error happens and what its extra properties hold. */
  description: string
  /** Whether the same operation may succeed later; `'varies'` when each throw site says (then its constructor requires `retryable`). */
  retryable: boolean | 'varies'
  /** A problem the user caused (bad config, bad flag): the CLI prints it without a stack. */
  userError?: boolean
  /**
   * A failure of a credential (a client or refresh token the token endpoint refuses, a token the API
   * rejects): every message would fail alike, so a delivery retries it, with backoff and the
   * destination's circuit breaker, whatever `retryable` says of the operation itself (whether a token
   * request is worth sending again at once). See `isCredentialOutage`.
   */
  credentialOutage?: boolean
  /** The HTTP status Weir answers with when this error ends an inbound request. */
  statusCode?: number
  /** A message template; without one the class takes the message as its first argument. No default parameters (its arity is counted). */
  message?: (...args: never[]) => string
}

/** Options every Weir error takes. Wrap, don't replace: pass the original error as `cause`. */
export interface WeirErrorOptions {
  cause?: unknown
  /** Server-requested delay (Retry-After), when there was one. */
  retryAfterMs?: number
  /** `ERR_BACKPRESSURE`: the limit reached, the channel's queue (`queueLimit`) or the store's size (`maxStoreBytes`). */
  limit?: BackpressureLimit
}

/** What refused a message for now: the channel's queue (`queueLimit`) or the store's size on disk (`maxStoreBytes`). */
export type BackpressureLimit = 'queueLimit' | 'maxStoreBytes'

/**
 * The base of every Weir error. Branch on `code`, never on `instanceof` (a duplicated package copy breaks it).
 * Throw the class of a code (`new errorCodes.ERR_HTTP_TIMEOUT(message)`), or `RetryableError` / `PermanentError`
 * from your own components; the code, `retryable`, `userError` and `statusCode` come from the code's registry entry.
 */
export class WeirError extends Error {
  readonly code: ErrorCode
  /** True when the same operation may succeed later (network, 429, 5xx, outages). */
  retryable: boolean
  /** Server-requested delay (Retry-After), when there was one. */
  retryAfterMs?: number
  /** `ERR_BACKPRESSURE`: the limit reached, the channel's queue (`queueLimit`) or the store's size (`maxStoreBytes`). */
  limit?: BackpressureLimit
  /** Errors a user caused (bad config, bad input): the CLI prints them without a stack. */
  userError: boolean
  /** The HTTP status Weir answers with when this error ends an inbound request. */
  readonly statusCode?: number
  constructor(message: string, options?: WeirErrorOptions & { retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    const { code, spec } = registryEntryOf(new.target)
    this.name = new.target.name
    this.code = code
    this.retryable = options?.retryable ?? spec.retryable === true
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs
    if (options?.limit !== undefined) this.limit = options.limit
    this.userError = spec.userError === true
    if (spec.statusCode !== undefined) this.statusCode = spec.statusCode
  }
}

type MessageArgs<S> = S extends { message: (...args: infer A) => string } ? A : [message: string]
type ErrorClass<C, S> = new (
  ...args: S extends { retryable: 'varies' } ? [...MessageArgs<S>, WeirErrorOptions & { retryable: boolean }] : [...MessageArgs<S>, WeirErrorOptions?]
) => WeirError & { readonly code: C }

const ENTRY = Symbol('weir.errorEntry')
interface Entry { code: ErrorCode; spec: ErrorSpec }
type WithEntry = { [ENTRY]?: Entry }

function registryEntryOf(target: Function): Entry {
  const entry = (target as WithEntry)[ENTRY]
  if (!entry) throw new TypeError(`${target.name} is not a Weir error class`)
  return entry
}

/** `ERR_HTTP_STATUS` → `HttpStatusError`: the class name stack traces and logs show. */
function classNameOf(code: string): string {
  return code.slice(4).toLowerCase().replace(/(^|_)([a-z])/g, (_, _s: string, c: string) => c.toUpperCase()) + 'Error'
}

/** One error class per code, in the manner of `@fastify/error`'s `createError(code, message, statusCode)`. */
function createError(code: string, spec: ErrorSpec): Function {
  const template = spec.message as ((...args: unknown[]) => string) | undefined
  const arity = template ? template.length : 1
  const cls = class extends WeirError {
    constructor(...args: unknown[]) {
      const options = args.length > arity ? (args[arity] as WeirErrorOptions & { retryable?: boolean }) : undefined
      super(template ? template(...args.slice(0, arity)) : String(args[0]), options)
    }
  }
  Object.defineProperty(cls, 'name', { value: classNameOf(code) })
  ;(cls as WithEntry)[ENTRY] = { code: code as ErrorCode, spec }
  return cls
}

function defineErrors<const T extends Record<`ERR_${string}`, ErrorSpec>>(specs: T): { [C in keyof T]: ErrorClass<C, T[C]> } & { readonly [ENTRY]: T } {
  const classes: Record<string, Function> = {}
  for (const [code, spec] of Object.entries(specs)) classes[code] = createError(code, spec)
  return Object.assign(classes, { [ENTRY]: specs }) as never
}

/**
 * Every Weir error code, each a class created once from its entry. The README's error table is generated
 * from this registry (`npm run docs`).
 * @example
 * throw new errorCodes.ERR_HTTP_TIMEOUT(`GET ${url} timed out after ${ms} ms`, { cause: e })
 */
export const errorCodes = defineErrors({
  ERR_CONFIG_INVALID: { retryable: false, userError: true, description: 'a channel, test or credential configuration is invalid; when it comes from a file, `problems` lists file, JSON pointer and message' },
  ERR_COMPONENT_INVALID: { retryable: false, userError: true, description: 'a component does not meet the contract, or two components share a type (names the module and what is wrong)' },
  ERR_COMPONENT_UNKNOWN: { retryable: false, userError: true, description: '(on a problem of `ERR_CONFIG_INVALID`) a channel names a component type that does not exist' },
  ERR_SECRET_UNRESOLVED: { retryable: false, userError: true, description: '(on a problem of `ERR_CONFIG_INVALID`) a `$env` variable is not set or a `$file` secret is missing' },
  ERR_SCHEDULE_INVALID: { retryable: false, userError: true, description: 'a cron expression or timezone is invalid' },
  ERR_CREDENTIAL_UNKNOWN: { retryable: false, userError: true, description: 'a component or command names a credential the channel does not define' },
  ERR_USAGE: { retryable: false, userError: true, description: 'a command-line flag or argument is missing or invalid' },
  ERR_FILE_ACCESS: { retryable: false, userError: true, description: 'a file named on the command line cannot be read or written, is empty, or would be overwritten' },
  ERR_LISTEN: { retryable: false, userError: true, description: 'a source cannot listen on its host and port (in use, not permitted)' },
  ERR_MLLP_NETWORK: { retryable: true, description: 'an MLLP connection could not be made or broke off before the ACK (the message is sent again, with the same control id)' },
  ERR_MLLP_TIMEOUT: { retryable: true, description: 'no ACK with the message\'s control id arrived within `ackTimeoutMs`; the connection is closed (so a late ACK can never be taken for another message) and the message sent again' },
  ERR_MLLP_NACK: { retryable: 'varies', description: 'an MLLP receiver answered AE/CE (retryable unless the destination says otherwise) or AR/CR (permanent); `ack` is the code, the message quotes the ACK\'s text' },
  ERR_OAUTH_RESPONSE: { retryable: 'varies', credentialOutage: true, description: 'the token endpoint answered with an OAuth error (`error`, `error_description`, `error_uri`, `status`) whatever the status, or with an unusable body on a status that is not retryable (a non-JSON 400, a 200 without `access_token`); retryable (the token request is sent again at once) for `temporarily_unavailable`, `server_error`, `slow_down`, and for an OAuth error answered with 408, 429 or 5xx. A failure of the credential: a delivery retries it whatever `retryable` says, and the destination\'s circuit breaker counts it' },
  ERR_OAUTH_DISCOVERY: { retryable: false, credentialOutage: true, description: "an issuer's discovery document (RFC 8414, OpenID Connect) is missing or does not match the configured issuer. A failure of the credential: a delivery retries it" },
  ERR_OAUTH_CHALLENGE: { retryable: 'varies', credentialOutage: true, description: 'a protected API answered 401 to a request with the credential\'s token, again after one renewal, after a renewed token was rejected too (no new token before `failFastMs` has passed), or with a challenge naming another error or scheme (`scheme`, `parameters`, `error` from `WWW-Authenticate` when there is one); the message quotes the body\'s redacted excerpt. After a renewal, a failure of the credential: a delivery retries it whatever `retryable` says, and the destination\'s circuit breaker counts it; a 401 naming another error (`insufficient_scope`) or scheme judges the request and is permanent' },
  ERR_OAUTH_FAIL_FAST: { retryable: true, credentialOutage: true, description: 'the credential is broken; calls fail fast without contacting the token endpoint until `retryAt` (`retryAfterMs` is the time left): a delivery waits, its destination\'s circuit breaker open, and goes on once a token is obtained' },
  ERR_OAUTH_REAUTH_REQUIRED: { retryable: false, userError: true, credentialOutage: true, description: 'the refresh token is no longer valid; a person must consent again and import the new one. A failure of the credential: deliveries wait for the new refresh token' },
  ERR_OAUTH_AUTHORIZATION: { retryable: false, userError: true, description: 'the consent flow of `weir credentials authorize` failed: the user or server refused (`error`, `error_description`), the callback\'s `state` or `iss` did not match, no refresh token was issued, or no answer came before the timeout' },
  ERR_HTTP_STATUS: { retryable: 'varies', description: 'an API, a token endpoint or a discovery document answered with a status that is not success (`status`) and no OAuth error body (an outage, a proxy\'s 502 page); retryable for 408, 429 and 5xx' },
  ERR_HTTP_NETWORK: { retryable: true, description: 'a connection failed or a response body broke off' },
  ERR_HTTP_TIMEOUT: { retryable: true, description: 'a request timed out' },
  ERR_HTTP_REQUEST_INVALID: { retryable: false, description: 'a request could not be sent as built: the HTTP client refused a header value or another part of it (the error names the header, never its value); no retry changes that' },
  ERR_HTTP_RESPONSE: { retryable: false, description: 'an API answered success with a body that cannot be used (not JSON, a next link to another origin or back to a visited page)' },
  ERR_MESSAGE_INVALID: { retryable: false, description: "a message failed the `validate` filter's JSON Schema; the schema errors are the reason" },
  ERR_HL7_PARSE: { retryable: false, description: 'a text is not a well-formed HL7 v2 message (no MSH, a malformed MSH, a bad segment name); the message names the segment (`segment`, 1-based) and field (`field`, e.g. `MSH-2`) where it can' },
  ERR_DELIVERY_PERMANENT: { retryable: false, description: 'a component failed in a way retrying will not fix (a filter expression failed, a template field is missing, a file exists); the message goes to error. `PermanentError`' },
  ERR_RETRYABLE: { retryable: true, description: 'a component failed in a way that may succeed later (a file system error, a service down); the message is retried with backoff. `RetryableError`' },
  ERR_BACKPRESSURE: { retryable: true, statusCode: 503, description: "a channel's queue is full (`queueLimit`) or its store is (`maxStoreBytes`); retry later (HTTP 503 with Retry-After). `limit` names which" },
  ERR_SHUTDOWN: { retryable: true, statusCode: 503, description: 'the engine, a channel or a token provider is stopping; the work is left for the next start' },
  ERR_STORE: { retryable: 'varies', userError: true, description: 'the message store failed (a write is retryable), is missing or too new, or its data directory is locked by another engine; `conflict` when a resubmit of a confirmed preview found its messages changed since (resubmitted by another confirmation an instant before): it resubmitted none' },
  ERR_CHANNEL_STOPPED: {
    retryable: false, description: 'a channel with `onError: "stop"` stopped because a message went to error',
    message: (channel: string, messageId: string, reason: string) => `channel ${channel} stopped: message ${messageId} in error: ${reason}`,
  },
  ERR_NOT_IDLE: {
    retryable: false, description: 'a channel still had work pending when `whenIdle()` timed out (tests, `weir test`)',
    message: (channel: string, pending: string) => `channel ${channel} not idle: ${pending}`,
  },
  ERR_INTERNAL: { retryable: false, description: 'an internal invariant failed: a bug, or a program embedding Weir left out a dependency; the message says which' },
})

/** Stable error codes. Branch on `code`, never on `instanceof` (a duplicated package copy breaks it). */
export type ErrorCode = Exclude<keyof typeof errorCodes, typeof ENTRY>

/** The registry entries, for docs and tests. */
export const errorSpecs: Readonly<Record<ErrorCode, ErrorSpec>> = errorCodes[ENTRY]

export const ERROR_CODES: readonly ErrorCode[] = Object.keys(errorSpecs) as ErrorCode[]

// A WeirError constructed directly (only code being converted still does) is an internal error.
;(WeirError as WithEntry)[ENTRY] = { code: 'ERR_INTERNAL', spec: errorSpecs.ERR_INTERNAL }

/** One problem found in a channel file, located by file and JSON pointer. */
export interface ConfigProblem {
  file: string
  pointer: string
  message: string
  /** Set when the problem has its own code (e.g. ERR_COMPONENT_INVALID for a broken module). */
  code?: CodedError['code']
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}#${p.pointer}: ${p.message}`
}

/** `ERR_CONFIG_INVALID` for the problems found in a file: every problem at once, one per line. */
export class ConfigError extends errorCodes.ERR_CONFIG_INVALID {
  problems: ConfigProblem[]
  /** Raw ajv errors, when the problems came from schema validation. Non-enumerable: they quote the data, which may hold a secret. */
  declare readonly errors: ErrorObject[]
  /** What the loader warned of before it gave up (literal secrets…), as `file#pointer: message` lines: `weir validate` shows them with the problems. */
  warnings: string[]
  constructor(problems: ConfigProblem[], errors: ErrorObject[] = [], warnings: string[] = []) {
    super(problems.map(formatProblem).join('\n'))
    this.problems = problems
    this.warnings = warnings
    Object.defineProperty(this, 'errors', { value: errors, enumerable: false })
  }
}

/** `ERR_HTTP_STATUS`: retryable for 408, 429 and 5xx; `status` is the status the API answered. */
export class HttpStatusError extends errorCodes.ERR_HTTP_STATUS {
  readonly status: number
  constructor(message: string, status: number, options?: WeirErrorOptions) {
    super(message, { ...options, retryable: isRetryableStatus(status) })
    this.status = status
  }
}

/**
 * `ERR_RETRYABLE`: throw it from your own component when a failure may succeed later; the message is retried
 * with backoff, never sooner than `retryAfterMs`.
 * @example
 * throw new RetryableError('lookup service is down', { cause: e, retryAfterMs: 5000 })
 */
export class RetryableError extends errorCodes.ERR_RETRYABLE {}

/**
 * `ERR_DELIVERY_PERMANENT`: throw it from your own component when retrying will not help (a 4xx, a message
 * the target refuses); the message goes to error at once.
 * @example
 * throw new PermanentError(`patient ${id} does not exist`)
 */
export class PermanentError extends errorCodes.ERR_DELIVERY_PERMANENT {}

/**
 * What `isWeirError` guarantees: an error with an `ERR_*` code. jose and Node use the same convention,
 * so `code` may be one of theirs; `retryable` and `userError` are set on Weir's own errors.
 */
export interface CodedError extends Error {
  code: ErrorCode | `ERR_${string}`
  retryable?: boolean
  retryAfterMs?: number
  /** `ERR_BACKPRESSURE`: the limit reached. */
  limit?: BackpressureLimit
  userError?: boolean
  statusCode?: number
}

export function isWeirError(e: unknown): e is CodedError {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string' && (e as { code: string }).code.startsWith('ERR_')
}

/**
 * Whether `e` is a failure of a credential (its code's `credentialOutage`): a client secret or key
 * the token endpoint refuses, a refresh token no longer valid, a token the API rejects after its
 * renewal. Every message sent with the credential would fail alike until an operator fixes it, so
 * it is an outage of the destination, not a defect of the message.
 */
export function isCredentialOutage(e: unknown): boolean {
  if (!isWeirError(e) || !Object.hasOwn(errorSpecs, e.code)) return false
  // An error may say for itself (a 401 that judges one request, not the credential: ERR_OAUTH_CHALLENGE).
  const own = (e as { credentialOutage?: unknown }).credentialOutage
  return typeof own === 'boolean' ? own : errorSpecs[e.code as ErrorCode].credentialOutage === true
}

/**
 * Why a source's `emit` refused a message for now, in words for the sender or a log line (no
 * channel name, path or size): `ERR_BACKPRESSURE` from a full queue or a full store, or anything
 * else that may pass later (the channel stopping).
 */
export function refusalOf(e: unknown): 'queue full' | 'store full' | 'temporarily unavailable' {
  if (!isWeirError(e) || e.code !== 'ERR_BACKPRESSURE') return 'temporarily unavailable'
  return e.limit === 'maxStoreBytes' ? 'store full' : 'queue full'
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
