import type { Readable } from 'node:stream'
import { Pool, type Dispatcher } from 'undici'
import { HttpStatusError, errorCodes, parseRetryAfter } from '../errors.ts'
import { silentLogger, type Logger } from '../log/index.ts'
import { abortAfter, linkAbort, unlinkAbort } from './abort.ts'
import { OAuthChallengeError, parseWwwAuthenticate, type Challenge } from './challenge.ts'
import { redactedExcerpt } from './excerpt.ts'
import { isRetryableStatus } from './status.ts'
import type { HttpClient, HttpRequest, HttpResponse, RequestCredential } from './types.ts'

export interface HttpClientOptions {
  log?: Logger
  /** Connections per origin (default 16). */
  connections?: number
  /** Response bodies are cut at this size (default 1 MiB): reading stops there and `truncated` is set. A request may set its own. */
  maxBodyBytes?: number
  /** Default per-request timeout (default 30 s). */
  timeoutMs?: number
}

/** The error for a final non-2xx/3xx response: retryable for 408/429/5xx (with Retry-After), permanent otherwise. */
export function statusError(url: URL, method: string, res: HttpResponse): HttpStatusError {
  const { message, excerpt } = answered(url, method, res)
  const retryAfterMs = isRetryableStatus(res.status) ? parseRetryAfter(res.headers['retry-after'] as string | undefined) : undefined
  return withResponse(new HttpStatusError(message, res.status, retryAfterMs !== undefined ? { retryAfterMs } : {}), res, excerpt)
}

/** `METHOD origin/path answered STATUS<detail>: "<excerpt>"`, with the body's redacted excerpt. */
function answered(url: URL, method: string, res: HttpResponse, detail = ''): { message: string; excerpt: string } {
  const excerpt = redactedExcerpt(res.body)
  return { message: `${method} ${url.origin}${url.pathname} answered ${res.status}${detail}${excerpt ? `: "${excerpt}"` : ''}`, excerpt }
}

/** `err` with the (non-enumerable) response it reports: status, headers and the redacted excerpt. */
function withResponse<E extends Error>(err: E, res: HttpResponse, excerpt: string): E {
  Object.defineProperty(err, 'response', { enumerable: false, value: { status: res.status, headers: res.headers, excerpt } })
  return err
}

/**
 * The abort state of one request (all its attempts): aborted by its timer or the caller's signal,
 * it aborts the exchange in progress. It is also the options object given to `authorize()`: the
 * AbortSignal bounding a token wait is only made when the provider reads `signal`, which it does
 * only when it has to wait, so a request with a cached token allocates no signal and no listener.
 */
class RequestState {
  aborted = false
  reason: unknown = undefined
  exchange: Exchange | undefined = undefined
  #controller: AbortController | undefined = undefined

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController()
      if (this.aborted) this.#controller.abort(this.reason)
    }
    return this.#controller.signal
  }

  abort(reason?: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    this.exchange?.abort(reason)
    this.#controller?.abort(reason)
  }
}

/**
 * One request/response on an undici dispatcher (the DispatchHandler API): the response body is
 * collected up to `maxBody` bytes, without the Readable stream, AsyncResource and abort-signal
 * listener that `dispatcher.request()` sets up per request. Aborting rejects at once, even while
 * the request still waits in the pool's queue.
 */
class Exchange implements Dispatcher.DispatchHandler {
  /** Whether the response head arrived (a failure after it is a body failure). */
  started = false
  readonly response: Promise<HttpResponse>
  #resolve!: (r: HttpResponse) => void
  #reject!: (e: unknown) => void
  #settled = false
  #aborted = false
  #reason: unknown = undefined
  #controller: Dispatcher.DispatchController | undefined = undefined
  #status = 0
  #headers: HttpResponse['headers'] = {}
  #chunks: Buffer[] = []
  #size = 0

  constructor(private readonly maxBody: number) {
    this.response = new Promise<HttpResponse>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
  }

