import type { Readable } from 'node:stream'
import { Pool, type Dispatcher } from 'undici'
import { PermanentError, RetryableError, WeirError, parseRetryAfter } from '../errors.ts'
import { silentLogger, type Logger } from '../log/index.ts'
import { OAuthChallengeError, parseWwwAuthenticate, redactedExcerpt, type Challenge } from '../oauth/errors.ts'
import type { AccessToken } from '../oauth/types.ts'
import type { HttpClient, HttpRequest, HttpResponse } from './types.ts'

export interface HttpClientOptions {
  log?: Logger
  /** Connections per origin (default 16). */
  connections?: number
  /** Response bodies are cut at this size (default 1 MiB). */
  maxBodyBytes?: number
  /** Default per-request timeout (default 30 s). */
  timeoutMs?: number
}

/** Whether a failed status may succeed on a later attempt (network-class failures are always retryable). */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500
}

/** The error for a final non-2xx/3xx response: retryable for 408/429/5xx (with Retry-After), permanent otherwise. */
export function statusError(url: URL, method: string, res: HttpResponse): WeirError {
  const excerpt = redactedExcerpt(res.body)
  const message = `${method} ${url.origin}${url.pathname} answered ${res.status}${excerpt ? `: "${excerpt}"` : ''}`
  let err: WeirError
  if (isRetryableStatus(res.status)) {
    const retryAfterMs = parseRetryAfter(res.headers['retry-after'] as string | undefined)
    err = new RetryableError(message, { code: 'ERR_HTTP_STATUS', ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) })
  } else err = new PermanentError(message, { code: 'ERR_HTTP_STATUS' })
  Object.assign(err, { status: res.status })
  Object.defineProperty(err, 'response', { enumerable: false, value: { status: res.status, headers: res.headers, excerpt } })
  return err
}

/** A 401 that a resend would fix, but the body was a stream: retryable, since the next attempt brings a fresh body (and token or nonce). */
function notResent(url: URL, method: string, error: string, challenge: Challenge): OAuthChallengeError {
  const e = new OAuthChallengeError(`${method} ${url.origin}${url.pathname} answered 401 ${error}; not resent because the request body is a stream`, 401, challenge)
  e.retryable = true
  return e
}

