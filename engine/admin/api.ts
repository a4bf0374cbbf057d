import { Refusal } from '../../shared/inbound/refusal.ts'
import type { ChannelHandle } from '../runtime/index.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import type { CredentialStatus } from '../../shared/oauth/types.ts'
import { scrubSecrets } from '../../shared/secret.ts'
import type { WeirError } from '../../shared/errors.ts'
import type { Auth, Session } from './auth.ts'
import { sendJson } from './http.ts'
import { isPageRequest } from './pages/errors.ts'
import { backTo, signInPath } from './pages/html.ts'
import { requireRole, type Router, type RouteContext } from './router.ts'

/** The engine's state the API reads: empty while the engine starts or waits in standby. */
export interface ApiSources {
  handles(): readonly ChannelHandle[]
  store(): MessageStore | undefined
  /** When the engine's channels started (epoch ms): their counters count from then. */
  startedAt?(): number | undefined
}

/** "since start 05:48 UTC": what the channels' counters (reset by a restart) count from. */
export function sinceStart(src: ApiSources): string {
  const t = src.startedAt?.()
  return t === undefined ? 'since start' : `since start ${new Date(t).toISOString().slice(11, 16)} UTC`
}

/** `h.refusing()` as the API and pages show it: the limit and since when (ISO 8601), or null while the channel accepts. */
export function refusingOf(h: ChannelHandle): { limit: string; since: string } | null {
  const r = h.refusing()
  return r ? { limit: r.limit, since: new Date(r.since).toISOString() } : null
}

/** One channel as GET /api/channels shows it. */
export async function channelView(h: ChannelHandle, store: MessageStore | undefined, oldest: Record<string, number>, now = Date.now()) {
  const since = oldest[h.name]
  return {
    name: h.name,
    status: h.status(),
    counters: h.counters(),
    /** `counters.rejected` by reason (every reason, 0 when none). */
    rejections: h.rejections(),
    queueDepth: store ? store.pending(h.name) : null,
    oldestQueuedAgeSec: since === undefined ? null : Math.max(0, (now - since) / 1000),
    destinations: h.destinations(),
    credentials: h.credentials(),
    /** The limit the channel refuses its source's input at (`queueLimit` or `maxStoreBytes`) and since when (ISO 8601); null while it accepts. */
    refusing: refusingOf(h),
  }
}

/** The channel (404 when unknown) and destination (`?destination=` or the form's `destination`) an action names. */
function handleOf(src: ApiSources, ctx: RouteContext): { handle: ChannelHandle; destination?: string } {
  const handle = src.handles().find((h) => h.name === ctx.params.name)
  if (!handle) throw new Refusal(404, `no channel "${ctx.params.name}"`)
  const destination = ctx.url.searchParams.get('destination') ?? ctx.form.get('destination') ?? undefined
  if (destination !== undefined && !handle.destinations().some((d) => d.name === destination)) throw new Refusal(404, `channel "${handle.name}" has no destination "${destination}"`)
  return { handle, ...(destination !== undefined ? { destination } : {}) }
}

/** Records an operator's action in the store's audit log (who: the token's, session's or bearer subject's name). */
export async function auditAction(src: ApiSources, ctx: RouteContext, action: string, target: string, count = 0): Promise<void> {
  await src.store()?.audit({ at: Date.now(), actor: ctx.principal!.name, action, target, count })
}

/** Pauses or resumes the channel (or destination) the request names, and records it in the audit log. */
export async function pauseOrResume(src: ApiSources, ctx: RouteContext, action: 'pause' | 'resume'): Promise<{ handle: ChannelHandle; destination?: string }> {
  const found = handleOf(src, ctx)
  const status = found.handle.status()
  if (status === 'stopped' || status === 'stopping') throw new Refusal(409, `channel "${found.handle.name}" is ${status}: a stopped channel stays stopped (it stopped on error with onError "stop", or the engine is stopping); fix the cause, then restart the engine to start it again`)
  await found.handle[action](found.destination)
  await auditAction(src, ctx, action, found.destination === undefined ? found.handle.name : `${found.handle.name}/${found.destination}`)
  return found
}

