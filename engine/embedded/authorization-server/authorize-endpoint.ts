import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { checkScopes } from './grants.ts'
import { OAuthFailure, type ServerState, type Tenant } from './state.ts'
import type { RegisteredClient } from './types.ts'

/** How long a code may wait for its exchange: short, as RFC 6749 §4.1.2 asks (it suggests at most 10 minutes). */
const CODE_LIFETIME_MS = 60_000
const LOOPBACK_IP = new Set(['127.0.0.1', '[::1]'])

/** Exact match, except that a loopback IP literal's port is free (RFC 8252 §7.3): the native app picks it when it starts. */
export function redirectUriMatches(registered: string, given: string): boolean {
  if (registered === given) return true
  let r: URL
  let g: URL
  try {
    r = new URL(registered)
    g = new URL(given)
  } catch {
    return false
  }
  if (r.protocol !== 'http:' || !LOOPBACK_IP.has(r.hostname) || r.hostname !== g.hostname || g.protocol !== 'http:') return false
  return r.pathname === g.pathname && r.search === g.search && g.hash === '' && g.username === '' && g.password === ''
}

/** A plain-text answer for a request that cannot be sent back to the client (RFC 6749 §4.1.2.1: never redirect to an unverified URI). */
function refuseInPlace(res: ServerResponse, description: string): void {
  res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
  res.end(`authorization request refused: ${description}\n`)
}

/** The checks of an authorization request whose client (of `tenant`) and redirect URI are known; returns the new code. */
function issueCode(st: ServerState, tenant: Tenant, client: RegisteredClient, q: URLSearchParams, redirectUri: string): string {
  if (q.get('response_type') !== 'code') throw new OAuthFailure(400, 'unsupported_response_type', 'response_type must be code')
  if (client.grants && !client.grants.includes('authorization_code')) throw new OAuthFailure(400, 'unauthorized_client', 'grant authorization_code not allowed for this client')
  const challenge = q.get('code_challenge') ?? ''
  if (q.get('code_challenge_method') !== 'S256' || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) throw new OAuthFailure(400, 'invalid_request', 'PKCE with code_challenge_method S256 is required (RFC 7636)')
  const scope = checkScopes(client, q.get('scope'))
  if ((client.consent ?? 'approve') === 'deny') throw new OAuthFailure(400, 'access_denied', 'the user denied the request')
  const code = randomBytes(32).toString('base64url')
  tenant.codes.set(code, { clientId: client.clientId, redirectUri, challenge, scope, sub: q.get('login_hint') || 'user-1', expiresAt: st.now() + CODE_LIFETIME_MS, used: false, issuedJti: [] })
  st.seen.add(code)
  return code
}

/**
 * The authorization endpoint of `tenant` (RFC 6749 §4.1.1) with the user's consent simulated: the client's
 * `consent` decides, and the user is `login_hint` (default user-1). The answer goes back to the
 * redirect URI with `state` and `iss` (RFC 9207); an unknown client or unregistered redirect URI
 * is answered here instead.
 */
export function handleAuthorizationRequest(st: ServerState, tenant: Tenant, req: IncomingMessage, res: ServerResponse): void {
  const q = new URL(req.url ?? '/', tenant.issuer).searchParams
  const client = tenant.clients.get(q.get('client_id') ?? '')
  if (!client) return refuseInPlace(res, 'unknown client_id')
  const redirectUri = q.get('redirect_uri') ?? ''
  if (!(client.redirectUris ?? []).some((r) => redirectUriMatches(r, redirectUri))) return refuseInPlace(res, 'redirect_uri is not registered for this client')
  const back = new URL(redirectUri)
  try {
    const repeated = [...new Set(q.keys())].find((k) => q.getAll(k).length > 1)
    if (repeated) throw new OAuthFailure(400, 'invalid_request', `parameter ${repeated} is repeated`)
    back.searchParams.set('code', issueCode(st, tenant, client, q, redirectUri))
  } catch (e) {
    if (!(e instanceof OAuthFailure)) throw e
    back.searchParams.set('error', e.error)
    back.searchParams.set('error_description', e.description)
  }
  const state = q.get('state')
  if (state !== null) back.searchParams.set('state', state)
  back.searchParams.set('iss', tenant.issuer)
  res.writeHead(302, { location: back.href, 'cache-control': 'no-store' })
  res.end()
}