/**
 * The shared HTTP client: undici keep-alive pools per origin. With a `credential` it adds
 * Authorization (and DPoP), renews the token once on `401 invalid_token` (and once on a DPoP
 * `use_dpop_nonce` challenge), and never follows redirects, so a token never reaches another host.
 * The request's timeout and signal also bound the wait for a token. A stream body cannot be resent:
 * its 401 drops the token and fails retryable, so the next attempt (with a fresh body) gets a new one.
 * Failures are classified: network, timeout, 408, 429 and 5xx are retryable (Retry-After parsed).
 *
 * @example
 * const http = createHttpClient({ log })
 * const res = await http.request({ url: 'https://api.example.com/Patient', credential: ctx.credential('epic') })
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 */
export function createHttpClient(options: HttpClientOptions = {}): HttpClient & { request(req: HttpRequest & { throwHttpErrors?: boolean }): Promise<HttpResponse> } {
  const log = options.log ?? silentLogger
  const pools = new Map<string, Pool>()
  const maxBody = options.maxBodyBytes ?? 1024 * 1024

  function dispatcherFor(origin: string): Dispatcher {
    let p = pools.get(origin)
    if (!p) pools.set(origin, (p = new Pool(origin, { connections: options.connections ?? 16, keepAliveTimeout: 10_000 })))
    return p
  }

  async function once(dispatcher: Dispatcher, url: URL, method: string, headers: Record<string, string>, body: string | Buffer | Readable | undefined, signal: AbortSignal, timeoutMs: number): Promise<HttpResponse> {
    let res: Dispatcher.ResponseData
    try {
      res = await dispatcher.request({ origin: url.origin, path: `${url.pathname}${url.search}`, method: method as Dispatcher.HttpMethod, headers, body: body ?? null, signal })
    } catch (e) {
      if ((e as Error).name === 'TimeoutError' || (signal.aborted && (signal.reason as Error | undefined)?.name === 'TimeoutError')) {
        throw new RetryableError(`${method} ${url.origin}${url.pathname} timed out after ${timeoutMs} ms`, { code: 'ERR_HTTP_TIMEOUT', cause: e })
      }
      if (signal.aborted) throw e
      const code = (e as { code?: string }).code
      throw new RetryableError(`${method} ${url.origin}${url.pathname} failed: ${code ?? (e as Error).message}`, { code: 'ERR_HTTP_NETWORK', cause: e })
    }
    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of res.body) {
        const b = chunk as Buffer
        if (size < maxBody) chunks.push(size + b.length > maxBody ? b.subarray(0, maxBody - size) : b)
        size += b.length
      }
    } catch (e) {
      throw new RetryableError(`${method} ${url.origin}${url.pathname}: response body failed: ${(e as { code?: string }).code ?? (e as Error).message}`, { code: 'ERR_HTTP_NETWORK', cause: e })
    }
    return { status: res.statusCode, headers: res.headers as HttpResponse['headers'], body: Buffer.concat(chunks).toString('utf8') }
  }

  async function request(req: HttpRequest & { throwHttpErrors?: boolean }): Promise<HttpResponse> {
    const url = new URL(req.url)
    const method = (req.method ?? 'GET').toUpperCase()
    const timeoutMs = req.timeoutMs ?? options.timeoutMs ?? 30_000
    const signal = req.signal ? AbortSignal.any([req.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs)
    const credential = req.credential
    const dispatcher = credential?.dispatcher ?? dispatcherFor(url.origin)
    const replayable = req.body === undefined || typeof req.body === 'string' || Buffer.isBuffer(req.body)
    let renewed = false
    let nonceRetried = false
    for (;;) {
      const headers: Record<string, string> = { ...req.headers }
      let token: AccessToken | undefined
      if (credential) {
        let auth: Awaited<ReturnType<typeof credential.authorize>>
        try {
          auth = await credential.authorize({ method, url }, undefined, { signal })
        } catch (e) {
          if (signal.aborted && (signal.reason as Error | undefined)?.name === 'TimeoutError') {
            throw new RetryableError(`${method} ${url.origin}${url.pathname} timed out after ${timeoutMs} ms waiting for an access token`, { code: 'ERR_HTTP_TIMEOUT', cause: e })
          }
          throw e
        }
        token = auth.token
        Object.assign(headers, auth.headers)
      }
      const res = await once(dispatcher, url, method, headers, req.body, signal, timeoutMs)
      if (credential) credential.noteResponse?.(url, res.headers)
      if (credential && res.status === 401) {
        const challenges = parseWwwAuthenticate(res.headers['www-authenticate'] as string | string[] | undefined)
        const error = challenges.find((c) => c.parameters.error)?.parameters.error
        const challenge = challenges[0] ?? { scheme: 'Bearer', parameters: {} }
        if (error === 'use_dpop_nonce' && !nonceRetried && res.headers['dpop-nonce']) {
          if (!replayable) throw notResent(url, method, error, challenge)
          nonceRetried = true
          continue
        }
        if (error === 'invalid_token' && !renewed) {
          credential.invalidate(token!)
          if (!replayable) throw notResent(url, method, error, challenge)
          renewed = true
          log.info({ credential: credential.name, url: `${url.origin}${url.pathname}` }, 'access token rejected (invalid_token); renewing once')
          continue
        }
        throw new OAuthChallengeError(
          `${method} ${url.origin}${url.pathname} answered 401${error ? ` ${error}` : ''}${renewed ? ' again after renewing the access token' : ''}`,
          401,
          challenge,
        )
      }
      if (res.status >= 400 && req.throwHttpErrors !== false) throw statusError(url, method, res)
      return res
    }
  }

  return {
    request,
    dispatcherFor,
    async close() {
      await Promise.all([...pools.values()].map((p) => p.close()))
      pools.clear()
    },
  }
}
