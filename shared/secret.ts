import { inspect } from 'node:util'

const REDACTED = '[REDACTED]'

/** Every secret value seen by this process, so the log stream can scrub it wherever it appears. */
const known = new Set<string>()

/** Registers a value that must never appear in logs or errors (tokens, assertions, secrets). */
export function registerSecretValue(value: string): void {
  // Very short values would scrub ordinary words; real secrets are longer than this.
  if (typeof value === 'string' && value.length >= 6) known.add(value)
}

/** Replaces every registered secret value in `text` with [REDACTED]. */
export function scrubSecrets(text: string): string {
  if (known.size === 0) return text
  let out = text
  for (const s of known) if (out.includes(s)) out = out.split(s).join(REDACTED)
  return out
}

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
    registerSecretValue(value)
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

export { REDACTED }