/** GET /api/channels and the operator's POST /api/channels/:name/pause and /resume (`?destination=` for one destination). */
export function channelRoutes(router: Router, src: ApiSources): void {
  router.get('/api/channels', async ({ res }) => {
    const store = src.store()
    const oldest = store ? await store.oldestPending() : {}
    sendJson(res, 200, { channels: await Promise.all(src.handles().map((h) => channelView(h, store, oldest))) })
  })
  for (const action of ['pause', 'resume'] as const) {
    router.post(`/api/channels/:name/${action}`, requireRole('operator'), async (ctx) => {
      const { handle, destination } = await pauseOrResume(src, ctx, action)
      sendJson(ctx.res, 200, { channel: handle.name, ...(destination !== undefined ? { destination } : {}), paused: action === 'pause', by: ctx.principal!.name })
    })
  }
}

/** A browser's form (answered with a redirect) rather than an API call (answered with JSON). */
const isFormPost = (ctx: RouteContext) => String(ctx.req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')

const sessionView = (s: Session | undefined, ctx: RouteContext) => ({ name: ctx.principal!.name, role: ctx.principal!.role, csrfToken: s?.csrfToken ?? null })

/** The session of a login; a wrong token in a browser's form goes back to the form (keeping where to go after it) and gives undefined. */
async function formLogin(auth: Auth, ctx: RouteContext, token: string): Promise<Session | undefined> {
  try {
    return await auth.login(token, ctx.req.socket.remoteAddress)
  } catch (e) {
    if (!(e instanceof Refusal) || e.status !== 401 || !isPageRequest(ctx.req, ctx.url.pathname)) throw e
    ctx.res.writeHead(303, { location: signInPath(ctx.form.get('next'), true) }).end()
    return undefined
  }
}

/**
 * Sessions: POST /login (the token in the form; sets the session cookie), POST /logout, and
 * GET /api/session (who is asking and the CSRF token for actions; on an open server it starts an
 * anonymous session so that a browser gets one).
 */
export function sessionRoutes(router: Router, auth: Auth): void {
  router.public('POST', '/login', async (ctx) => {
    const token = ctx.form.get('token')
    if (!token) throw new Refusal(400, 'missing form field "token"')
    const session = await formLogin(auth, ctx, token)
    if (!session) return
    if (isFormPost(ctx)) {
      ctx.res.writeHead(303, { location: backTo(ctx.form.get('next'), '/'), 'set-cookie': auth.cookie(session) }).end()
      return
    }
    ctx.principal = session.principal
    sendJson(ctx.res, 200, sessionView(session, ctx), { 'set-cookie': auth.cookie(session) })
  })
  router.post('/logout', (ctx) => {
    if (ctx.session) auth.logout(ctx.session)
    if (isFormPost(ctx)) return void ctx.res.writeHead(303, { location: '/login', 'set-cookie': auth.cookie(undefined) }).end()
    sendJson(ctx.res, 200, { loggedOut: true }, { 'set-cookie': auth.cookie(undefined) })
  })
  router.get('/api/session', (ctx) => {
    if (!ctx.session && auth.open) {
      const session = auth.openSession()
      sendJson(ctx.res, 200, sessionView(session, ctx), { 'set-cookie': auth.cookie(session) })
      return
    }
    sendJson(ctx.res, 200, sessionView(ctx.session, ctx))
  })
}

const isoOf = (t: number | undefined) => (t === undefined || !Number.isFinite(t) ? null : new Date(t).toISOString())

/** One credential as GET /api/credentials shows it; never a token, secret or assertion. */
export interface CredentialView {
  name: string
  /** The channels using it (a credential of a shared `credentialsFile` shows once). */
  channels: string[]
  grant: string | null
  endpoint: string | null
  scope: string | null
  /** When the current token was fetched and when it expires (ISO), and the seconds it has left. */
  fetchedAt: string | null
  expiresAt: string | null
  expiresInSec: number | null
  /** Token requests sent (retries included) and fetches that failed after their retries, summed over the channels. */
  requests: { sent: number; failed: number }
  /** The last failed fetch: its RFC 6749 error code (when the server sent one) and the reason. */
  lastFailure: { at: string; code: string; error: string | null; message: string } | null
  /** Until when calls fail at once without asking the token endpoint (after a refusal), or null. */
  failingFastUntil: string | null
}

function credentialView(name: string, channel: string, s: CredentialStatus, now: number): CredentialView {
  const f = s.lastFailure
  return {
    name, channels: [channel], grant: s.grant ?? null, endpoint: s.endpoint ?? null, scope: s.scope ?? null,
    fetchedAt: isoOf(s.fetchedAt), expiresAt: isoOf(s.expiresAt),
    expiresInSec: s.expiresAt === undefined || !Number.isFinite(s.expiresAt) ? null : Math.max(0, Math.round((s.expiresAt - now) / 1000)),
    requests: { sent: s.tokenRequests, failed: s.tokenErrors },
    lastFailure: f ? { at: isoOf(f.at)!, code: f.code, error: f.error ?? null, message: scrubSecrets(f.message) } : null,
    failingFastUntil: isoOf(s.failingFastUntil),
  }
}

/**
 * The credentials the channels use, by name, grant and endpoint: channels sharing a credential share
 * its token cache, so it shows once with its channels and their request counts added up.
 */
export function credentialViews(handles: readonly ChannelHandle[], now = Date.now()): CredentialView[] {
  const views = new Map<string, CredentialView>()
  for (const h of handles) {
    for (const [name, s] of Object.entries(h.credentials())) {
      const key = JSON.stringify([name, s.grant, s.endpoint])
      const seen = views.get(key)
      if (!seen) views.set(key, credentialView(name, h.name, s, now))
      else {
        seen.channels.push(h.name)
        seen.requests.sent += s.tokenRequests
        seen.requests.failed += s.tokenErrors
      }
    }
  }
  return [...views.values()].sort((a, b) => a.name.localeCompare(b.name) || a.channels[0]!.localeCompare(b.channels[0]!))
}

/** What "fetch a token now" found: the new token's lifetime and scope, or the server's reason. */
export type CredentialCheck =
  | { credential: string; channel: string; ok: true; expiresInSec: number | null; scope: string | null }
  | { credential: string; channel: string; ok: false; error: { code: string; error: string | null; message: string } }

/**
 * Requests a token of the credential the request names now (`channel` picks among channels using
 * it; default the first), through the channel's provider, and records it in the audit log.
 */
export async function checkCredential(src: ApiSources, ctx: RouteContext): Promise<CredentialCheck> {
  const credential = ctx.params.name!
  const wanted = ctx.url.searchParams.get('channel') ?? ctx.form.get('channel') ?? undefined
  const handle = src.handles().find((h) => (wanted === undefined || h.name === wanted) && credential in h.credentials())
  if (!handle) throw new Refusal(404, `no channel uses a credential "${credential}"${wanted === undefined ? '' : ` in channel "${wanted}"`}`)
  const base = { credential, channel: handle.name }
  let done: CredentialCheck
  try {
    const t = await handle.checkCredential(credential)
    done = { ...base, ok: true, expiresInSec: Number.isFinite(t.expiresAt) ? Math.max(0, Math.round((t.expiresAt - Date.now()) / 1000)) : null, scope: t.scope ?? null }
  } catch (e) {
    const err = e as WeirError & { error?: string }
    done = { ...base, ok: false, error: { code: err.code ?? 'ERR_UNKNOWN', error: err.error ?? null, message: scrubSecrets(err.message) } }
  }
  // The outcome in the audit log: "ok", or the RFC 6749 error code (else Weir's code); never the server's text.
  await auditAction(src, ctx, 'check-credential', `${handle.name}/${credential}: ${done.ok ? 'ok' : done.error!.error ?? done.error!.code}`)
  return done
}

/** GET /api/credentials and the operator's POST /api/credentials/:name/check (`?channel=`): a check answers 200 with `ok` and the reason. */
export function credentialRoutes(router: Router, src: ApiSources): void {
  router.get('/api/credentials', ({ res }) => sendJson(res, 200, { credentials: credentialViews(src.handles()) }))
  router.post('/api/credentials/:name/check', requireRole('operator'), async (ctx) => {
    sendJson(ctx.res, 200, { ...(await checkCredential(src, ctx)), by: ctx.principal!.name })
  })
}
