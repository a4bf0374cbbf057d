import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { Agent, type Dispatcher } from 'undici'
import { silentLogger, type Logger } from '../log/index.ts'
import { Secret, reveal, revealPinned } from '../secret.ts'
import type { AccessToken, TokenProvider } from './types.ts'
import { applyPreset, type CredentialConfig, type SecretLike } from './config.ts'
import { cacheKeyOf, clientProofOf, explainTokenRequest, grantParams, resolveCredential, tokenPurposeOf } from './credential.ts'
import { certificateThumbprint } from './keys.ts'
import { DpopSigner, type DpopAlg } from './dpop.ts'
import { createTokenExchange, type TokenExchange } from './exchange.ts'
import { sharedGrant } from './leased-fetch.ts'
import { ProviderLifetime } from './lifetime.ts'
import { RefreshRotations, refreshTokenGrant, type RefreshGrantContext } from './refresh-grant.ts'
import { createRefreshTokenStore, type RefreshTokenStore } from './refresh-store.ts'
import type { AssertionSigner, ResolvedCredential, redactPlan } from './token-endpoint.ts'
import { SlotUser, defaultTokenCache, type ObtainMode, type Obtained, type TokenCache, type TokenRetry } from './token-slot.ts'


export interface TokenProviderOptions {
  log?: Logger
  /** Data directory; the default refresh-token store lives in `<dataDir>/oauth`. */
  dataDir?: string
  store?: RefreshTokenStore
  /**
   * Token state shared by the engines of a cluster (`createPostgresTokenState`): every grant's
   * access token is cached in it and fetched by one engine at a time under its lease, refresh tokens
   * are rotated in it (it replaces `store`), and a refusal by the server makes every engine fail fast.
   */
  shared?: RefreshTokenStore
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
  signer?: AssertionSigner
  /**
   * Told of each failed token request the provider is about to retry (a 429 or 503 and its
   * Retry-After, a network error), as the warning it logs says it: for a command that shows what it
   * waits for. Only the fetches this provider runs (not those of another provider sharing the cache
   * whose result it waits for).
   *
   * @example
   * createTokenProvider('crm', config, { onRetry: (r) => console.error(`${r.error}: waiting ${r.delayMs} ms (attempt ${r.attempt + 1} of ${r.maxAttempts})`) })
   */
  onRetry?: (retry: TokenRetry) => void
}

/** The client-certificate Agent of a credential with `tls` (RFC 8705), for token requests and API calls. */
export function tlsDispatcher(c: CredentialConfig): Agent | undefined {
  if (!c.tls || !(c.tls.cert || c.tls.ca)) return undefined
  const key = reveal(c.tls.key as SecretLike | undefined)
  return new Agent({ connect: { ...(c.tls.cert ? { cert: c.tls.cert } : {}), ...(key ? { key } : {}), ...(c.tls.ca ? { ca: c.tls.ca } : {}) } })
}

/**
 * The grant of the credential as one attempt: a static token, a token request (through the shared
 * state when there is one), or the refresh-token rotation.
 */
function grantObtainer(r: ResolvedCredential, c: CredentialConfig, exchange: TokenExchange, refresh: Omit<RefreshGrantContext, 'send'>, shared: boolean): (signal: AbortSignal, mode?: ObtainMode) => Promise<Obtained> {
  if (r.grant === 'static') {
    const token: AccessToken = { value: Secret.is(c.token) ? c.token : new Secret(String(c.token), 'literal'), tokenType: c.tokenType ?? 'Bearer', expiresAt: Infinity, extra: {} }
    return async () => ({ token, lifetimeMs: Infinity })
  }
  if (r.grant === 'refresh_token') return (signal, mode) => refreshTokenGrant({ ...refresh, send: exchange.send }, signal, mode === 'check')
  const params = grantParams(r.grant)
  if (shared) return (signal, mode) => sharedGrant(refresh, (s) => exchange.send(params, s), signal, mode)
  return (signal) => exchange.send(params, signal)
}

