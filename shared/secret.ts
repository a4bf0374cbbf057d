import { inspect } from 'node:util'

const REDACTED = '[REDACTED]'

/** Very short values would scrub ordinary words; real secrets are longer than this. */
const MIN_LENGTH = 6

/** How many transient values (tokens, assertions) are kept for scrubbing; the oldest is forgotten first. */
export const TRANSIENT_SECRET_LIMIT = 512

/** Values from channel config ($env, $file, literal): few and fixed, kept for the life of the process. */
const pinned = new Set<string>()
/** Tokens and assertions, least recently registered first: every renewal adds one, so this set is bounded. */
const transient = new Set<string>()

/**
 * Every known value indexed by its first MIN_LENGTH characters, so a line is scanned once whatever the
 * number of secrets: a two-character filter, then a lookup of the candidate lengths for that prefix.
 */
const byPrefix = new Map<string, { lengths: number[]; values: Set<string> }>()
const pairCount = new Uint32Array(65536)
const pairAt = (s: string, i: number) => ((s.charCodeAt(i) << 8) ^ s.charCodeAt(i + 1)) & 0xffff
let shortest = Infinity

function index(value: string): void {
  const key = value.slice(0, MIN_LENGTH)
  let bucket = byPrefix.get(key)
  if (!bucket) byPrefix.set(key, (bucket = { lengths: [], values: new Set() }))
  bucket.values.add(value)
  if (!bucket.lengths.includes(value.length)) bucket.lengths = [...bucket.lengths, value.length].sort((a, b) => b - a)
  pairCount[pairAt(value, 0)]!++
  shortest = Math.min(shortest, value.length)
}

function unindex(value: string): void {
  const key = value.slice(0, MIN_LENGTH)
  const bucket = byPrefix.get(key)!
  bucket.values.delete(value)
  if (bucket.values.size === 0) byPrefix.delete(key)
  else if (![...bucket.values].some((v) => v.length === value.length)) bucket.lengths = bucket.lengths.filter((l) => l !== value.length)
  pairCount[pairAt(value, 0)]!--
  if (value.length === shortest) {
    shortest = Infinity
    for (const v of pinned) shortest = Math.min(shortest, v.length)
    for (const v of transient) shortest = Math.min(shortest, v.length)
  }
}

/**
 * Registers a value that must never appear in logs or errors. `pinned` values (channel config) are kept
 * for good; others (tokens, assertions) are kept among the TRANSIENT_SECRET_LIMIT most recently registered.
 */
export function registerSecretValue(value: string, options: { pinned?: boolean } = {}): void {
  if (typeof value !== 'string') return
  if (PLAIN.test(value)) register(value, options)
  else for (const form of wireForms(value)) register(form, options)
}

/** A value that every encoding below leaves as it is (most tokens): registered once. */
const PLAIN = /^[A-Za-z0-9._-]*$/

/** application/x-www-form-urlencoded encoding of one value (RFC 6749 Appendix B), as a token request's form and a strict Basic pair carry it. */
export function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1)
}

/**
 * Every form a value takes where Weir writes or sends it, so that scrubbing finds it whichever one
 * comes back: as is, JSON-escaped (log lines are JSON: a PEM key's newlines), form-urlencoded (a
 * `client_secret_post` body, a strict Basic pair; a token endpoint may echo either in its
 * `error_description`) and percent-encoded as encodeURIComponent does (a query parameter).
 */
function wireForms(value: string): Set<string> {
  return new Set([value, JSON.stringify(value).slice(1, -1), formEncode(value), encodeURIComponent(value)])
}

function register(value: string, options: { pinned?: boolean }): void {
  if (value.length < MIN_LENGTH || pinned.has(value)) return
  const wasTransient = transient.delete(value)
  if (options.pinned) pinned.add(value)
  else {
    transient.add(value)
    if (transient.size > TRANSIENT_SECRET_LIMIT) {
      const oldest = transient.values().next().value!
      transient.delete(oldest)
      unindex(oldest)
    }
  }
  if (!wasTransient) index(value)
}

/** Replaces every registered secret value in `text` with [REDACTED] (leftmost, longest first). */
export function scrubSecrets(text: string): string {
  if (text.length < shortest) return text
  let out = ''
  let last = 0
  for (let i = 0, end = text.length - MIN_LENGTH; i <= end;) {
    const bucket = pairCount[pairAt(text, i)] ? byPrefix.get(text.slice(i, i + MIN_LENGTH)) : undefined
    const length = bucket?.lengths.find((l) => i + l <= text.length && bucket.values.has(text.slice(i, i + l)))
    if (length === undefined) { i++; continue }
    out += text.slice(last, i) + REDACTED
    i += length
    last = i
  }
  return last === 0 ? text : out + text.slice(last)
}

/** Sources of values written in the channel config, as opposed to tokens obtained at run time. */
const CONFIG_SOURCE = /^(\$env:|\$file:|literal)/

/**
 * A secret value (client secret, private key, token, assertion). Prints as `[REDACTED]` in
 * logs, errors, JSON and `util.inspect`; `reveal()` gives the value to the code that sends it.
 */
export class Secret {
  readonly #value: string
  /** Where the value came from, e.g. `$env:EPIC_KEY`, `$file:keys/a.pem`, `literal` or `token-response`. */
  readonly source: string
  constructor(value: string, source = 'literal') {
    this.#value = value
    this.source = source
    registerSecretValue(value, { pinned: CONFIG_SOURCE.test(source) })
    Object.freeze(this)
  }
  reveal(): string {
    return this.#value
  }
  toString(): string {
    return REDACTED
  }
  toJSON(): string {
    return REDACTED
  }
  [inspect.custom](): string {
    return REDACTED
  }
  static is(v: unknown): v is Secret {
    return v instanceof Secret
  }
}

export function reveal(v: Secret | string | undefined): string | undefined {
  if (v === undefined) return undefined
  return typeof v === 'string' ? v : v.reveal()
}

/**
 * The value of a secret setting, as reveal() gives it. A Secret registered its value for scrubbing
 * when it was made; a library caller's plain string is registered here, so that a server echoing it
 * (in an error_description) cannot put it in a log line or an error either.
 */
export function revealPinned(v: Secret | string | undefined): string | undefined {
  const text = reveal(v)
  if (text !== undefined && typeof v === 'string') registerSecretValue(text, { pinned: true })
  return text
}

export { REDACTED }
