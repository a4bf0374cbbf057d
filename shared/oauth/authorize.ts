import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Dispatcher } from 'undici'
import { errorCodes, type WeirError } from '../errors.ts'
import { silentLogger, type Logger } from '../log/index.ts'
import { registerSecretValue, type Secret } from '../secret.ts'
import { applyPreset, type CredentialConfig } from './config.ts'
import { resolveCredential } from './credential.ts'
import { discover } from './discovery.ts'
import { createTokenExchange } from './exchange.ts'
import { tlsDispatcher } from './provider.ts'
import type { ResolvedCredential } from './token-endpoint.ts'

/** The redirect URI when the credential names none: a loopback IP literal, any port (RFC 8252 §7.3, §8.3). */
export const DEFAULT_REDIRECT_URI = 'http://127.0.0.1/callback'

/** A PKCE pair (RFC 7636 §4.1, §4.2): a verifier of 32 random bytes and its S256 challenge. */
export interface Pkce {
  verifier: string
  challenge: string
}

/**
 * A fresh PKCE pair; the verifier is registered as a secret, so it is scrubbed from logs and errors.
 *
 * @example
 * const { verifier, challenge } = createPkce() // challenge = BASE64URL(SHA256(verifier))
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.2
 */
export function createPkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url')
  registerSecretValue(verifier)
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
}

export interface AuthorizationRequestParams {
  clientId: string
  redirectUri: string
  state: string
  challenge: string
  scopes: string[]
  resources: string[]
  audience?: string
  /** Extra parameters (`prompt`, `access_type`, …); the credential schema keeps out the ones set here. */
  extra: Record<string, string>
}

/**
 * The URL of an authorization request (RFC 6749 §4.1.1) with PKCE S256 (RFC 7636 §4.3); a query the
 * endpoint already has is kept (RFC 6749 §3.1).
 *
 * @example
 * authorizationRequestUrl('https://as.example/authorize', { clientId: 'c', redirectUri, state, challenge, scopes: ['crm.read'], resources: [], extra: {} })
 * // → https://as.example/authorize?response_type=code&client_id=c&redirect_uri=…&scope=crm.read&state=…&code_challenge=…&code_challenge_method=S256
 */
export function authorizationRequestUrl(endpoint: string, p: AuthorizationRequestParams): string {
  const url = new URL(endpoint)
  const q = url.searchParams
  q.set('response_type', 'code')
  q.set('client_id', p.clientId)
  q.set('redirect_uri', p.redirectUri)
  if (p.scopes.length) q.set('scope', p.scopes.join(' '))
  for (const r of p.resources) q.append('resource', r)
  if (p.audience) q.set('audience', p.audience)
  for (const [k, v] of Object.entries(p.extra)) q.set(k, v)
  q.set('state', p.state)
  q.set('code_challenge', p.challenge)
  q.set('code_challenge_method', 'S256')
  return url.href
}

/** What the authorization response must carry to be accepted. */
export interface CallbackExpectation {
  state: string
  /**
   * The issuer `iss` must equal when present (RFC 9207 §2.4). Unknown (only authorizationUrl
   * configured), a callback with `iss` is refused: it cannot be told from another server's.
   */
  issuer?: string
  /** The server's metadata promises `iss` (authorization_response_iss_parameter_supported): a response without it is refused. */
  requireIss: boolean
}

export interface LoopbackCallback {
  /** The redirect URI to send, with the port actually listened on. */
  redirectUri: string
  /** The authorization code; rejects with ERR_OAUTH_AUTHORIZATION on a refusal, a mismatch or the timeout. */
  code: Promise<string>
  close(): Promise<void>
}

/** A server's text for the terminal and the page: control characters removed, at most `max` characters. */
function cleaned(text: string, max = 200): string {
  const s = text.replace(/[\p{Cc}\p{Cf}]+/gu, ' ').trim()
  return s.length > max ? `${s.slice(0, max)}…` : s
}

function authorizationError(message: string, fields: { error?: string; error_description?: string } = {}): WeirError {
  return Object.assign(new errorCodes.ERR_OAUTH_AUTHORIZATION(message), fields)
}