  abort(reason: unknown): void {
    if (this.#settled || this.#aborted) return
    this.#aborted = true
    this.#reason = reason
    this.#controller?.abort(reason as Error)
    this.#fail(reason)
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    // Called again if undici retries the request on another connection.
    this.#controller = controller
    if (this.#aborted) controller.abort(this.#reason as Error)
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: HttpResponse['headers']): void {
    if (statusCode < 200) return // 1xx: informational
    this.started = true
    this.#status = statusCode
    this.#headers = headers
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return
    const size = this.#size
    if (size + chunk.length <= this.maxBody) {
      this.#chunks.push(chunk)
      this.#size = size + chunk.length
      return
    }
    // Past the limit: answer with what fits and stop reading (the connection is dropped), so a
    // huge or endless body costs neither memory nor the time to drain it.
    this.#chunks.push(chunk.subarray(0, this.maxBody - size))
    this.#settle(true)
    controller.abort(new Error('response body over the size limit'))
  }

  onResponseEnd(): void {
    this.#settle(false)
  }

  #settle(truncated: boolean): void {
    if (this.#settled) return
    this.#settled = true
    const c = this.#chunks
    const body = c.length === 0 ? '' : c.length === 1 ? c[0]!.toString('utf8') : Buffer.concat(c).toString('utf8')
    this.#resolve(truncated ? { status: this.#status, headers: this.#headers, body, truncated } : { status: this.#status, headers: this.#headers, body })
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    this.#fail(error)
  }

  #fail(error: unknown): void {
    if (this.#settled) return
    this.#settled = true
    this.#chunks = []
    this.#reject(error)
  }
}

/** A 401 that a resend would fix, but the body was a stream: retryable, since the next attempt brings a fresh body (and token or nonce). */
function notResent(url: URL, method: string, error: string | undefined, challenge: Challenge): OAuthChallengeError {
  return new OAuthChallengeError(`${method} ${url.origin}${url.pathname} answered 401${error ? ` ${error}` : ''}; not resent because the request body is a stream`, 401, challenge, { retryable: true })
}

/**
 * Whether a 401 to a request carrying our token rejects the token: `invalid_token`, or a 401 that
 * names no error (Microsoft Graph's `Bearer realm=""` challenge, Salesforce's INVALID_SESSION_ID
 * body without one). A challenge naming another error (`invalid_request`), or only other schemes
 * (`Basic`), is not about the token: a new one would be refused the same way.
 */
function rejectsToken(challenges: Challenge[], error: string | undefined): boolean {
  if (error !== undefined) return error === 'invalid_token'
  return challenges.length === 0 || challenges.some((c) => /^(bearer|dpop)$/i.test(c.scheme))
}

/** What was done about a 401 before it failed: nothing (not about the token), a renewal, or none (the credential kept a renewed token an API rejected). */
type Renewal = 'none' | 'renewed' | 'kept'

const RENEWAL_TEXT: Record<Renewal, string> = {
  none: '',
  renewed: ' again after renewing the access token',
  kept: '; not renewed: the token renewed after an earlier 401 was rejected too',
}

/**
 * The error of a 401: the challenge's error, what was done about the token, the body's redacted
 * excerpt. Not retryable as a request (the same token, or a renewed one, is refused), but a failure
 * of the credential (`isCredentialOutage`): a delivery waits for it.
 */
function unauthorized(url: URL, method: string, res: HttpResponse, error: string | undefined, challenge: Challenge, renewal: Renewal): OAuthChallengeError {
  const { message, excerpt } = answered(url, method, res, `${error ? ` ${error}` : ''}${RENEWAL_TEXT[renewal]}`)
  // Only a token rejected after its renewal (or kept from one) says the credential is down; a 401 naming another error or scheme judges this request.
  return withResponse(new OAuthChallengeError(message, 401, challenge, { credentialOutage: renewal !== 'none' }), res, excerpt)
}

/** A character undici refuses in a header value: anything but tab, printable ASCII and U+0080–U+00FF. */
const BAD_HEADER_CHAR = /[^\t\x20-\x7e\x80-\xff]/

/**
 * Why undici refused a request as built: its message ("invalid x-api-key header" names the header,
 * never the value), made plain when the header's value has a character it cannot send. Only an
 * explanation after undici's own check failed; the check itself stays undici's.
 */
function refusalReason(message: string, headers: Record<string, string> | undefined): string {
  const name = /^invalid (.+) header$/.exec(message)?.[1]
  if (name === undefined || !headers) return message
  const lower = name.toLowerCase()
  const value = Object.entries(headers).find(([k]) => k.toLowerCase() === lower)?.[1]
  return typeof value === 'string' && BAD_HEADER_CHAR.test(value) ? `header "${name}" has a character that cannot be sent in an HTTP header (only tab, printable ASCII and U+0080–U+00FF)` : message
}

/** One attempt: dispatches the request and resolves with the (bounded) response once its body is read. */
async function sendOnce(dispatcher: Dispatcher, url: URL, origin: string, method: string, headers: Record<string, string> | undefined, body: string | Buffer | Readable | undefined, state: RequestState, timeoutMs: number, bodyLimit: number): Promise<HttpResponse> {
  const exchange = new Exchange(bodyLimit)
  state.exchange = exchange
  if (state.aborted) exchange.abort(state.reason)
  else dispatcher.dispatch({ origin, path: url.search ? `${url.pathname}${url.search}` : url.pathname, method: method as Dispatcher.HttpMethod, headers, body: body ?? null }, exchange)
  try {
    return await exchange.response
  } catch (e) {
    if (exchange.started) {
      throw new errorCodes.ERR_HTTP_NETWORK(`${method} ${url.origin}${url.pathname}: response body failed: ${(e as { code?: string }).code ?? (e as Error).message}`, { cause: e })
    }
    if ((e as Error).name === 'TimeoutError' || (state.aborted && (state.reason as Error | undefined)?.name === 'TimeoutError')) {
      throw new errorCodes.ERR_HTTP_TIMEOUT(`${method} ${url.origin}${url.pathname} timed out after ${timeoutMs} ms`, { cause: e })
    }
    if (state.aborted) throw e
    const code = (e as { code?: string }).code
    // undici refused the request as built (a header value it cannot send): permanent. The error
    // names the header only, never the value.
    if (code === 'UND_ERR_INVALID_ARG') throw new errorCodes.ERR_HTTP_REQUEST_INVALID(`${method} ${url.origin}${url.pathname} could not be sent: ${refusalReason((e as Error).message, headers)}`, { cause: e })
    throw new errorCodes.ERR_HTTP_NETWORK(`${method} ${url.origin}${url.pathname} failed: ${code ?? (e as Error).message}`, { cause: e })
  } finally {
    state.exchange = undefined
  }
}

/** What a failed wait for a token is reported as: the request's timeout when its timer ended the wait, else the credential's own error. */
function tokenWaitError(e: unknown, state: RequestState, url: URL, method: string, timeoutMs: number): unknown {
  if (state.aborted && (state.reason as Error | undefined)?.name === 'TimeoutError') {
    return new errorCodes.ERR_HTTP_TIMEOUT(`${method} ${url.origin}${url.pathname} timed out after ${timeoutMs} ms waiting for an access token`, { cause: e })
  }
  return e
}

/**
 * Sends `req` with the credential's Authorization (and DPoP): resent once on a DPoP `use_dpop_nonce`
 * challenge, and once with a renewed token on a 401 that rejects the token (rejectsToken); a 401
 * after the renewal, or naming another error, fails. Every token a 401 rejects is handed to
 * `invalidate`: a credential that keeps it instead (its renewal was rejected too) gives the same
 * token back, and the request fails at once instead of being resent with it.
 */
async function sendAuthorized(dispatcher: Dispatcher, url: URL, origin: string, method: string, req: HttpRequest, credential: RequestCredential, state: RequestState, timeoutMs: number, bodyLimit: number, log: Logger): Promise<HttpResponse> {
  const replayable = req.body === undefined || typeof req.body === 'string' || Buffer.isBuffer(req.body)
  let rejected: { token: unknown; res: HttpResponse; error: string | undefined; challenge: Challenge } | undefined
  let nonceRetried = false
  for (;;) {
    let auth: Awaited<ReturnType<typeof credential.authorize>> | undefined
    try {
      // A cached token needs no promise; otherwise `state` is the options object, whose `signal`
      // is made only if the provider reads it (a wait for a token).
      auth = credential.authorizeNow?.({ method, url }) ?? (await credential.authorize({ method, url }, undefined, state))
    } catch (e) {
      throw tokenWaitError(e, state, url, method, timeoutMs)
    }
    if (rejected !== undefined && auth.token === rejected.token) throw unauthorized(url, method, rejected.res, rejected.error, rejected.challenge, 'kept')
    const res = await sendOnce(dispatcher, url, origin, method, { ...req.headers, ...auth.headers }, req.body, state, timeoutMs, bodyLimit)
    credential.noteResponse?.(url, res.headers)
    if (res.status !== 401) return rejected === undefined ? res : { ...res, renewed: `access token rejected (401${rejected.error ? ` ${rejected.error}` : ''}); sent again with a renewed one` }
    const challenges = parseWwwAuthenticate(res.headers['www-authenticate'] as string | string[] | undefined)
    const error = challenges.find((c) => c.parameters.error)?.parameters.error
    const challenge = challenges[0] ?? { scheme: 'Bearer', parameters: {} }
    if (error === 'use_dpop_nonce' && !nonceRetried && res.headers['dpop-nonce']) {
      if (!replayable) throw notResent(url, method, error, challenge)
      nonceRetried = true
      continue
    }
    const rejects = rejectsToken(challenges, error)
    // Only this token is dropped: one renewed meanwhile by another request stays. A renewed token
    // rejected again is handed over too, so the credential keeps it instead of renewing per 401.
    if (rejects) credential.invalidate(auth.token)
    if (rejects && rejected === undefined) {
      if (!replayable) throw notResent(url, method, error, challenge)
      rejected = { token: auth.token, res, error, challenge }
      log.info({ credential: credential.name, url: `${url.origin}${url.pathname}` }, `access token rejected (401${error ? ` ${error}` : ''}); renewing once`)
      continue
    }
    throw unauthorized(url, method, res, error, challenge, rejected === undefined ? 'none' : 'renewed')
  }
}

/**
 * The shared HTTP client: undici keep-alive pools per origin. With a `credential` it adds
 * Authorization (and DPoP), renews the token once on a 401 rejecting it (`invalid_token`, or no
 * error named: Microsoft Graph, Salesforce) (and once on a DPoP
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

  const defaultConnections = options.connections ?? 16

  /** The pool for `origin` with `connections` connections at most: one per origin and number. */
  function dispatcherFor(origin: string, connections = defaultConnections): Dispatcher {
    const key = connections === defaultConnections ? origin : `${origin} ${connections}`
    let p = pools.get(key)
    if (!p) pools.set(key, (p = new Pool(origin, { connections, keepAliveTimeout: 10_000 })))
    return p
  }

  async function request(req: HttpRequest & { throwHttpErrors?: boolean }): Promise<HttpResponse> {
    const url = typeof req.url === 'string' ? new URL(req.url) : req.url
    const origin = url.origin
    const method = req.method === undefined ? 'GET' : req.method.toUpperCase()
    const timeoutMs = req.timeoutMs ?? options.timeoutMs ?? 30_000
    // One timer per request and one link to the caller's signal, both released when it ends; no
    // AbortSignal at all unless the request has to wait for a token (./abort.ts).
    const state = new RequestState()
    const external = req.signal
    if (external) linkAbort(external, state)
    const timer = abortAfter(timeoutMs, state)
    try {
      const credential = req.credential
      const dispatcher = credential?.dispatcher ?? dispatcherFor(origin, req.connections)
      const bodyLimit = req.maxBodyBytes ?? maxBody
      const res = credential
        ? await sendAuthorized(dispatcher, url, origin, method, req, credential, state, timeoutMs, bodyLimit, log)
        : await sendOnce(dispatcher, url, origin, method, req.headers, req.body, state, timeoutMs, bodyLimit)
      if (res.status >= 400 && req.throwHttpErrors !== false) throw statusError(url, method, res)
      return res
    } finally {
      clearTimeout(timer)
      if (external) unlinkAbort(external, state)
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