/** How long close() waits, beyond the refresh request itself, for its rotated token to be written (the store's retries included). */
const ROTATION_WRITE_GRACE_MS = 5_000

/** The host (and port) of the token endpoint or issuer, for status displays. */
function hostOf(url: string | undefined): string | undefined {
  return url && URL.canParse(url) ? new URL(url).host : undefined
}

/**
 * The provider's logger, bound to the credential's name unless the caller's logger is bound to it
 * already (`weir run` binds channel and credential): pino would write the key twice in every line.
 */
function credentialLogger(log: Logger, name: string): Logger {
  return 'credential' in log.bindings() ? log : log.child({ credential: name })
}

/** The store key of a grant's access token in the shared state (the cache key, hashed: it names the client and scopes). */
function sharedKeyOf(cacheKey: string): string {
  return `token:${createHash('sha256').update(cacheKey).digest('base64url')}`
}

/** The provider of one credential as createTokenProvider makes it. */
export interface CredentialTokenProvider extends TokenProvider {
  /** The slot's key in the token cache. */
  readonly cacheKey: string
  /** The credential's token request, redacted. */
  explain(): ReturnType<typeof redactPlan>
  /**
   * A new token from the token endpoint for an operator's check (`weir token`), so a wrong client
   * secret or key shows: neither the cached access token nor one the store holds is used or
   * replaced in the cache, fail-fast and Retry-After do not hold it back, and a refusal is not
   * recorded for the engines sharing the store. A refresh_token grant refreshes under the store's
   * lease and stores the rotated refresh token (compare-and-swap), as every refresh does; the
   * token it gets is stored with it, as a fetched token is (in the cluster's shared state too).
   * Retries as any fetch does (`onRetry` is told).
   *
   * @example
   * const provider = createTokenProvider('crm', config, { store })
   * try { console.log((await provider.checkToken()).scope) } finally { await provider.close() }
   * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
   */
  checkToken(): Promise<AccessToken>
}

/**
 * Creates the token provider of one credential: cached tokens refreshed in the background, one
 * fetch in flight per cache key (per cluster with `shared`), transient retries with backoff
 * (honouring Retry-After), fail-fast after terminal errors, the refresh-token store's lease, DPoP and mTLS.
 *
 * @example
 * const provider = createTokenProvider('epic', { preset: 'epic-backend', tokenUrl, clientId,
 *   clientAuth: { privateKey: new Secret(pem), kid: 'k1' }, scope: 'system/Patient.rs' })
 * const { headers } = await provider.authorize({ method: 'GET', url })
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.4
 */
