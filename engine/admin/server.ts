import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { errorCodes } from '../../shared/errors.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import type { HttpClient } from '../../shared/http/types.ts'
import { Refusal } from '../../shared/inbound/refusal.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import { serverTlsOptions } from '../../shared/tls.ts'
import type { ChannelHandle } from '../runtime/index.ts'
import type { RuntimeObserver } from '../runtime/index.ts'
import { channelRoutes, sessionRoutes } from './api.ts'
import { checkCsrf, createAuth, type Auth } from './auth.ts'
import { hasAuth, servedOverHttps, type AdminConfig } from './config.ts'
import { eventRoutes, type EventStreamOptions, type EventStreams } from './events.ts'
import { readiness } from './health.ts'
import { SECURITY_HEADERS, STRICT_TRANSPORT_SECURITY, readForm, sendJson } from './http.ts'
import type { LoginLimitOptions } from './login-limit.ts'
import { createMetrics } from './metrics.ts'
import { Router, type RouteContext } from './router.ts'
import { dashboardRoutes } from './pages/index.ts'
import { refusalPage } from './pages/errors.ts'

export interface AdminServerOptions {
  host: string
  /** 0 picks a free port. */
  port: number
  config: AdminConfig
  log: Logger
  /** For the OIDC issuer's keys; one is created (and closed with the server) when absent. */
  http?: HttpClient
  /** GET /api/events: tick, ping and the cap on open streams. */
  events?: EventStreamOptions
  /** How failed admin-token attempts lock a client address out (defaults: LOGIN_LIMIT_DEFAULTS). */
  loginLimit?: Partial<LoginLimitOptions>
  /** The clock of sessions and lockouts (default Date.now). */
  now?: () => number
}

export interface AdminServer {
  /** `http://host:port`, or `https://host:port` with `tls` in the config. */
  readonly url: string
  readonly port: number
  /** Pass to every channel (`RuntimeDeps.observer`): it feeds the counters and histograms of /metrics. */
  readonly observer: RuntimeObserver
  /** Where pages and actions are added (guards: `requireRole`; every POST is CSRF-checked). */
  readonly router: Router
  readonly auth: Auth
  /** The live event streams (GET /api/events): how many are open. */
  readonly events: Pick<EventStreams, 'subscribers' | 'ticking'>
  /** The engine is running: /readyz, /metrics and the API look at these from now on. */
  attach(engine: { store: MessageStore; handles: readonly ChannelHandle[] }): void
  /** Why the engine is not running yet (standby: the store is locked by another engine); undefined when that is over. */
  setWaiting(reason: string | undefined): void
  close(): Promise<void>
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1'])

/** Whether a listen address (or Host name) is a loopback one. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return LOOPBACK_NAMES.has(h) || /^127\.\d+\.\d+\.\d+$/.test(h) || h.endsWith('.localhost')
}

/** The host names the server answers to: loopback names, the bound address, the configured ones and `publicUrl`'s; any when bound to every interface without a `hosts` list. */
function hostCheck(bound: string, hosts: readonly string[], publicHost: string | undefined): (header: string | undefined) => boolean {
  const wildcard = bound === '0.0.0.0' || bound === '::'
  if (wildcard && hosts.length === 0) return () => true
  const allowed = new Set([...hosts, bound.toLowerCase(), ...(publicHost ? [publicHost] : [])])
  return (header) => {
    const name = (header ?? '').toLowerCase().replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
    return isLoopback(name) || allowed.has(name)
  }
}

/** Authentication, the CSRF check and the route's handlers, in that order. */
async function dispatch(router: Router, auth: Auth, req: IncomingMessage, res: ServerResponse, publicOrigin: string | undefined): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin.invalid')
  const found = router.match(req.method ?? 'GET', url.pathname)
  if (!found) throw new Refusal(404, 'not found')
  if ('allow' in found) throw new Refusal(405, 'method not allowed', { allow: found.allow.join(', ') })
  const isGet = req.method === 'GET' || req.method === 'HEAD'
  const form = isGet ? new URLSearchParams() : await readForm(req)
  const ctx: RouteContext = { req, res, url, params: found.params, form }
  if (!found.route.public) Object.assign(ctx, await auth.authenticate(req))
  if (!isGet) {
    const refused = checkCsrf(req, found.route.public ? 'login' : { principal: ctx.principal!, ...(ctx.session ? { session: ctx.session } : {}) }, form.get('_csrf') ?? undefined, publicOrigin)
    if (refused) throw refused
  }
  for (const h of found.route.handlers) await h(ctx)
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new errorCodes.ERR_LISTEN(`admin server cannot listen on ${host}:${port}: ${e.code ?? e.message}`, { cause: e })))
    server.listen(port, host, () => resolve())
  })
}

