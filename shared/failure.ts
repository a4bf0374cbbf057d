// The retry rule for filters and destinations alike: here in shared/ so that components (the
// script filter) and the engine's runtime apply the same one.

/**
 * Error codes of the operating system and of undici that mean "the network failed", worth another
 * try; not undici's refusals of the request as built (an invalid header value), which no retry changes.
 */
const TRANSIENT_CODE = /^(E(CONNRESET|CONNREFUSED|CONNABORTED|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN|NOTFOUND|ADDRINUSE)|UND_ERR_(?!INVALID_ARG$|NOT_SUPPORTED$|INVALID_RETURN_VALUE$).*)$/

export interface Failure {
  retryable: boolean
  /** The server's Retry-After, when the error carries one. */
  retryAfterMs?: number
}

/**
 * The one rule that decides, for filters and destinations alike, whether a failure is retried:
 *
 * 1. an error with a boolean `retryable` property says so itself (`RetryableError` and
 *    `PermanentError`, every error of Weir's HTTP and OAuth clients, or any error a component
 *    marks with `retryable: true`);
 * 2. otherwise a network failure (an operating-system or undici error code such as `ECONNRESET`,
 *    on the error or in its `cause` chain, as `fetch` reports them) is retried;
 * 3. anything else (a `TypeError` from a bug, a plain `Error`) is permanent: the message goes to
 *    error at once with the reason, instead of holding its key through a retry budget.
 */
export function classify(e: unknown): Failure {
  const retryAfterMs = typeof (e as { retryAfterMs?: unknown })?.retryAfterMs === 'number' ? (e as { retryAfterMs: number }).retryAfterMs : undefined
  const flag = (e as { retryable?: unknown })?.retryable
  const retryable = typeof flag === 'boolean' ? flag : transientCode(e)
  return retryAfterMs === undefined ? { retryable } : { retryable, retryAfterMs }
}

function transientCode(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; typeof x === 'object' && x !== null && depth < 5; x = (x as { cause?: unknown }).cause, depth++) {
    const code = (x as { code?: unknown }).code
    if (typeof code === 'string' && TRANSIENT_CODE.test(code)) return true
  }
  return false
}