export function createTokenProvider(name: string, config: CredentialConfig, options: TokenProviderOptions = {}): CredentialTokenProvider {
  const r = resolveCredential(name, config)
  const c = applyPreset(config)
  const log = credentialLogger(options.log ?? silentLogger, name)
  const now = options.now ?? (() => Date.now())
  const storeKey = c.storeKey ?? name
  const dpopAlg: DpopAlg | undefined = c.dpop ? (typeof c.dpop === 'object' && c.dpop.alg ? c.dpop.alg : 'ES256') : undefined
  const ownDispatcher = tlsDispatcher(c)
  const dispatcher = options.dispatcher ?? ownDispatcher
  const certThumbprint = c.tls?.cert ? certificateThumbprint(c.tls.cert) : undefined
  const sharedKey = cacheKeyOf(r, storeKey, dpopAlg, certThumbprint, r.grant === 'static' ? reveal(c.token as SecretLike | undefined) : undefined)
  // In this process the slot also tells the client's secret and keys apart; what is stored (the shared key) does not hold them.
  const cacheKey = JSON.stringify([sharedKey, clientProofOf(r)])
  const slot = (options.cache ?? defaultTokenCache).slot(cacheKey)
  const dpop = dpopAlg ? (slot.dpop ??= new DpopSigner(dpopAlg)) : undefined
  let store = options.shared ?? options.store
  const exchange = createTokenExchange(r, { log, now, ...(dispatcher ? { dispatcher } : {}), ...(dpop ? { dpop } : {}), ...(options.signer ? { signer: options.signer } : {}) })
  const lifetime = new ProviderLifetime(name)
  const rotations = new RefreshRotations()
  // A DPoP-bound access token is bound to this process's key: no other engine could use it.
  const obtain = grantObtainer(r, c, exchange, {
    name, key: r.grant === 'refresh_token' ? storeKey : sharedKeyOf(sharedKey), slot, now, clockSkewSec: r.clockSkewSec, failFastMs: r.failFastMs,
    shareAccessToken: !dpop, tokenFor: tokenPurposeOf(r, certThumbprint), clientProof: clientProofOf(r), seeded: revealPinned(c.refreshToken as SecretLike | undefined), rotations,
    authorizable: c.authorizationUrl !== undefined || c.issuer !== undefined,
    store: () => (store ??= createRefreshTokenStore({ dir: join(options.dataDir ?? 'data', 'oauth') })),
  }, options.shared !== undefined && !dpop)
  const user = new SlotUser(slot, { name, log, ...(options.onRetry ? { onRetry: options.onRetry } : {}), now, random: options.random ?? Math.random, clockSkewSec: r.clockSkewSec, failFastMs: r.failFastMs, maxAttempts: r.maxAttempts, lifetime, obtain, counters: exchange.counters })
  const endpoint = hostOf(r.tokenUrl ?? r.issuer)
  // A static token is sent with the scheme its config names (tokenType); a fetched one as Bearer or DPoP.
  const scheme = (t: AccessToken) => (t.tokenType === 'DPoP' ? 'DPoP' : r.grant === 'static' ? t.tokenType : 'Bearer')
  const authorizationOf = (t: AccessToken) => `${scheme(t)} ${reveal(t.value)!}`

  return {
    name,
    cacheKey,
    ...(ownDispatcher ? { dispatcher: ownDispatcher } : {}),
    getToken: (opts) => user.getToken(opts),
    invalidate: (token) => user.invalidate(token),
    fetchNow: () => user.fetchNow(),
    checkToken: () => user.checkToken(),
    async authorize(request, token, opts) {
      // `opts` as given: its signal is read only when the call has to wait for a token.
      const t = token ?? (await user.getToken(opts))
      const headers: Record<string, string> = { authorization: authorizationOf(t) }
      if (dpop) headers.dpop = await dpop.proof(request.method, request.url, reveal(t.value)!, exchange.serverNow())
      return { token: t, headers }
    },
    authorizeNow() {
      if (dpop) return undefined
      const t = user.usableNow()
      return t && { token: t, headers: { authorization: authorizationOf(t) } }
    },
    noteResponse(url, headers) {
      if (dpop) dpop.noteNonce(url, headers['dpop-nonce'] as string | string[] | undefined)
    },
    stats: () => ({ ...exchange.counters }),
    status: () => ({
      ...exchange.counters,
      grant: r.grant,
      ...(endpoint ? { endpoint } : {}),
      ...(slot.token?.scope ? { scope: slot.token.scope } : {}),
      ...(slot.token ? { expiresAt: slot.token.expiresAt } : {}),
      ...(slot.fetchedAt !== undefined ? { fetchedAt: slot.fetchedAt } : {}),
      ...(slot.brokenError && slot.brokenUntil > now() ? { failingFastUntil: slot.brokenUntil } : {}),
      ...(slot.lastFailure ? { lastFailure: { ...slot.lastFailure } } : {}),
    }),
    explain: () => explainTokenRequest(config, name, exchange.serverNow()),
    async close() {
      lifetime.close()
      // A refresh request already sent runs to its end and its rotated token is written before the
      // dispatcher closes: the server has spent the old one. Bounded by a request, its one resend and the writes.
      if (!(await rotations.settled(2 * r.timeoutMs + ROTATION_WRITE_GRACE_MS))) log.error('provider closed while a refresh-token rotation was still running; the rotated refresh token may not be stored')
      else if (rotations.unwritten) log.error('provider closed with a rotated refresh token the store did not take; the credential will need re-authorization')
      await ownDispatcher?.close()
    },
  }
}
