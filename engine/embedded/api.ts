import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { isJsonContentType } from '../../shared/http/index.ts'
import { SENSITIVE_HEADERS } from '../../shared/log/index.ts'
import { REDACTED, scrubSecrets } from '../../shared/secret.ts'
import type { AuthorizationServer } from './authorization-server.ts'

/** One scripted answer of the embedded API. */
export interface ApiAnswer {
  status?: number
  json?: unknown
  body?: string
  headers?: Record<string, string>
  /** Wait this long before answering (slow-API faults). */
  delayMs?: number
}

export interface ApiRoute {
  /** HTTP method; any when omitted. */
  method?: string
  /** Path, exact, or ending in `*` for a prefix. */
  path: string
  /** Answers in order; the last one repeats. Default: 200 `{}`. */
  answers?: ApiAnswer[]
  /** Require a bearer token the verifier accepts (401 invalid_token otherwise). Default true when a verifier is set. */
  auth?: boolean
}

export interface RecordedRequest {
  method: string
  path: string
  query: Record<string, string>
  headers: Record<string, string>
  body: string
  json?: unknown
  /** Route index that answered, or -1 for 404. */
  route: number
  status: number
  at: number
}

export interface EmbeddedApiOptions {
  routes?: ApiRoute[]
  /** Checks a bearer token (and DPoP proof); resolves to a reason string when refused, null when accepted. */
  verifyToken?: (token: string, req: { method: string; url: string; headers: Record<string, string> }) => Promise<string | null>
  /**
   * Answer a request that carries no bearer token (one sent with an API key, or without
   * authentication) as any other; a token the verifier refuses still gets 401. Default false: a
   * route that requires a token refuses a request without one.
   */
  anonymous?: boolean
  /** Keep at most this many recorded requests (oldest dropped). Default 100,000. */
  maxRecorded?: number
  /** Called with each request once it is answered (its status set), e.g. to log it. */
  onAnswered?: (request: RecordedRequest) => void
}

export interface EmbeddedApi {
  url: string
  requests: RecordedRequest[]
  setRoutes(routes: ApiRoute[]): void
  close(): Promise<void>
}

const MAX_BODY = 10 * 1024 * 1024

function matches(route: ApiRoute, method: string, path: string): boolean {
  if (route.method && route.method.toUpperCase() !== method) return false
  return route.path.endsWith('*') ? path.startsWith(route.path.slice(0, -1)) : route.path === path
}

const SENSITIVE = new Set(SENSITIVE_HEADERS)

/**
 * A header as recorded: recorded requests show up in test reports and are public API. The headers
 * the logger redacts keep only their auth scheme ("Bearer [REDACTED]") or nothing ("[REDACTED]");
 * any other header loses every registered secret value it contains.
 */
function maskHeader(name: string, value: string): string {
  if (SENSITIVE.has(name)) {
    const scheme = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*) +\S/.exec(value)
    return scheme ? `${scheme[1]} ${REDACTED}` : REDACTED
  }
  return scrubSecrets(value)
}

/**
 * The embedded API used by the channel test harness and the demo: a loopback HTTP server whose
 * routes answer as scripted (status, JSON, headers, delays, a sequence for retries), which checks
 * bearer tokens with the embedded authorization server and records every request it received.
 */
export async function startEmbeddedApi(options: EmbeddedApiOptions = {}): Promise<EmbeddedApi> {
  let routes = options.routes ?? [{ path: '*' }]
  const served = new Map<number, number>()
  const requests: RecordedRequest[] = []
  const maxRecorded = options.maxRecorded ?? 100_000

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => { size += c.length; if (size <= MAX_BODY) chunks.push(c) })
    req.on('end', () => void handle(req, res, Buffer.concat(chunks).toString('utf8')).catch(() => { if (!res.headersSent) { res.statusCode = 500; res.end() } }))
  })
  server.keepAliveTimeout = 30_000

  async function handle(req: IncomingMessage, res: ServerResponse, body: string): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const method = (req.method ?? 'GET').toUpperCase()
    const headers: Record<string, string> = {}
    const raw: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) raw[k] = Array.isArray(v) ? v.join(', ') : v
    for (const [k, v] of Object.entries(raw)) headers[k] = maskHeader(k, v)
    let json: unknown
    if (body && isJsonContentType(headers['content-type'] ?? '')) { try { json = JSON.parse(body) } catch { /* recorded as text */ } }
    const index = routes.findIndex((r) => matches(r, method, url.pathname))
    const rec: RecordedRequest = { method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers, body, ...(json !== undefined ? { json } : {}), route: index, status: 0, at: Date.now() }
    requests.push(rec)
    if (requests.length > maxRecorded) requests.splice(0, requests.length - maxRecorded)
    const send = (status: number, payload: string, extra: Record<string, string> = {}) => {
      rec.status = status
      res.writeHead(status, { 'content-type': 'application/json', ...extra })
      res.end(payload)
      options.onAnswered?.(rec)
    }
    if (index < 0) return send(404, JSON.stringify({ error: 'not_found', path: url.pathname }))
    const route = routes[index]!
    if (options.verifyToken && route.auth !== false) {
      const auth = raw.authorization ?? ''
      const m = /^(Bearer|DPoP) (.+)$/i.exec(auth)
      const reason = m ? await options.verifyToken(m[2]!, { method, url: `http://${raw.host}${req.url}`, headers: raw }) : options.anonymous ? null : 'no bearer token'
      if (reason !== null) return send(401, JSON.stringify({ error: 'invalid_token', error_description: reason }), { 'www-authenticate': `Bearer error="invalid_token", error_description="${reason.replace(/"/g, "'")}"` })
    }
    const n = served.get(index) ?? 0
    served.set(index, n + 1)
    const answers = route.answers?.length ? route.answers : [{}]
    const a = answers[Math.min(n, answers.length - 1)]!
    if (a.delayMs) await new Promise((r) => setTimeout(r, a.delayMs))
    send(a.status ?? 200, a.body ?? JSON.stringify(a.json ?? {}), a.headers)
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setRoutes(r) { routes = r; served.clear() },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

/** `verifyToken` for an API protected by the embedded authorization server (bearer and DPoP-bound tokens). */
export function verifiedBy(as: Pick<AuthorizationServer, 'verifyAccessToken'>): NonNullable<EmbeddedApiOptions['verifyToken']> {
  return async (_token, req) => {
    try {
      await as.verifyAccessToken(req.headers.authorization, { method: req.method, url: req.url, ...(req.headers.dpop ? { dpop: req.headers.dpop } : {}) })
      return null
    } catch (e) {
      return (e as Error).message
    }
  }
}
