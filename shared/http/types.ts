import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'

export interface HttpRequest {
  method?: string
  url: string | URL
  headers?: Record<string, string>
  /**
   * A string or Buffer is replayable: the client resends it once after a 401 rejecting the token
   * (`invalid_token`, or no error named) or a DPoP nonce challenge. A stream (wrap an async iterable
   * with `Readable.from()`) is sent as is and never resent: such a 401 drops the token and fails with
   * a retryable error.
   */
  body?: string | Buffer | Readable
  /** Authenticate with this credential (Authorization, DPoP), renewing once on a 401 that rejects the token. */
  credential?: RequestCredential
  timeoutMs?: number
  signal?: AbortSignal
  /** Most bytes of the response body read (default: the client's, 1 MiB); past it reading stops and `truncated` is set. */
  maxBodyBytes?: number
  /**
   * Connections to the request's origin at most (default: the client's, 16); requests beyond wait
   * for a free one. Requests naming the same origin and number share one pool of connections. Not
   * applied to a credential that brings its own connections (mTLS).
   */
  connections?: number
}

/**
 * What the client needs of a credential to authenticate requests; shared/oauth's TokenProvider is
 * one. `T` is the credential's token, handed back to `invalidate` after a 401 that rejects it.
 */
export interface RequestCredential<T = unknown> {
  readonly name: string
  /** Headers for one request (Authorization, DPoP); `options.signal` bounds a wait for a token. */
  authorize(request: { method: string; url: string | URL }, token?: T, options?: { signal?: AbortSignal }): Promise<{ token: T; headers: Record<string, string> }>
  /** `authorize()` without the promise when no wait and no signing is needed; undefined otherwise. */
  authorizeNow?(request: { method: string; url: string | URL }): { token: T; headers: Record<string, string> } | undefined
  /** Drops `token` if it is still the current one. */
  invalidate(token: T): void
  /** Dispatcher for the request (a client certificate for certificate-bound tokens). */
  dispatcher?: Dispatcher
  /** Sees each response to a request it authorized (a `DPoP-Nonce` header). */
  noteResponse?(url: string | URL, headers: Record<string, string | string[] | undefined>): void
}

export interface HttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** The response body as text (bounded). */
  body: string
  /** True when the body went on past the size limit: `body` holds only its start and the connection was dropped. */
  truncated?: boolean
  /** Set when the request went out a second time with a renewed access token, after a 401 rejected the first: what happened, in words. */
  renewed?: string
}

/** The shared HTTP client: undici keep-alive pools per origin, never following redirects with credentials. */
export interface HttpClient {
  request(req: HttpRequest): Promise<HttpResponse>
  dispatcherFor(origin: string): Dispatcher
  close(): Promise<void>
}
