import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { JWTPayload } from 'jose'
import type { ComponentContext } from '../../shared/component.ts'
import type { HttpClient } from '../../shared/http/types.ts'
import { silentLogger, type Logger } from '../../shared/log/index.ts'
import { jwtVerifier } from '../../shared/inbound/jwt-verifier.ts'
import { Refusal } from '../../shared/inbound/refusal.ts'
import { hasAuth, servedOverHttps, sha256, type AdminConfig, type AdminJwtOptions, type Role } from './config.ts'
import { clientKey, createLoginLimit, type LoginLimitOptions } from './login-limit.ts'

/** Who made a request and how: an admin token, an OIDC bearer token, a login session, or nobody (open on loopback). */
export interface Principal {
  name: string
  role: Role
  via: 'token' | 'jwt' | 'session' | 'open'
  /** When the credential behind it ends (a JWT's `exp`, epoch ms): a session made from it ends then too. */
  until?: number
}

/** A browser session from the login form: an HttpOnly cookie holds its id; every action carries its CSRF token. */
export interface Session {
  id: string
  csrfToken: string
  principal: Principal
  expiresAt: number
}

export const SESSION_COOKIE = 'weir_session'
const BEARER = /^Bearer[ ]+(\S+)\s*$/i
const challenge = { 'www-authenticate': 'Bearer realm="weir-admin"' }

const sameBytes = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b)
const RANK: Record<Role, number> = { viewer: 1, operator: 2 }

/** Whether `principal` may do what `role` may. */
export const allows = (principal: Principal, role: Role): boolean => RANK[principal.role] >= RANK[role]

/** The roles in `claim` (a dotted path) of a verified token, mapped to the admin role it grants. */
function roleOf(payload: JWTPayload, jwt: AdminJwtOptions): Role | undefined {
  let v: unknown = payload
  for (const part of jwt.roleClaim.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined
  const roles = typeof v === 'string' ? v.split(/\s+/) : Array.isArray(v) ? v : []
  if (roles.includes(jwt.operatorRole)) return 'operator'
  if (roles.includes(jwt.viewerRole)) return 'viewer'
  return undefined
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=')
    if (k === name) return v.join('=')
  }
  return undefined
}

/** The login sessions, in memory only: a restart ends them all. */
class Sessions {
  private readonly byId = new Map<string, Session>()
  /** `secure`: browsers reach the server over HTTPS (its own TLS or a proxy's), so the cookie is sent over HTTPS only. */
  constructor(private readonly ttlSec: number, private readonly now: () => number, private readonly secure: boolean) {}

  /** The live session whose id the request's cookie carries. */
  of(req: IncomingMessage): Session | undefined {
    const id = cookieOf(req, SESSION_COOKIE)
    const s = id === undefined ? undefined : this.byId.get(id)
    if (s && s.expiresAt <= this.now()) this.byId.delete(s.id)
    return s && s.expiresAt > this.now() ? s : undefined
  }

  /** A new session for `principal`: `sessionTtlSec` long, never longer than the credential it came from. */
  create(principal: Principal): Session {
    const t = this.now()
    for (const [id, s] of this.byId) if (s.expiresAt <= t) this.byId.delete(id)
    const expiresAt = Math.min(t + this.ttlSec * 1000, principal.until ?? Infinity)
    const s: Session = { id: randomBytes(32).toString('base64url'), csrfToken: randomBytes(32).toString('base64url'), principal, expiresAt }
    this.byId.set(s.id, s)
    return s
  }

  delete(session: Session): void {
    this.byId.delete(session.id)
  }

  /** Whether `session` is still open: not logged out, not expired. */
  live(session: Session): boolean {
    return this.byId.get(session.id) === session && session.expiresAt > this.now()
  }

