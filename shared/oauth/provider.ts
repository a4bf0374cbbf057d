import { join } from 'node:path'
import { Agent, type Dispatcher } from 'undici'
import { WeirError, userError } from '../errors.ts'
import { silentLogger, type Logger } from '../log/index.ts'
import { Secret, reveal } from '../secret.ts'
import type { AccessToken, TokenProvider } from './types.ts'
import { applyPreset, checkCredential, scopeList, type CredentialConfig, type SecretLike } from './config.ts'
import { certificateThumbprint, loadSigningKey, type SigningKey } from './keys.ts'
import { DpopSigner, type DpopAlg } from './dpop.ts'
import { discover, type ServerMetadata } from './discovery.ts'
import { FailFastError, OAuthResponseError, ReauthRequiredError, TERMINAL_OAUTH_ERRORS } from './errors.ts'
import { createRefreshTokenStore, type RefreshTokenStore, type StoredTokens } from './refresh-store.ts'
import {
  JWT_BEARER_GRANT, clockOffsetFrom, planTokenRequest, processTokenResponse, redactPlan, sendTokenRequest,
  type ProcessedToken, type ResolvedCredential,
} from './token-endpoint.ts'

export interface TokenProviderOptions {
  log?: Logger
  /** Data directory; the default refresh-token store lives in `<dataDir>/oauth`. */
  dataDir?: string
  store?: RefreshTokenStore
  /** Dispatcher for token requests (default: an undici Agent, with the client certificate when configured). */
  dispatcher?: Dispatcher
  /** Local clock (epoch ms); tests inject one. */
  now?: () => number
  /** Random in [0, 1) for jitter; tests inject one. */
  random?: () => number
  /** Shared token cache; providers with the same cache key share tokens and the in-flight fetch. */
  cache?: TokenCache
  /**
   * Pluggable assertion signing (a KMS): gets the configured key's header values and the claims.
   * Throw an error with `retryable: true` for a transient failure; any other error marks the
   * credential broken for `failFastMs`, like every non-retryable token error.
   */
  signer?: (key: SigningKey, claims: Record<string, unknown>) => Promise<string>
}

interface Slot {
  token?: AccessToken
  resolved?: Promise<AccessToken>
  refreshAt: number
  staleAt: number
  pending?: Promise<AccessToken>
  brokenUntil: number
  brokenError?: WeirError
  invalidated?: string
  /**
   * The DPoP key pair of the slot: every provider sharing the slot (two channels using one shared
   * credential) signs proofs with the key its tokens are bound to, and shares the server nonces.
   */
  dpop?: DpopSigner
}

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

/** Non-enumerable mark on a provider's ERR_SHUTDOWN error: which provider was closed. */
const CLOSED_PROVIDER = Symbol('weir.closedProvider')

/** The process-wide cache used when no `cache` option is given. */
export const defaultTokenCache = new TokenCache()