/**
 * Starts the admin server: /healthz, /readyz, /metrics, the JSON API and the login session routes.
 * Bound to anything but loopback it refuses to start without authentication (`ERR_USAGE`). Every
 * response carries a strict Content-Security-Policy; a `Host` that is not the server's answers 421.
 * With `tls` in the config it speaks HTTPS (Secure cookie, HSTS); with an https `publicUrl` a
 * TLS-terminating proxy does, and the cookie and HSTS are the same. It warns at start when it is open
 * (every local user is an operator) and when browsers would reach it over plain HTTP on anything but loopback.
 *
 * @example
 * const admin = await startAdminServer({ host: '127.0.0.1', port: 8089, config: OPEN_CONFIG, log })
 * const handle = await startChannel(channel, { store, log, dataDir, observer: admin.observer })
 * admin.attach({ store, handles: [handle] })
 */
export async function startAdminServer(o: AdminServerOptions): Promise<AdminServer> {
  if (!isLoopback(o.host) && !hasAuth(o.config)) {
    throw new errorCodes.ERR_USAGE(`the admin server on ${o.host} (not loopback) needs authentication: give --admin-config with "tokens" or "jwt", or bind it to 127.0.0.1`)
  }
  // The config holds the TLS files as absolute paths.
  const tls = o.config.tls ? serverTlsOptions(o.config.tls, '/') : undefined
  const http = o.http ?? createHttpClient({ log: o.log })
  let engine: { store: MessageStore; handles: readonly ChannelHandle[] } | undefined
  let waiting: string | undefined
  let attachedAt: number | undefined
  const sources = { store: () => engine?.store, handles: () => engine?.handles ?? [], startedAt: () => attachedAt }
  const metrics = createMetrics(sources)
  const auth = createAuth(o.config, { http, log: o.log, ...(o.loginLimit ? { loginLimit: o.loginLimit } : {}), ...(o.now ? { now: o.now } : {}) })
  const router = new Router()
    .public('GET', '/healthz', ({ res }) => sendJson(res, 200, { alive: true }))
    .public('GET', '/readyz', async ({ res }) => {
      const r = await readiness({ store: sources.store, handles: () => engine?.handles, waiting: () => waiting })
      sendJson(res, r.ready ? 200 : 503, r)
    })
    .get('/metrics', async ({ res }) => {
      const text = await metrics.registry.metrics()
      res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text)
    })
  channelRoutes(router, sources)
  sessionRoutes(router, auth)
  const events = eventRoutes(router, sources, o.events, (s) => auth.live(s))
  dashboardRoutes(router, sources, auth)

  const publicUrl = o.config.publicUrl === undefined ? undefined : new URL(o.config.publicUrl)
  const hostAllowed = hostCheck(o.host, o.config.hosts, publicUrl?.hostname)
  const headers = servedOverHttps(o.config) ? { ...SECURITY_HEADERS, 'strict-transport-security': STRICT_TRANSPORT_SECURITY } : SECURITY_HEADERS
  const timeouts = { requestTimeout: 30_000, headersTimeout: 10_000 }
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
    if (!hostAllowed(req.headers.host)) return sendJson(res, 421, { error: 'unknown Host (the admin server answers to its own names only)' })
    dispatch(router, auth, req, res, publicUrl?.origin).catch((e: unknown) => {
      if (res.headersSent) return void res.destroy()
      if (e instanceof Refusal) return refusalPage(req, res, e) || sendJson(res, e.status, { error: e.publicReason }, e.headers)
      o.log.error({ err: e, path: req.url }, 'admin request failed')
      sendJson(res, 500, { error: 'internal error (see the engine log)' })
    })
  }
  const server: Server = tls ? createHttpsServer({ ...tls, ...timeouts }, onRequest) : createServer(timeouts, onRequest)
  await listen(server, o.host, o.port)
  const port = (server.address() as AddressInfo).port
  const address = `${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}`
  const url = `${tls ? 'https' : 'http'}://${address}`
  o.log.info({ url, ...(publicUrl ? { publicUrl: publicUrl.href } : {}), auth: hasAuth(o.config) ? 'required' : 'open (loopback)', tls: Boolean(tls) }, 'admin server listening')
  if (!hasAuth(o.config)) o.log.warn(`admin server open to every user of this machine (no --admin-config): anyone who can reach ${address} reads messages and acts as operator; give --admin-config with tokens for production`)
  if (!servedOverHttps(o.config) && !isLoopback(o.host)) o.log.warn(`admin server on ${address} speaks plain HTTP: admin tokens and session cookies travel in clear; add "tls" to --admin-config, or put a TLS-terminating proxy in front of it and set "publicUrl" to its https URL`)
  return {
    url, port, observer: metrics.observer, router, auth, events,
    attach(e) {
      engine = e
      attachedAt = Date.now()
      waiting = undefined
      metrics.seed(e.handles)
    },
    setWaiting(reason) { waiting = reason },
    async close() {
      events.close()
      await new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() })
      if (!o.http) await http.close()
    },
  }
}
