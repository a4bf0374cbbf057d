import { createHash } from 'node:crypto'
import { errorCodes, type WeirError } from '../errors.ts'
import type { Logger } from '../log/index.ts'
import { reveal } from '../secret.ts'
import type { DpopSigner } from './dpop.ts'
import { FailFastError, TERMINAL_OAUTH_ERRORS, type OAuthResponseError } from './errors.ts'
import { closedProviderOf, type ProviderLifetime } from './lifetime.ts'
import type { FailureRecorder, StoredFailure } from './refresh-store.ts'
import type { AccessToken } from './types.ts'

/** A token as a grant obtained it, with the lifetime the server stated (for refresh scheduling). */
export interface Obtained {
  token: AccessToken
  lifetimeMs: number
}

/** The cache entry of one cache key, shared by every provider with that key. */
export interface Slot {
  token?: AccessToken
  resolved?: Promise<AccessToken>
  refreshAt: number
  staleAt: number
  /** The one fetch in flight for this key. */
  pending?: Promise<AccessToken>
  brokenUntil: number
  brokenError?: WeirError
  /** The refusal recorded in the shared state that this slot last told of (its `until` and recorder): read again, it is not logged again. */
  refusalTold?: string
  /**
   * No token request before `notBefore` (epoch ms): the last fetch gave up on `error`, whose
   * Retry-After (a 429, a 503) asked to wait. Cleared by the next success.
   */
  retryAfter?: { notBefore: number; error: WeirError }
  /** When the current token was obtained (epoch ms). */
  fetchedAt?: number
  /** The last fetch that failed after its retries, for status displays (cleared by the next success). */
  lastFailure?: { at: number; code: string; message: string; error?: string }
  /** The sha256 (`tokenDigest`) of the token `invalidate` dropped: a copy stored elsewhere that is this one is not used again. */
  invalidated?: string
  /** Set by `invalidate`: the next token installed renews one an API rejected. */
  renewing?: boolean
  /**
   * The token installed to renew one an API rejected, and when (epoch ms). If an API rejects it
   * too, the credential is refused, not its token: `invalidate` keeps it for `failFastMs` instead
   * of fetching a new token for each 401 (`rejected` once it did). `digest` is its `tokenDigest`:
   * a token dropped or replaced is not kept in clear.
   */
  renewal?: { digest: string; at: number; rejected?: boolean }
  /**
   * The DPoP key pair of the slot: every provider sharing the slot (two channels using one shared
   * credential) signs proofs with the key its tokens are bound to, and shares the server nonces.
   */
  dpop?: DpopSigner
}

/** What the slot keeps of a token it no longer holds, for comparisons: its sha256, never the token. */
export const tokenDigest = (value: string): string => createHash('sha256').update(value).digest('base64url')

/** Tokens by cache key (token endpoint, client, grant, auth method, sorted scopes, resource, audience). */
export class TokenCache {
  readonly #slots = new Map<string, Slot>()
  slot(key: string): Slot {
    let s = this.#slots.get(key)
    if (!s) this.#slots.set(key, (s = { refreshAt: 0, staleAt: 0, brokenUntil: 0 }))
    return s
  }
  clear(): void {
    this.#slots.clear()
  }
}

/** The process-wide cache used when no `cache` option is given. */
export const defaultTokenCache = new TokenCache()

/**
 * When to refresh a token in the background (`refreshAt`) and when to stop using it (`staleAt`),
 * both epoch ms in the local clock.
 *
 * - Tokens living 150 s or more refresh `max(30 s, 20% of the lifetime)` ahead of expiry, so
 *   steady traffic never waits and a 5-minute token is not refetched on every call.
 * - Tokens living under 150 s refresh 10% of their lifetime ahead: the 30 s floor would be most of
 *   a short lifetime (all of it below 30 s), so a 2 s token would be refetched on every call; 10%
 *   keeps one request per lifetime while still refreshing before expiry.
 * - Jitter adds up to 20% of the lead (`random` in [0, 1)), so providers do not refresh in step.
 * - The clock-skew margin of `staleAt` is capped at 5% of the lifetime, for the same reason.
 *
 * @example
 * refreshSchedule(300_000, 300_000, 10, 0) // → { refreshAt: 240_000, staleAt: 290_000 } (20% lead)
 * refreshSchedule(2_000, 2_000, 10, 0)     // → { refreshAt: 1_800, staleAt: 1_900 } (10% lead, short token)
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.1 (expires_in)
 */