/** The authorization response's verdict: the code, or why it is refused (RFC 6749 §4.1.2, §10.12; RFC 9207 §2.4). */
function judgeResponse(q: URLSearchParams, expected: CallbackExpectation): string | WeirError {
  if (q.get('state') !== expected.state) return authorizationError('the callback\'s state does not match this request (an old browser tab, or a request that did not come from this consent); nothing was stored')
  const iss = q.get('iss')
  if (iss !== null && expected.issuer === undefined) {
    return authorizationError(`the callback carries iss "${cleaned(iss, 100)}" but the credential names no issuer to compare it with (RFC 9207 mix-up defence); set "issuer" to your provider's issuer identifier (its documentation or /.well-known/openid-configuration says it) if this is it; nothing was stored`)
  }
  if (iss !== null && iss !== expected.issuer) {
    return authorizationError(`the callback's iss "${cleaned(iss, 100)}" is not the configured issuer ${expected.issuer} (RFC 9207: the answer comes from another authorization server); nothing was stored`)
  }
  if (iss === null && expected.requireIss) return authorizationError('the authorization server promises an iss parameter (RFC 9207) but the callback has none; nothing was stored')
  const error = q.get('error')
  if (error !== null) {
    const description = cleaned(q.get('error_description') ?? '')
    return authorizationError(`the authorization server refused: ${cleaned(error, 60)}${description ? `: ${description}` : ''}`, { error: cleaned(error, 60), ...(description ? { error_description: description } : {}) })
  }
  const code = q.get('code')
  if (!code) return authorizationError('the callback carries neither a code nor an error')
  registerSecretValue(code)
  return code
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)

/** The plain page the browser shows after the redirect: no script, no link, no referrer. */
function answerPage(res: ServerResponse, status: number, heading: string, text: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'none'", 'x-content-type-options': 'nosniff',
  })
  res.end(`<!doctype html>\n<meta charset="utf-8">\n<title>Weir: ${escapeHtml(heading)}</title>\n<h1>${escapeHtml(heading)}</h1>\n<p>${escapeHtml(text)}</p>\n<p>You may close this tab.</p>\n`)
}

/** The address a loopback redirect URI listens on: the host to bind, the port (0 = any) and the path. */
function loopbackAddress(redirectUri: string): { host: string; port: number; url: URL } {
  const url = new URL(redirectUri)
  const host = url.hostname === '[::1]' ? '::1' : '127.0.0.1'
  return { host, port: url.port ? Number(url.port) : 0, url }
}

/** The redirect URI with the port listened on, spelled as configured: `http://localhost` stays without a trailing slash. */
function withPort(redirectUri: string, url: URL, port: number): string {
  const hasPath = /^http:\/\/[^/]+\//.test(redirectUri)
  return `${url.protocol}//${url.hostname}:${port}${hasPath ? url.pathname : ''}`
}

/**
 * Listens on the loopback redirect URI (RFC 8252 §7.3) for one authorization response: the first
 * request on its path settles `code` (the browser is shown a plain page saying what happened) and
 * other paths get 404. Settles with ERR_OAUTH_AUTHORIZATION after `timeoutMs` without an answer.
 */
export async function listenForCallback(redirectUri: string, expected: CallbackExpectation, timeoutMs: number): Promise<LoopbackCallback> {
  const { host, port, url } = loopbackAddress(redirectUri)
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new errorCodes.ERR_LISTEN(`cannot listen on ${host}:${port} for the redirect URI ${redirectUri}: ${e.code ?? e.message}`, { cause: e })))
    server.listen(port, host, () => resolve())
  })
  const actual = withPort(redirectUri, url, (server.address() as AddressInfo).port)
  let settle!: (outcome: string | WeirError) => void
  const code = new Promise<string>((resolve, reject) => {
    settle = (o) => (typeof o === 'string' ? resolve(o) : reject(o))
  })
  code.catch(() => undefined) // the caller may not be awaiting yet when the timeout fires
  const waited = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000} s` : `${timeoutMs} ms`
  const timer = setTimeout(() => settle(authorizationError(`no authorization response reached ${actual} within ${waited}; run the command again and complete the consent in the browser (--timeout waits longer)`)), timeoutMs)
  let answered = false
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const got = new URL(req.url ?? '/', url)
    if (got.pathname !== url.pathname || req.method !== 'GET' || answered) return answerPage(res, 404, 'Not found', 'This address only takes the one answer of the Weir consent.')
    answered = true
    clearTimeout(timer)
    const outcome = judgeResponse(got.searchParams, expected)
    if (typeof outcome === 'string') answerPage(res, 200, 'Authorization received', 'Weir received the authorization and is finishing in the terminal.')
    else answerPage(res, 400, 'Authorization failed', `${outcome.message}.`)
    res.on('finish', () => settle(outcome))
  })
  return {
    redirectUri: actual,
    code,
    close: () => new Promise<void>((resolve) => {
      clearTimeout(timer)
      server.close(() => resolve())
      server.closeAllConnections()
    }),
  }
}

export interface ConsentOptions {
  /** Shows the user where to consent (print it, open a browser); called once the callback listens. */
  onAuthorizationUrl: (url: string, redirectUri: string) => void
  /** How long to wait for the browser's answer (default 300 s). */
  timeoutMs?: number
  /** Dispatcher of discovery and the token request; default: one with the credential's `tls` certificate and CA, if any. */
  dispatcher?: Dispatcher
  log?: Logger
}

/** The authorization endpoint and what to expect of `iss`: configured, or from the issuer's metadata (RFC 8414). */
async function authorizationEndpointOf(name: string, c: CredentialConfig, r: ResolvedCredential, options: ConsentOptions): Promise<{ endpoint: string; requireIss: boolean }> {
  if (c.authorizationUrl) return { endpoint: c.authorizationUrl, requireIss: false }
  if (!c.issuer) throw new errorCodes.ERR_CONFIG_INVALID(`credential "${name}" #/authorizationUrl: weir credentials authorize needs authorizationUrl, or issuer to discover it`)
  const meta = await discover(c.issuer, { requires: 'authorization_endpoint', timeoutMs: r.timeoutMs, ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}) })
  return { endpoint: meta.authorization_endpoint!, requireIss: meta.authorization_response_iss_parameter_supported === true }
}