/**
 * When to refresh a token in the background (`refreshAt`) and when to stop using it (`staleAt`),
 * both epoch ms in the local clock.
 *
 * - Tokens living 150 s or more refresh `max(30 s, 20% of the lifetime)` ahead of expiry.
 * - Tokens living under 150 s refresh 10% of their lifetime ahead: the general rule would put the
 *   30 s floor above most of a short lifetime (all of it below 30 s), so a 2 s token would be
 *   refetched on every call; 10% keeps one request per lifetime while still refreshing before expiry.
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

/** Loads keys and secrets of an (already validated) credential; throws ERR_CONFIG_INVALID naming the first problem. */
export function resolveCredential(name: string, input: CredentialConfig): ResolvedCredential {
  const problems = checkCredential(input)
  if (problems.length) throw userError(`credential "${name}": ${problems.map(([p, m]) => `#${p}: ${m}`).join('; ')}`, 'ERR_CONFIG_INVALID')
  const c = applyPreset(input)
  const ca = c.clientAuth ?? {}
  const secret = reveal(ca.secret)
  const r: ResolvedCredential = {
    name,
    grant: c.grant!,
    method: ca.method!,
    basicEncoding: ca.basicEncoding ?? 'strict',
    clientAudience: ca.audience ?? 'token-endpoint',
    assertionLifetimeSec: ca.assertionLifetimeSec ?? 300,
    scopes: scopeList(c.scope),
    resources: c.resource === undefined ? [] : Array.isArray(c.resource) ? [...c.resource] : [c.resource],
    extraParams: { ...c.extraParams },
    timeoutMs: c.timeoutMs ?? 10_000,
    defaultExpiresInSec: c.defaultExpiresInSec ?? 300,
    clockSkewSec: c.clockSkewSec ?? 10,
    failFastMs: c.failFastMs ?? 30_000,
    maxAttempts: c.maxAttempts ?? 4,
  }
  if (c.tokenUrl) r.tokenUrl = c.tokenUrl
  if (c.issuer) r.issuer = c.issuer
  if (c.clientId) r.clientId = c.clientId
  if (c.audience) r.audience = c.audience
  if (secret !== undefined) r.secret = secret
  if (r.method === 'client_secret_jwt') r.clientKey = loadSigningKey({ ...ca, alg: 'HS256' }, `credential "${name}" #/clientAuth`, secret)
  if (r.method === 'private_key_jwt') {
    r.clientKey = loadSigningKey(ca, `credential "${name}" #/clientAuth`)
    if (!r.clientId && r.clientKey.keyFileIssuer) r.clientId = r.clientKey.keyFileIssuer
  }
  if (c.grant === 'jwt_bearer') {
    const a = c.assertion ?? {}
    const value = reveal(a.value)
    r.assertion = {
      audience: a.audience ?? 'token-endpoint',
      lifetimeSec: a.lifetimeSec ?? 300,
      scopeClaim: a.scopeClaim ?? false,
      claims: { ...a.claims },
      ...(value !== undefined ? { value } : { key: loadSigningKey(a, `credential "${name}" #/assertion`) }),
      ...(a.iss ? { iss: a.iss } : {}),
      ...(a.sub ? { sub: a.sub } : {}),
    }
    if (!r.clientId && r.assertion.key?.keyFileIssuer) r.clientId = r.assertion.key.keyFileIssuer
  }
  return r
}

/**
 * Cache key of a credential (see TokenCache), plus what a token can be bound to: the DPoP algorithm (the
 * key pair itself lives on the slot, so providers sharing a slot share it) and the SHA-256
 * thumbprint of the client certificate (RFC 8705 certificate-bound tokens only work with that
 * certificate, so two certificates must never share a token).
 */
export function cacheKeyOf(r: ResolvedCredential, storeKey: string, dpopAlg: string | undefined, certThumbprint?: string): string {
  return JSON.stringify([
    r.tokenUrl ?? r.issuer, r.clientId, r.grant, r.method, [...r.scopes].sort(), [...r.resources].sort(), r.audience ?? null,
    r.assertion?.iss ?? r.assertion?.key?.keyFileIssuer ?? null, r.assertion?.sub ?? null, r.grant === 'refresh_token' ? storeKey : null,
    dpopAlg ?? null, certThumbprint ?? null,
  ])
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/**
 * Creates the token provider of one credential: cached tokens refreshed in the background, one
 * fetch in flight per cache key, transient retries with backoff (honouring Retry-After), fail-fast
 * after terminal errors, the refresh-token store's lease, DPoP and mTLS.
 *
 * @example
 * const provider = createTokenProvider('epic', { preset: 'epic-backend', tokenUrl, clientId,
 *   clientAuth: { privateKey: new Secret(pem), kid: 'k1' }, scope: 'system/Patient.rs' })
 * const { headers } = await provider.authorize({ method: 'GET', url })
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.4
 */
export function createTokenProvider(name: string, config: CredentialConfig, options: TokenProviderOptions = {}): TokenProvider & { readonly cacheKey: string; explain(): ReturnType<typeof redactPlan> } {
  const r = resolveCredential(name, config)
  const c = applyPreset(config)
  const log = (options.log ?? silentLogger).child({ credential: name })
  const now = options.now ?? (() => Date.now())
  const random = options.random ?? Math.random
  const storeKey = c.storeKey ?? name
  const dpopAlg: DpopAlg | undefined = c.dpop ? (typeof c.dpop === 'object' && c.dpop.alg ? c.dpop.alg : 'ES256') : undefined
  const tlsKey = reveal(c.tls?.key as SecretLike | undefined)
  const ownDispatcher = c.tls && (c.tls.cert || c.tls.ca)
    ? new Agent({ connect: { ...(c.tls.cert ? { cert: c.tls.cert } : {}), ...(tlsKey ? { key: tlsKey } : {}), ...(c.tls.ca ? { ca: c.tls.ca } : {}) } })
    : undefined
  const tokenDispatcher = options.dispatcher ?? ownDispatcher
  const cacheKey = cacheKeyOf(r, storeKey, dpopAlg, c.tls?.cert ? certificateThumbprint(c.tls.cert) : undefined)
  const slot = (options.cache ?? defaultTokenCache).slot(cacheKey)
  const dpop = dpopAlg ? (slot.dpop ??= new DpopSigner(dpopAlg)) : undefined
  let store = options.store
  const getStore = () => (store ??= createRefreshTokenStore({ dir: join(options.dataDir ?? 'data', 'oauth') }))
  let clockOffsetMs = 0
  let metadata: Promise<ServerMetadata> | undefined
  const counters = { tokenRequests: 0, tokenErrors: 0 }
  /** Aborted by close(): cancels this provider's token requests, backoff waits and waiters. */
  const lifetime = new AbortController()
  /** Marks ERR_SHUTDOWN errors of this provider, so waiters of other providers can tell them apart. */
  const self = {}
  const shutdownError = () => {
    const e = new WeirError(`credential "${name}": provider closed`)
    e.code = 'ERR_SHUTDOWN'
    Object.defineProperty(e, CLOSED_PROVIDER, { value: self, enumerable: false })
    return e
  }
  const serverNow = () => now() + clockOffsetMs

  const staticToken: AccessToken | undefined = r.grant === 'static'
    ? { value: Secret.is(c.token) ? c.token : new Secret(String(c.token), 'literal'), tokenType: c.tokenType ?? 'Bearer', expiresAt: Infinity, extra: {} }
    : undefined

  async function tokenEndpoint(signal?: AbortSignal): Promise<string> {
    if (r.tokenUrl) return r.tokenUrl
    metadata ??= discover(r.issuer!, { ...(tokenDispatcher ? { dispatcher: tokenDispatcher } : {}), timeoutMs: r.timeoutMs, ...(signal ? { signal } : {}) }).catch((e) => {
      metadata = undefined
      throw e
    })
    const m = await metadata
    return (r.method === 'tls_client_auth' && m.mtls_endpoint_aliases?.token_endpoint) || m.token_endpoint
  }

  /** One token request, with the single DPoP nonce retry (RFC 9449 §8). */
  async function send(grantParams: Array<[string, string]>, signal?: AbortSignal): Promise<ProcessedToken> {
    const url = await tokenEndpoint(signal)
    let nonceRetried = false
    let clockRetried = false
    for (;;) {
      const offsetUsed = clockOffsetMs
      const plan = planTokenRequest(r, url, grantParams, serverNow())
      counters.tokenRequests++
      log.debug({ url, grant: r.grant, method: r.method }, 'token request')
      const raw = await sendTokenRequest(plan, {
        timeoutMs: r.timeoutMs, now, serverNow,
        ...(tokenDispatcher ? { dispatcher: tokenDispatcher } : {}), ...(signal ? { signal } : {}), ...(dpop ? { dpop } : {}), ...(options.signer ? { signer: options.signer } : {}),
      })
      const offset = clockOffsetFrom(raw)
      if (offset !== undefined) clockOffsetMs = offset
      try {
        return processTokenResponse(raw, { url, expectDpop: Boolean(dpop), defaultExpiresInSec: r.defaultExpiresInSec, clockOffsetMs })
      } catch (e) {
        if (dpop && !nonceRetried && (e as OAuthResponseError).error === 'use_dpop_nonce' && raw.headers['dpop-nonce']) {
          nonceRetried = true
          continue
        }
        // The response revealed that our clock is off by more than the usual tolerance: assertions
        // were dated wrongly, so one resend with corrected iat/exp is worth it.
        if (!clockRetried && plan.toSign.length > 0 && Math.abs(clockOffsetMs - offsetUsed) > 30_000 && (e as WeirError).code === 'ERR_OAUTH_RESPONSE') {
          clockRetried = true
          log.warn({ clockOffsetMs }, 'token endpoint clock differs from ours; resending with corrected assertion times')
          continue
        }
        throw e
      }
    }
  }

  function usableStored(entry: StoredTokens | undefined): AccessToken | undefined {
    if (!entry?.accessToken || entry.expiresAt === undefined || entry.accessToken === slot.invalidated) return undefined
    if (slot.token && reveal(slot.token.value) === entry.accessToken) return undefined
    const { refreshAt } = refreshSchedule(entry.expiresAt, entry.expiresAt - (entry.issuedAt ?? now()), r.clockSkewSec, 0)
    if (now() >= refreshAt) return undefined
    return {
      value: new Secret(entry.accessToken, 'token-store'), tokenType: entry.tokenType ?? 'Bearer', expiresAt: entry.expiresAt, extra: { ...entry.extra },
      ...(entry.scope ? { scope: entry.scope } : {}),
    }
  }

  /**
   * refresh_token grant under the store's lease: re-read after taking it (another holder may have
   * rotated already), persist the rotated token (awaited) before the access token is used, and on
   * invalid_grant re-read once more before declaring that re-authorization is needed.
   */
  async function viaRefreshToken(signal?: AbortSignal): Promise<{ token: AccessToken; lifetimeMs: number }> {
    const s = getStore()
    const fromStore = (e: StoredTokens | undefined) => {
      const t = usableStored(e)
      return t && { token: t, lifetimeMs: t.expiresAt - (e!.issuedAt ?? now()) }
    }
    const early = fromStore(await s.read(storeKey))
    if (early) return early
    return s.withLease(storeKey, async () => {
      let entry = await s.read(storeKey)
      const seeded = reveal(c.refreshToken as SecretLike | undefined)
      if (!entry && seeded) entry = await s.write(storeKey, { refreshToken: seeded }, 0)
      if (!entry) throw new ReauthRequiredError(`credential "${name}" has no refresh token: run weir credentials import <channel> ${name} --refresh-token-file FILE`)
      const shared = fromStore(entry)
      if (shared) return shared
      try {
        const res = await send([['grant_type', 'refresh_token'], ['refresh_token', entry.refreshToken]], signal)
        const rotated = res.refreshToken ? reveal(res.refreshToken)! : entry.refreshToken
        await s.write(storeKey, {
          refreshToken: rotated, accessToken: reveal(res.token.value)!, tokenType: res.token.tokenType, expiresAt: res.token.expiresAt,
          issuedAt: res.token.expiresAt - res.lifetimeMs, extra: res.token.extra, ...(res.token.scope ? { scope: res.token.scope } : {}),
        }, entry.version)
        return res
      } catch (e) {
        if ((e as OAuthResponseError).error !== 'invalid_grant') throw e
        const again = await s.read(storeKey)
        const other = fromStore(again)
        if (again && again.version !== entry.version && other) return other
        throw new ReauthRequiredError(`credential "${name}": the refresh token was rejected (invalid_grant${(e as OAuthResponseError).error_description ? `: ${(e as OAuthResponseError).error_description}` : ''}); re-authorize and run weir credentials import`, e as OAuthResponseError)
      }
    })
  }

  async function obtain(signal?: AbortSignal): Promise<{ token: AccessToken; lifetimeMs: number }> {
    switch (r.grant) {
      case 'static':
        return { token: staticToken!, lifetimeMs: Infinity }
      case 'client_credentials':
        return send([['grant_type', 'client_credentials']], signal)
      case 'jwt_bearer':
        return send([['grant_type', JWT_BEARER_GRANT]], signal)
      case 'refresh_token':
        return viaRefreshToken(signal)
    }
  }

  function install(t: { token: AccessToken; lifetimeMs: number }): AccessToken {
    const sched = refreshSchedule(t.token.expiresAt, t.lifetimeMs, r.clockSkewSec, random())
    slot.token = t.token
    slot.resolved = Promise.resolve(t.token)
    slot.refreshAt = sched.refreshAt
    slot.staleAt = sched.staleAt
    slot.brokenUntil = 0
    delete slot.brokenError
    return t.token
  }

  function isTerminal(e: unknown): boolean {
    const code = (e as WeirError).code
    return code === 'ERR_OAUTH_REAUTH_REQUIRED' || code === 'ERR_OAUTH_CHALLENGE' || (code === 'ERR_OAUTH_RESPONSE' && TERMINAL_OAUTH_ERRORS.has((e as OAuthResponseError).error))
  }

  function backoff(delay: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer)
        reject(shutdownError())
      }
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }, delay)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** One shared fetch: runs under this provider's lifetime signal, never under a caller's. */
  async function fetchWithRetries(): Promise<AccessToken> {
    const signal = lifetime.signal
    for (let attempt = 1; ; attempt++) {
      try {
        return install(await obtain(signal))
      } catch (e) {
        if (signal.aborted) throw shutdownError()
        const err = e as WeirError
        if (err.retryable && attempt < r.maxAttempts) {
          const delay = err.retryAfterMs !== undefined ? Math.min(err.retryAfterMs, 120_000) : Math.min(10_000, 250 * 2 ** (attempt - 1)) * (0.5 + random() / 2)
          log.warn({ attempt, delayMs: Math.round(delay), err: describeError(e) }, 'token request failed, retrying')
          await backoff(delay, signal)
          continue
        }
        counters.tokenErrors++
        // Any non-retryable failure (an OAuth error, a non-JSON 4xx, a 200 without access_token, a
        // wrong token_type…) fails the same way on the next attempt: fail fast instead of sending
        // one token request per delivery attempt.
        if (!err.retryable) {
          slot.brokenUntil = now() + r.failFastMs
          slot.brokenError = err
          log.error({ error: (err as OAuthResponseError).error, error_description: (err as OAuthResponseError).error_description, terminal: isTerminal(err) }, `credential broken: ${describeError(err)}`)
        }
        throw err
      }
    }
  }

  function startFetch(): Promise<AccessToken> {
    const p = fetchWithRetries().finally(() => {
      if (slot.pending === p) delete slot.pending
    })
    slot.pending = p
    return p
  }

  function background(): void {
    log.debug({ expiresInMs: slot.token ? slot.token.expiresAt - now() : undefined }, 'refreshing the token in the background; callers keep using the current one')
    startFetch().catch((e) => {
      // The provider that started the refresh was closed: the next call of another provider starts one.
      if ((e as Record<symbol, unknown>)[CLOSED_PROVIDER] !== undefined) return
      // The current token is still valid; try again a little later rather than on every call.
      if (slot.token) slot.refreshAt = Math.min(slot.staleAt, now() + Math.max(1000, (slot.staleAt - now()) / 4))
      log.warn({ err: describeError(e) }, 'background token refresh failed')
    })
  }

  /**
   * Waits ended by close(): one listener on the lifetime signal however many callers wait (64
   * deliveries waiting for a renewal would otherwise trip MaxListenersExceededWarning).
   */
  const closeWaiters = new Set<(reason: unknown) => void>()
  lifetime.signal.addEventListener('abort', () => {
    for (const w of closeWaiters) w(lifetime.signal.reason)
    closeWaiters.clear()
  }, { once: true })

  /** The reason of the first aborted of the caller's signal and the provider's lifetime (as AbortSignal.any orders them). */
  const abortedBy = (callerSignal?: AbortSignal): { reason: unknown } | undefined =>
    callerSignal?.aborted ? { reason: callerSignal.reason } : lifetime.signal.aborted ? { reason: lifetime.signal.reason } : undefined

  function waitFor(p: Promise<AccessToken>, callerSignal?: AbortSignal): Promise<AccessToken> {
    const aborted = abortedBy(callerSignal)
    if (aborted) return Promise.reject(aborted.reason)
    return new Promise((resolve, reject) => {
      const onAbort = () => { closeWaiters.delete(reject); reject(callerSignal!.reason) }
      callerSignal?.addEventListener('abort', onAbort, { once: true })
      closeWaiters.add(reject)
      p.then(resolve, reject).finally(() => {
        callerSignal?.removeEventListener('abort', onAbort)
        closeWaiters.delete(reject)
      })
    })
  }

  /**
   * Waits for the shared fetch of the slot, starting one when none is in flight. The caller's signal
   * ends only this wait; the fetch goes on for the other waiters. When the provider that started the
   * fetch is closed, this caller detaches and its own provider fetches instead. (No AbortSignal.any
   * of the caller's and the lifetime signal: on Node 20 it leaves an entry in the long-lived one.)
   */
  async function waitShared(callerSignal?: AbortSignal): Promise<AccessToken> {
    for (;;) {
      const aborted = abortedBy(callerSignal)
      if (aborted) throw aborted.reason
      if (!slot.pending) {
        if (slot.brokenError && now() < slot.brokenUntil) throw new FailFastError(name, slot.brokenError, slot.brokenUntil)
        startFetch()
      }
      try {
        return await waitFor(slot.pending!, callerSignal)
      } catch (e) {
        const closed = (e as Record<symbol, unknown> | undefined)?.[CLOSED_PROVIDER]
        if (closed !== undefined && closed !== self && !abortedBy(callerSignal)) continue
        throw e
      }
    }
  }

  /** The cached token when it can be used now (starting a background refresh when one is due), else undefined. */
  function usableNow(): AccessToken | undefined {
    if (slot.token === undefined) return undefined
    const t = now()
    if (t < slot.refreshAt) return slot.token
    if (t < slot.staleAt) {
      if (!slot.pending && !lifetime.signal.aborted) background()
      return slot.token
    }
    return undefined
  }

  function getToken(opts?: { signal?: AbortSignal }): Promise<AccessToken> {
    return usableNow() !== undefined ? slot.resolved! : waitShared(opts?.signal)
  }

  const authorizationOf = (t: AccessToken) => `${t.tokenType === 'DPoP' ? 'DPoP' : 'Bearer'} ${reveal(t.value)!}`

  return {
    name,
    cacheKey,
    ...(ownDispatcher ? { dispatcher: ownDispatcher } : {}),
    getToken,
    invalidate(token: AccessToken) {
      if (slot.token && reveal(slot.token.value) === reveal(token.value)) {
        slot.invalidated = reveal(token.value)
        delete slot.token
        delete slot.resolved
        slot.refreshAt = 0
        slot.staleAt = 0
      }
    },
    async authorize(request, token, opts) {
      // `opts` as given: its signal is read only when the call has to wait for a token (shared/http makes it lazily).
      const t = token ?? (await getToken(opts))
      const headers: Record<string, string> = { authorization: authorizationOf(t) }
      if (dpop) headers.dpop = await dpop.proof(request.method, request.url, reveal(t.value)!, serverNow())
      return { token: t, headers }
    },
    authorizeNow() {
      if (dpop) return undefined
      const t = usableNow()
      return t && { token: t, headers: { authorization: authorizationOf(t) } }
    },
    noteResponse(url, headers) {
      if (dpop) dpop.noteNonce(url, headers['dpop-nonce'] as string | string[] | undefined)
    },
    stats: () => ({ ...counters }),
    explain: () => explainTokenRequest(config, name, serverNow()),
    async close() {
      if (!lifetime.signal.aborted) lifetime.abort(shutdownError())
      await ownDispatcher?.close()
    },
  }
}

/**
 * The redacted token request a credential would send (method, URL, headers, form fields with
 * secrets as [REDACTED], assertion header and claims), without sending it.
 *
 * @example
 * explainTokenRequest({ tokenUrl, clientId: 'c', clientAuth: { secret: 's3cret' } })
 * // → { method: 'POST', url, headers: { authorization: 'Basic [REDACTED]', … }, form: { grant_type: 'client_credentials' } }
 */
export function explainTokenRequest(config: CredentialConfig, name = 'credential', nowMs = Date.now()): ReturnType<typeof redactPlan> {
  if (applyPreset(config).grant === 'static') return { method: 'NONE', url: '', headers: { authorization: `${config.tokenType ?? 'Bearer'} [REDACTED]` }, form: {}, assertions: [] }
  const r = resolveCredential(name, config)
  const url = r.tokenUrl ?? `(discovered from ${r.issuer})`
  const grant: Array<[string, string]> = r.grant === 'refresh_token' ? [['grant_type', 'refresh_token'], ['refresh_token', '[REDACTED]']]
    : [['grant_type', r.grant === 'jwt_bearer' ? JWT_BEARER_GRANT : 'client_credentials']]
  return redactPlan(planTokenRequest(r, url, grant, nowMs))
}