export function refreshSchedule(expiresAt: number, lifetimeMs: number, clockSkewSec: number, random: number): { refreshAt: number; staleAt: number } {
  if (!Number.isFinite(expiresAt)) return { refreshAt: Infinity, staleAt: Infinity }
  const skew = Math.min(clockSkewSec * 1000, lifetimeMs * 0.05)
  const lead = lifetimeMs >= 150_000 ? Math.max(30_000, lifetimeMs * 0.2) : lifetimeMs * 0.1
  const jitter = random * lead * 0.2
  return { refreshAt: expiresAt - lead - jitter, staleAt: expiresAt - skew }
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/**
 * A token error as the shared state's entry marks it (leased-fetch.ts): `brokenUntil` and
 * `recordedBy` (null when an older weir recorded it) on a refusal another holder recorded, adopted
 * from the entry; `recorded` on a refusal this process got and recorded; `toldBefore` once the slot
 * has told of the refusal already.
 */
type MarkedError = WeirError & { brokenUntil?: number; recordedBy?: FailureRecorder | null; recorded?: StoredFailure; toldBefore?: boolean }

/** Who recorded an adopted refusal, for the log line. */
function recorderText(by: FailureRecorder | null | undefined): string {
  if (!by) return 'another engine'
  return `${by.engine ? `engine ${by.engine} on ` : ''}host ${by.host}, pid ${by.pid}`
}

/**
 * The longest wait a token endpoint's Retry-After imposes on the slot (between attempts, and before
 * the next fetch once one gave up). The value comes from the server, or from any proxy in front of
 * it: one answer with `Retry-After: 86400` (or an HTTP-date years ahead) would otherwise stop every
 * channel using the credential for that long, with nothing but a restart to end it. Two minutes
 * still spaces requests out as a server under load asks.
 */
const MAX_RETRY_AFTER_MS = 120_000

/** Backoff before retry `attempt` + 1: the server's Retry-After (capped), else jittered exponential. */
function retryDelay(err: WeirError, attempt: number, random: number): number {
  return err.retryAfterMs !== undefined ? Math.min(err.retryAfterMs, MAX_RETRY_AFTER_MS) : Math.min(10_000, 250 * 2 ** (attempt - 1)) * (0.5 + random / 2)
}

/**
 * What a caller gets while the slot waits out a Retry-After: retryable, with `retryAfterMs` the
 * time left, so the channel's retry comes back once the server is willing (no request is sent).
 */
function waitingError(name: string, cause: WeirError, notBefore: number, now: number): WeirError {
  const c = cause as Partial<OAuthResponseError>
  const message = `credential "${name}" is waiting as the token endpoint asked: ${cause.message} (no new token request before ${new Date(notBefore).toISOString()})`
  const e = new errorCodes.ERR_OAUTH_RESPONSE(message, { retryable: true, retryAfterMs: notBefore - now, cause })
  return Object.assign(e, c.status !== undefined ? { status: c.status } : {}, c.error !== undefined ? { error: c.error } : {})
}

function isTerminal(e: unknown): boolean {
  const code = (e as WeirError).code
  return code === 'ERR_OAUTH_REAUTH_REQUIRED' || code === 'ERR_OAUTH_CHALLENGE' || (code === 'ERR_OAUTH_RESPONSE' && TERMINAL_OAUTH_ERRORS.has((e as OAuthResponseError).error))
}

/**
 * A failed token request the provider is about to retry, as `TokenProviderOptions.onRetry` gets it
 * (the same facts as the provider's "token request failed, retrying" log line).
 */
export interface TokenRetry {
  /** The attempt that failed (1 for the first request); the next one is `attempt + 1`. */
  attempt: number
  /** The credential's `maxAttempts`: the fetch gives up after that many requests. */
  maxAttempts: number
  /** How long the provider waits before the next attempt (ms): the server's Retry-After (capped at two minutes), else the backoff. */
  delayMs: number
  /** The Retry-After the answer asked for (ms), when it carried one. */
  retryAfterMs?: number
  /** What failed, as the log line says it: the error's message (the token endpoint's answer, redacted; never a secret). */
  error: string
}

/**
 * What a fetch may take from the store's entry (the refresh token's, or the cluster's shared state):
 * - undefined: the token another holder published or the refusal it recorded, as every caller does;
 * - `'force'` (fetchNow): a token request past a token the shared state holds (a refresh grant reads its entry as usual);
 * - `'check'` (checkToken): a token request past whatever the entry offers, and a refusal is not recorded in it.
 */
export type ObtainMode = 'force' | 'check'

export interface SlotUserOptions {
  name: string
  log: Logger
  /** Told of each retry of the fetches this provider runs (a listener's exception is logged, never thrown). */
  onRetry?: (retry: TokenRetry) => void
  now: () => number
  random: () => number
  clockSkewSec: number
  failFastMs: number
  maxAttempts: number
  lifetime: ProviderLifetime
  /** Obtains a token by the credential's grant (one attempt). */
  obtain: (signal: AbortSignal, mode?: ObtainMode) => Promise<Obtained>
  counters: { tokenErrors: number }
}

/**
 * One provider's use of a shared slot: the cached token while it is usable, a refresh in the
 * background once one is due, one fetch in flight per slot however many callers wait (with retries
 * and backoff), fail-fast for `failFastMs` after a non-retryable failure, and no new fetch before
 * the Retry-After of the failure the last one gave up on.
 */
export class SlotUser {
  constructor(readonly slot: Slot, private readonly o: SlotUserOptions) {}

  /** The cached token when it can be used now (starting a background refresh when one is due), else undefined. */
  usableNow(): AccessToken | undefined {
    const slot = this.slot
    if (slot.token === undefined) return undefined
    const t = this.o.now()
    if (t < slot.refreshAt) return slot.token
    if (t < slot.staleAt) {
      if (!slot.pending && !this.o.lifetime.signal.aborted && !this.#retryAfterInForce()) this.#background()
      return slot.token
    }
    return undefined
  }

  /**
   * A usable token: the cached one, or the result of the slot's shared fetch. `opts.signal` is read
   * only when the call has to wait (shared/http makes it lazily).
   */
  getToken(opts?: { signal?: AbortSignal }): Promise<AccessToken> {
    return this.usableNow() !== undefined ? this.slot.resolved! : this.#waitShared(opts?.signal)
  }

  /**
   * A token request now, whatever the cache holds (a running engine's check): joins the slot's fetch in
   * flight, else starts one even while the credential fails fast; its outcome updates the slot as
   * any fetch does (a success ends fail-fast, a refusal starts it).
   */
  fetchNow(): Promise<AccessToken> {
    return this.slot.pending ?? this.#startFetch('force')
  }

  /**
   * A new token from the token endpoint for an operator's check (`weir token`), with the usual
   * retries: sent whatever the slot holds (a token, fail-fast, a Retry-After), never joining the
   * slot's fetch, and past the token or refusal the store's entry offers. Its outcome is the
   * caller's alone: the slot keeps its token and state, and a refusal is recorded neither here nor
   * in the store (a wrong secret tried by an operator must not make the engines fail fast). A
   * refresh grant still stores the rotated refresh token: the server has spent the old one.
   */
  async checkToken(): Promise<AccessToken> {
    try {
      return (await this.#attempts('check')).token
    } catch (e) {
      if (closedProviderOf(e) !== this.o.lifetime) this.o.counters.tokenErrors++
      throw e
    }
  }

  /**
   * Drops `token` if it is still the slot's current one, so the next call renews it; but a token
   * that itself renewed a rejected one is kept for `failFastMs` from its fetch: once a fresh token
   * is rejected too (a revoked grant, an API refusing the client), a new one would be as well, and
   * one token request per 401 would storm the token endpoint. The caller sees the same token again
   * and fails without a resend. A token installed otherwise (its refresh before expiry) renews once again.
   */
  invalidate(token: AccessToken): void {
    const slot = this.slot
    const value = reveal(token.value)
    if (value === undefined || !slot.token || reveal(slot.token.value) !== value) return
    const digest = tokenDigest(value)
    const renewal = slot.renewal
    if (renewal !== undefined && renewal.digest === digest && this.o.now() < renewal.at + this.o.failFastMs) {
      if (!renewal.rejected) {
        renewal.rejected = true
        this.o.log.warn({ renewAfter: new Date(renewal.at + this.o.failFastMs).toISOString() }, 'the access token renewed after a 401 was rejected too; no new token for 401s before renewAfter')
      }
      return
    }
    slot.invalidated = digest
    slot.renewing = true
    delete slot.token
    delete slot.resolved
    slot.refreshAt = 0
    slot.staleAt = 0
  }

  #install(t: Obtained): AccessToken {
    const slot = this.slot
    const sched = refreshSchedule(t.token.expiresAt, t.lifetimeMs, this.o.clockSkewSec, this.o.random())
    slot.token = t.token
    slot.resolved = Promise.resolve(t.token)
    slot.refreshAt = sched.refreshAt
    slot.staleAt = sched.staleAt
    slot.brokenUntil = 0
    slot.fetchedAt = this.o.now()
    if (slot.renewing) slot.renewal = { digest: tokenDigest(reveal(t.token.value)!), at: slot.fetchedAt }
    else delete slot.renewal
    delete slot.renewing
    delete slot.brokenError
    delete slot.retryAfter
    delete slot.lastFailure
    return t.token
  }

  // Any non-retryable failure (an OAuth error, a non-JSON 4xx, a 200 without access_token, a wrong
  // token_type…) fails the same way on the next attempt: fail fast instead of sending one token
  // request per delivery attempt (a terminal error marks the credential broken for a short while;
  // a refusal another engine recorded in the shared state, until the time it recorded).
  //
  // A refusal read from the shared state is told of once, naming who recorded it (the engine on call
  // has to look at); a background refresh that reads it again, or this process reading back its own,
  // logs it at debug.
  #markBroken(err: MarkedError): void {
    const adopted = err.brokenUntil !== undefined
    this.slot.brokenUntil = err.brokenUntil ?? this.o.now() + this.o.failFastMs
    this.slot.brokenError = err
    const stored = adopted ? [err.brokenUntil, err.recordedBy ?? null] : err.recorded ? [err.recorded.until, err.recorded.recordedBy ?? null] : undefined
    const id = stored && JSON.stringify(stored)
    if (id !== undefined && id === this.slot.refusalTold) Object.defineProperty(err, 'toldBefore', { value: true, enumerable: false })
    if (id !== undefined) this.slot.refusalTold = id
    const oauth = err as OAuthResponseError
    const fields = { error: oauth.error, error_description: oauth.error_description, terminal: isTerminal(err), ...(adopted ? { recordedBy: err.recordedBy } : {}) }
    const what = adopted ? `credential broken (recorded by ${recorderText(err.recordedBy)})` : 'credential broken'
    this.o.log[err.toldBefore ? 'debug' : 'error'](fields, `${what}: ${describeError(err)}`)
  }

  /**
   * Remembers the Retry-After of the failure a fetch gave up on: until it has passed, callers get a
   * retryable error instead of a new token request (each delivery, each channel sharing the
   * credential would otherwise ask again at once). Capped as the backoff between attempts is.
   */
  #noteRetryAfter(err: WeirError): void {
    if (err.retryAfterMs === undefined) delete this.slot.retryAfter
    else this.slot.retryAfter = { notBefore: this.o.now() + Math.min(err.retryAfterMs, MAX_RETRY_AFTER_MS), error: err }
  }

  /** The Retry-After of the slot's last failure while it is in force (no request may be sent), else undefined. */
  #retryAfterInForce(): Slot['retryAfter'] {
    const ra = this.slot.retryAfter
    return ra !== undefined && this.o.now() < ra.notBefore ? ra : undefined
  }

  /**
   * The attempts of one fetch, under this provider's lifetime signal (never a caller's): a
   * retryable failure is retried after its backoff up to `maxAttempts`, the last failure thrown.
   */
  async #attempts(mode?: ObtainMode): Promise<Obtained> {
    const { lifetime, log } = this.o
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.o.obtain(lifetime.signal, mode)
      } catch (e) {
        if (lifetime.signal.aborted) throw lifetime.shutdownError()
        const err = e as WeirError
        if (!err.retryable || attempt >= this.o.maxAttempts) throw err
        const delay = retryDelay(err, attempt, this.o.random())
        const retryAfter = err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}
        const error = describeError(e)
        log.warn({ attempt, delayMs: Math.round(delay), ...retryAfter, err: error }, 'token request failed, retrying')
        this.#tell({ attempt, maxAttempts: this.o.maxAttempts, delayMs: Math.round(delay), ...retryAfter, error })
        await lifetime.sleep(delay)
      }
    }
  }

  #tell(retry: TokenRetry): void {
    try {
      this.o.onRetry?.(retry)
    } catch (e) {
      this.o.log.warn({ err: describeError(e) }, 'the onRetry listener threw; the fetch goes on')
    }
  }

  /** One shared fetch: what it obtains becomes the slot's token, its failure the slot's state (fail-fast, Retry-After). */
  async #fetchWithRetries(mode?: ObtainMode): Promise<AccessToken> {
    try {
      return this.#install(await this.#attempts(mode))
    } catch (e) {
      // Closed meanwhile: no failure of the credential's.
      if (closedProviderOf(e) === this.o.lifetime) throw e
      const err = e as WeirError
      this.o.counters.tokenErrors++
      const error = (err as Partial<OAuthResponseError>).error
      this.slot.lastFailure = { at: this.o.now(), code: err.code ?? 'ERR_UNKNOWN', message: describeError(err), ...(error ? { error } : {}) }
      if (err.retryable) this.#noteRetryAfter(err)
      else this.#markBroken(err)
      throw err
    }
  }

  #startFetch(mode?: ObtainMode): Promise<AccessToken> {
    const slot = this.slot
    const p = this.#fetchWithRetries(mode).finally(() => {
      if (slot.pending === p) delete slot.pending
    })
    slot.pending = p
    return p
  }

  #background(): void {
    const { slot, o } = this
    o.log.debug({ expiresInMs: slot.token ? slot.token.expiresAt - o.now() : undefined }, 'refreshing the token in the background; callers keep using the current one')
    this.#startFetch().catch((e) => {
      // The provider that started the refresh was closed: the next call of another provider starts one.
      if (closedProviderOf(e) !== undefined) return
      // The current token is still valid; try again a little later rather than on every call.
      if (slot.token) slot.refreshAt = Math.min(slot.staleAt, o.now() + Math.max(1000, (slot.staleAt - o.now()) / 4))
      o.log[(e as MarkedError).toldBefore ? 'debug' : 'warn']({ err: describeError(e) }, 'background token refresh failed')
    })
  }

  /**
   * Waits for the shared fetch of the slot, starting one when none is in flight. The caller's signal
   * ends only this wait; the fetch goes on for the other waiters. When the provider that started the
   * fetch is closed, this caller detaches and its own provider fetches instead. (No AbortSignal.any
   * of the caller's and the lifetime signal: on Node 20 it leaves an entry in the long-lived one.)
   */
  async #waitShared(callerSignal?: AbortSignal): Promise<AccessToken> {
    const { slot, o } = this
    for (;;) {
      const aborted = o.lifetime.abortedBy(callerSignal)
      if (aborted) throw aborted.reason
      if (!slot.pending) {
        if (slot.brokenError && o.now() < slot.brokenUntil) throw new FailFastError(o.name, slot.brokenError, slot.brokenUntil, o.now())
        const ra = this.#retryAfterInForce()
        if (ra) throw waitingError(o.name, ra.error, ra.notBefore, o.now())
        this.#startFetch()
      }
      try {
        return await o.lifetime.waitFor(slot.pending!, callerSignal)
      } catch (e) {
        const closed = closedProviderOf(e)
        if (closed !== undefined && closed !== o.lifetime && !o.lifetime.abortedBy(callerSignal)) continue
        throw e
      }
    }
  }
}