  /** The Set-Cookie value of `s` (its remaining life as Max-Age), or one that clears the cookie; `Secure` over HTTPS. */
  cookie(s: Session | undefined): string {
    const secure = this.secure ? '; Secure' : ''
    if (!s) return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure}`
    return `${SESSION_COOKIE}=${s.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.max(0, Math.ceil((s.expiresAt - this.now()) / 1000))}${secure}`
  }
}

/**
 * Authentication of the admin server: admin tokens (compared by SHA-256 in constant time), OIDC
 * bearer tokens through the http-listener's verifier, and login sessions. With nothing configured
 * (allowed on loopback only) everyone is an operator, and actions still need a session's CSRF token.
 * With `tls`, or an https `publicUrl` (a TLS-terminating proxy), the session cookie is `Secure`.
 * A client address that sent too many unknown tokens (login form or bearer header alike) is refused
 * with 429 for a while, without its token being checked (see login-limit.ts).
 *
 * @example
 * const auth = createAuth(config, { http })
 * const who = await auth.authenticate(req) // throws a Refusal: 401 without credentials
 */
export function createAuth(config: AdminConfig, deps: { http: HttpClient; now?: () => number; log?: Logger; loginLimit?: Partial<LoginLimitOptions> }) {
  const now = deps.now ?? Date.now
  const log = deps.log ?? silentLogger
  const open = !hasAuth(config)
  const sessions = new Sessions(config.sessionTtlSec, now, servedOverHttps(config))
  const limit = createLoginLimit(deps.loginLimit, now)
  // The verifier reads only `http` from a component's context.
  const verifyJwt = config.jwt ? jwtVerifier(config.jwt, { http: deps.http } as ComponentContext) : undefined

  /** The principal of a bearer credential: an admin token, else (when configured) a JWT. */
  async function bearer(token: string): Promise<Principal> {
    const hash = sha256(token)
    const t = config.tokens.find((c) => sameBytes(c.hash, hash))
    if (t) return { name: t.name, role: t.role, via: 'token' }
    if (!verifyJwt || token.split('.').length !== 3) throw new Refusal(401, 'unknown token', challenge)
    const payload = await verifyJwt(`Bearer ${token}`)
    const role = roleOf(payload, config.jwt!)
    if (!role) throw new Refusal(403, `token carries neither role "${config.jwt!.operatorRole}" nor "${config.jwt!.viewerRole}" in claim "${config.jwt!.roleClaim}"`)
    return { name: String(payload.sub ?? payload.azp ?? payload.client_id ?? 'jwt'), role, via: 'jwt', until: payload.exp! * 1000 }
  }

  /**
   * `bearer(token)` for a client at `address`, unless that address is locked out (429 with
   * Retry-After, the token unchecked). An unknown or invalid token (401) counts against the address
   * and is logged with the address, never the token; a valid one clears its count.
   */
  async function limitedBearer(token: string, address: string | undefined, via: 'login' | 'bearer'): Promise<Principal> {
    const key = clientKey(address)
    const waitMs = limit.waitMs(key)
    if (waitMs > 0) throw new Refusal(429, 'too many failed attempts from this address; try again later', { 'retry-after': String(Math.ceil(waitMs / 1000)) })
    try {
      const principal = await bearer(token)
      limit.succeeded(key)
      return principal
    } catch (e) {
      if (!(e instanceof Refusal) || e.status !== 401) throw e
      const { failures, lockedForMs } = limit.failed(key)
      log.warn({ address: key, via, reason: e.reason, failures, ...(lockedForMs ? { lockedForSec: Math.ceil(lockedForMs / 1000) } : {}) }, 'admin token refused')
      throw e
    }
  }

  return {
    open,
    /** The request's principal and session; a refusal (401, 403, 503 when the issuer's keys are unavailable) otherwise. */
    async authenticate(req: IncomingMessage): Promise<{ principal: Principal; session?: Session }> {
      const authorization = req.headers.authorization
      if (authorization !== undefined) {
        const m = BEARER.exec(authorization)
        if (!m) throw new Refusal(401, 'malformed Authorization header (expected "Bearer <token>")', challenge)
        return { principal: await limitedBearer(m[1]!, req.socket.remoteAddress, 'bearer') }
      }
      const session = sessions.of(req)
      if (session) return { principal: session.principal, session }
      if (open) return { principal: { name: 'anonymous', role: 'operator', via: 'open' } }
      throw new Refusal(401, 'authentication required', challenge)
    },
    /** A session for the token typed into the login form by the client at `address` (any token when open). */
    async login(token: string, address: string | undefined): Promise<Session> {
      const principal = open ? { name: 'anonymous', role: 'operator' as const, via: 'open' as const } : await limitedBearer(token, address, 'login')
      return sessions.create({ ...principal, via: 'session' })
    },
    /** A session for an open server's anonymous operator (so that a browser gets a CSRF token). */
    openSession: (): Session => sessions.create({ name: 'anonymous', role: 'operator', via: 'session' }),
    logout: (session: Session): void => sessions.delete(session),
    /** How many client addresses the sign-in limit remembers (bounded). */
    tracked: (): number => limit.tracked(),
    /** Whether `session` is still open: not logged out, not expired. */
    live: (session: Session): boolean => sessions.live(session),
    cookie: (s: Session | undefined): string => sessions.cookie(s),
  }
}

export type Auth = ReturnType<typeof createAuth>

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host
  } catch {
    return undefined
  }
}

/**
 * The one CSRF check every non-GET request passes: a cross-site `Origin` or `Sec-Fetch-Site` is
 * refused; a request authenticated by an `Authorization` header (which a browser never adds by
 * itself) passes; anything else must carry its session's CSRF token (`x-csrf-token` header or
 * `_csrf` form field). `login` has no session yet, so it gets only the origin check. `publicOrigin`:
 * the origin of the config's `publicUrl`, accepted whatever the `Host`.
 */
export function checkCsrf(req: IncomingMessage, who: { principal: Principal; session?: Session } | 'login', formToken: string | undefined, publicOrigin?: string): Refusal | undefined {
  const site = req.headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return new Refusal(403, `cross-site request refused (Sec-Fetch-Site: ${site})`)
  // The host only: behind a TLS-terminating proxy the page's origin is https while this server speaks http.
  // A proxy that passes its own Host instead is told by `publicUrl`, whose origin must then match exactly.
  const origin = req.headers.origin
  if (origin !== undefined && origin !== publicOrigin && hostOf(origin) !== String(req.headers.host).toLowerCase()) return new Refusal(403, 'cross-origin request refused (Origin does not match Host)')
  if (who === 'login' || who.principal.via === 'token' || who.principal.via === 'jwt') return undefined
  const given = String(req.headers['x-csrf-token'] ?? formToken ?? '')
  if (!who.session) return new Refusal(403, 'missing CSRF token: get a session (GET /api/session) and send its csrfToken as x-csrf-token')
  if (!sameBytes(Buffer.from(given), Buffer.from(who.session.csrfToken))) return new Refusal(403, 'missing or wrong CSRF token')
  return undefined
}
