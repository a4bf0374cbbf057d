import type { Dispatcher } from 'undici'
import type { Secret } from '../secret.ts'
import type { RequestCredential } from '../http/types.ts'

/** An access token as the client holds it. `value` prints as [REDACTED]. */
export interface AccessToken {
  value: Secret
  tokenType: string
  /** Epoch ms, in local clock, already corrected for the server's clock offset. */
  expiresAt: number
  scope?: string
  /** Extra response fields a provider returns (e.g. Salesforce `instance_url`). Never tokens. */
  extra: Record<string, unknown>
}

/**
 * A credential's token requests since its provider was created. Every request sent ends as either
 * a fetched token or a failed request (`tokenRequests = tokensFetched + tokenRequestsFailed` once none is in flight).
 */
export interface TokenCounters {
  /** Requests sent to the token endpoint, retries and resends included. */
  tokenRequests: number
  /** Requests that returned an access token. */
  tokensFetched: number
  /** Requests that returned none: an error response (e.g. invalid_client), an unusable response, a network error or timeout. */
  tokenRequestsFailed: number
  /** Fetches that failed after their retries (one per failure a caller saw, however many requests it took). */
  tokenErrors: number
}

/** A credential's state as `TokenProvider.status()` reports it. Times are epoch ms; never a token. */
export interface CredentialStatus extends TokenCounters {
  /** The grant (`client_credentials`, `jwt_bearer`, `refresh_token`, `static`) and the token endpoint's (or issuer's) host. */
  grant?: string
  endpoint?: string
  /** The scope the server granted with the current token. */
  scope?: string
  /** When the current token was obtained and when it expires; absent before the first token. */
  fetchedAt?: number
  expiresAt?: number
  /** Calls fail at once without contacting the token endpoint until then (after a non-retryable error). */
  failingFastUntil?: number
  /** The last failed fetch (cleared by the next success): its time, error code and message (an OAuth error's code and description, never a secret). */
  lastFailure?: { at: number; code: string; message: string; error?: string }
}

/**
 * One credential's token source. The contract every destination relies on; implemented in
 * shared/oauth/provider.ts.
 */
export interface TokenProvider extends RequestCredential<AccessToken> {
  readonly name: string
  /** A valid token: cached, refreshed in the background before expiry, one fetch in flight however many callers wait. */
  getToken(options?: { signal?: AbortSignal }): Promise<AccessToken>
  /**
   * A token request now, bypassing the cached token and fail-fast (a running engine's check, e.g. the dashboard's; `weir token` uses `checkToken`); joins a
   * fetch already in flight. Its outcome updates the cache and `status()` like any fetch. Optional.
   */
  fetchNow?(): Promise<AccessToken>
  /**
   * Drops `token` if it is still the current one (after a 401 invalid_token), so the next call
   * renews it; a token that itself renewed a rejected one is kept for `failFastMs` instead (one
   * renewal per credential for a persistent 401, not one per request).
   */
  invalidate(token: AccessToken): void
  /**
   * Headers to add to one API request (Authorization, and DPoP with `ath` when configured).
   * `options.signal` (the request's timeout or abort) bounds the wait for a token; the shared
   * fetch goes on for other callers.
   */
  authorize(request: { method: string; url: string | URL }, token?: AccessToken, options?: { signal?: AbortSignal }): Promise<{ token: AccessToken; headers: Record<string, string> }>
  /**
   * `authorize()` without the promise, when it needs no wait and no signing: the cached token is
   * usable now and there is no DPoP proof to make (a refresh due is started in the background, as
   * `authorize()` does). Undefined otherwise: then call `authorize()`. Optional; a hot-path shortcut.
   */
  authorizeNow?(request: { method: string; url: string | URL }): { token: AccessToken; headers: Record<string, string> } | undefined
  /** Dispatcher for API calls (carries the client certificate for certificate-bound tokens), if the credential needs one. */
  dispatcher?: Dispatcher
  /** Lets the provider learn from an API response to a request it authorized (a `DPoP-Nonce` header, RFC 9449 §9). */
  noteResponse?(url: string | URL, headers: Record<string, string | string[] | undefined>): void
  /** Counters for live displays, metrics and tests. */
  stats(): TokenCounters
  /** Where the credential stands now, for dashboards, metrics and alerts. Optional: providers a test builds may lack it. */
  status?(): CredentialStatus
  close(): Promise<void>
}
