// The retry rule for filters and destinations alike, and how a failure is put in words: here in
// shared/ so that components (the script filter), the loader and the engine's runtime apply the same.

import { isAbsolute, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isCredentialOutage, isWeirError } from './errors.ts'
import { scrubSecrets } from './secret.ts'

/** Longest reason kept in the message log (and of a response excerpt). */
export const REASON_MAX = 500
/** Longest JSON text that stands for a thrown value that is not an Error. */
const THROWN_JSON_MAX = 200

/**
 * Error codes of the operating system and of undici that mean "the network failed", worth another
 * try; not undici's refusals of the request as built (an invalid header value), which no retry changes.
 */
const TRANSIENT_CODE = /^(E(CONNRESET|CONNREFUSED|CONNABORTED|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN|NOTFOUND|ADDRINUSE)|UND_ERR_(?!INVALID_ARG$|NOT_SUPPORTED$|INVALID_RETURN_VALUE$).*)$/

export interface Failure {
  retryable: boolean
  /** The server's Retry-After, when the error carries one. */
  retryAfterMs?: number
  /** A failure of the credential (rule 0 below), not of the message: a destination's retry budget is not charged for it. */
  credential?: true
}

/**
 * The one rule that decides, for filters and destinations alike, whether a failure is retried:
 *
 * 0. a failure of a credential (`isCredentialOutage`: the token endpoint refuses the client, a
 *    refresh token is no longer valid, the API rejects a renewed token) is retried whatever its
 *    `retryable` says: the credential is down for every message alike, so the message waits (and
 *    the destination's circuit breaker counts it) until an operator fixes the credential; such a
 *    failure (`credential: true`) spends none of a destination's retry budget, as an open breaker's
 *    pause does not, so it never sends a message to error however low `maxAttempts` is;
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
  const credential = isCredentialOutage(e)
  const retryable = credential || (typeof flag === 'boolean' ? flag : transientCode(e))
  return { retryable, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}), ...(credential ? { credential: true as const } : {}) }
}

function transientCode(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; typeof x === 'object' && x !== null && depth < 5; x = (x as { cause?: unknown }).cause, depth++) {
    const code = (x as { code?: unknown }).code
    if (typeof code === 'string' && TRANSIENT_CODE.test(code)) return true
  }
  return false
}

/**
 * What was thrown, in words: an Error's message; for anything else (`throw { oops: true }`), its
 * string `message` when it has one, otherwise its JSON (bounded), otherwise `String()`.
 */
export function thrownMessage(e: unknown): string {
  if (e instanceof Error) return e.message
  if (typeof e === 'object' && e !== null) {
    const m = (e as { message?: unknown }).message
    if (typeof m === 'string') return m
    let json: string | undefined
    try {
      json = JSON.stringify(e)
    } catch {
      // a cycle or a BigInt: String() below
    }
    if (json !== undefined) return json.length > THROWN_JSON_MAX ? `${json.slice(0, THROWN_JSON_MAX)}…` : json
  }
  try {
    return String(e)
  } catch {
    return Object.prototype.toString.call(e) // an object without toString (Object.create(null))
  }
}

// Weir's own files: everything under the directory above shared/ (the package when it runs from
// its sources, dist/ when it runs compiled). A frame there is the engine's, not the user's.
const WEIR_ROOT = fileURLToPath(new URL('..', import.meta.url))

/**
 * Where in the user's code an error was thrown: the first frame of its stack in a file that is not
 * Node's own, under node_modules or Weir's, as `path:line:column` relative to `dir` (the channel's
 * directory). Nothing else of the stack is kept.
 */
export function userFrame(e: unknown, dir: string): string | undefined {
  if (!(e instanceof Error) || typeof e.stack !== 'string') return undefined
  // The frames follow the first line(s): "Name: message", which may span several lines.
  const lines = e.stack.split('\n').slice(String(e.message).split('\n').length)
  for (const line of lines) {
    const m = /^\s*at (?:.*? \()?(.+?):(\d+):(\d+)\)?$/.exec(line)
    if (!m) continue
    let file = m[1]!
    if (file.startsWith('file://')) {
      try {
        file = fileURLToPath(file)
      } catch {
        continue
      }
    }
    if (!isAbsolute(file) || file.includes(`${sep}node_modules${sep}`) || file.startsWith(WEIR_ROOT)) continue
    return `${relative(dir, file)}:${m[2]}:${m[3]}`
  }
  return undefined
}

/**
 * The reason kept in the message log and the log: the code (a Weir error's) and message of what
 * was thrown, scrubbed of secrets and bounded. For an error that is not Weir's (a component's bug, a
 * TypeError), `dir` given, where in the user's code it was thrown: `(at lab/api-post.ts:18:70)`.
 */
export function describeFailure(e: unknown, dir?: string): string {
  const coded = isWeirError(e)
  const text = scrubSecrets(`${coded ? `${e.code}: ` : ''}${thrownMessage(e)}`)
  // Weir's own errors say what failed; Node's (ERR_INVALID_ARG_TYPE…) are coded too, but not Weir's.
  const weirs = coded && typeof e.userError === 'boolean'
  const at = !weirs && dir !== undefined ? userFrame(e, dir) : undefined
  if (at === undefined) return text.slice(0, REASON_MAX)
  const suffix = ` (at ${at})`
  return `${text.slice(0, Math.max(0, REASON_MAX - suffix.length))}${suffix}`
}
