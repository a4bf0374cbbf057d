import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { TokenProvider } from '../oauth/types.ts'

export interface HttpRequest {
  method?: string
  url: string | URL
  headers?: Record<string, string>
  /**
   * A string or Buffer is replayable: the client resends it once after a 401 `invalid_token` (or a
   * DPoP nonce challenge). A stream (wrap an async iterable with `Readable.from()`) is sent as is and
   * never resent: such a 401 drops the token and fails with a retryable error.
   */
  body?: string | Buffer | Readable
  /** Authenticate with this token provider (Authorization, DPoP), renewing once on a 401 invalid_token. */
  credential?: TokenProvider
  timeoutMs?: number
  signal?: AbortSignal
}

export interface HttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** The response body as text (bounded). */
  body: string
}

/** The shared HTTP client: undici keep-alive pools per origin, never following redirects with credentials. */
export interface HttpClient {
  request(req: HttpRequest): Promise<HttpResponse>
  dispatcherFor(origin: string): Dispatcher
  close(): Promise<void>
}