/**
 * Refuses a credential whose grant never uses a refresh token (`doing` names the command: "weir
 * credentials import stores"): a stored one would never be read.
 */
export function requireRefreshTokenGrant(name: string, config: CredentialConfig, doing: string): void {
  const grant = applyPreset(config).grant
  if (grant !== 'refresh_token') throw new errorCodes.ERR_CONFIG_INVALID(`credential "${name}" #/grant: ${doing} a refresh token, which only the refresh_token grant uses: it needs grant refresh_token; this credential uses ${grant}`)
}

/**
 * The authorization-code flow of a native app (RFC 8252) for a refresh_token credential: PKCE S256,
 * a loopback redirect, `state` and `iss` checked, the code exchanged at the token endpoint with the
 * credential's client authentication. Returns the refresh token (never logged); the caller stores it.
 *
 * @example
 * const refreshToken = await authorizeWithConsent('crm', credential, { onAuthorizationUrl: (url) => console.error(`open ${url}`) })
 * @see https://www.rfc-editor.org/rfc/rfc8252#section-7.3
 */
export async function authorizeWithConsent(name: string, config: CredentialConfig, options: ConsentOptions): Promise<Secret> {
  const c = applyPreset(config)
  requireRefreshTokenGrant(name, c, 'weir credentials authorize obtains')
  const r = resolveCredential(name, config)
  const own = options.dispatcher ? undefined : tlsDispatcher(c)
  const dispatcher = options.dispatcher ?? own
  try {
    const { endpoint, requireIss } = await authorizationEndpointOf(name, c, r, { ...options, ...(dispatcher ? { dispatcher } : {}) })
    const pkce = createPkce()
    const state = randomBytes(16).toString('base64url')
    const callback = await listenForCallback(c.redirectUri ?? DEFAULT_REDIRECT_URI, { state, requireIss, ...(c.issuer ? { issuer: c.issuer } : {}) }, options.timeoutMs ?? 300_000)
    try {
      options.onAuthorizationUrl(authorizationRequestUrl(endpoint, {
        clientId: r.clientId ?? '', redirectUri: callback.redirectUri, state, challenge: pkce.challenge,
        scopes: r.scopes, resources: r.resources, extra: { ...c.authorizationParams }, ...(r.audience ? { audience: r.audience } : {}),
      }), callback.redirectUri)
      const code = await callback.code
      const exchange = createTokenExchange(r, { log: options.log ?? silentLogger, now: () => Date.now(), ...(dispatcher ? { dispatcher } : {}) })
      const res = await exchange.send([['grant_type', 'authorization_code'], ['code', code], ['redirect_uri', callback.redirectUri], ['code_verifier', pkce.verifier]])
      if (!res.refreshToken) {
        throw authorizationError('the token endpoint issued no refresh token; ask for offline access (Google: authorizationParams access_type offline and prompt consent; Microsoft: the offline_access scope)')
      }
      return res.refreshToken
    } finally {
      await callback.close()
    }
  } finally {
    await own?.close()
  }
}
