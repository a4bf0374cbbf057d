import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createLocalJWKSet, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import type { KeyObject } from 'node:crypto'
import { closeServer, createServer, listen, readBody } from './authorization-server/http.ts'
import { handleAuthorizationRequest } from './authorization-server/authorize-endpoint.ts'
import { startProtectedApi } from './authorization-server/protected-api.ts'
import { ASYMMETRIC, FailureQueue, JWT_BEARER, JtiMemory, countRequests, everyTenant, newTenant, type ServerState, type Tenant } from './authorization-server/state.ts'
import { handleTokenRequest } from './authorization-server/token-endpoint.ts'
import type { AuthorizationServer, AuthorizationServerOptions } from './authorization-server/types.ts'
import { verifyAccessToken } from './authorization-server/verify.ts'
import { RemoteKeySets } from './authorization-server/remote-jwks.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import type { HttpClient } from '../../shared/http/types.ts'

export type * from './authorization-server/types.ts'
export { AccessDenied } from './authorization-server/state.ts'

/** RFC 8414 metadata of the server's own endpoint or of a tenant's. */
function metadata(st: ServerState, tenant: Tenant, jwksUrl: string): Record<string, unknown> {
  return {
    issuer: tenant.issuer, token_endpoint: tenant.tokenUrl, jwks_uri: jwksUrl,
    grant_types_supported: ['client_credentials', JWT_BEARER, 'refresh_token', 'authorization_code'],
    authorization_endpoint: tenant.authorizationUrl, response_types_supported: ['code'], code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth', 'none'],
    token_endpoint_auth_signing_alg_values_supported: [...ASYMMETRIC, 'HS256'],
    dpop_signing_alg_values_supported: ASYMMETRIC,
    ...(st.options.tls ? { tls_client_certificate_bound_access_tokens: true, mtls_endpoint_aliases: { token_endpoint: tenant.tokenUrl } } : {}),
  }
}

const WELL_KNOWN = '/.well-known/oauth-authorization-server'

/** The tenant a path lies under (`/tenants/<name>/…`, else the server's own) and the rest of it; undefined for an unknown tenant. */
function tenantOfPath(st: ServerState, path: string): { tenant: Tenant; rest: string } | undefined {
  const m = /^\/tenants\/([^/]+)(\/.*)?$/.exec(path)
  if (!m) return { tenant: st.root, rest: path }
  let name: string
  try { name = decodeURIComponent(m[1]!) } catch { return undefined }
  const tenant = st.tenants.get(name)
  return tenant && { tenant, rest: m[2] ?? '' }
}

/** Routes a request: the token and authorization endpoints (the server's and each tenant's), the JWKS, the metadata; 404 otherwise. */
async function route(st: ServerState, req: IncomingMessage, res: ServerResponse, body: string, jwksUrl: string): Promise<void> {
  const path = new URL(req.url ?? '/', st.root.issuer).pathname
  const json = (status: number, payload: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(payload))
  }
  if (req.method === 'GET' && path === '/jwks') return json(200, { keys: [st.signing.publicJwk] })
  if (req.method === 'GET' && (path === WELL_KNOWN || path.startsWith(`${WELL_KNOWN}/`))) {
    // RFC 8414 §3.1: an issuer with a path (a tenant's) has its metadata at the well-known path followed by that path.
    const at = tenantOfPath(st, path.slice(WELL_KNOWN.length))
    return at?.rest === '' ? json(200, metadata(st, at.tenant, jwksUrl)) : json(404, { error: 'not_found' })
  }
  const at = tenantOfPath(st, path)
  if (req.method === 'POST' && at?.rest === '/token') return handleTokenRequest(st, at.tenant, req, res, body)
  if (req.method === 'GET' && at?.rest === '/authorize') return handleAuthorizationRequest(st, at.tenant, req, res)
  json(404, { error: 'not_found' })
}

/** The state of a new server at `url`: a fresh ES256 signing key, no tenants, no clients, no tokens. */
async function initialState(options: AuthorizationServerOptions, url: string, http: () => HttpClient): Promise<ServerState> {
  const now = options.now ?? (() => Date.now())
  const toleranceMs = (options.clockToleranceSec ?? 30) * 1000
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const kid = randomBytes(8).toString('hex')
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }
  return {
    options, now, toleranceMs, lifetimeSec: options.tokenLifetimeSec ?? 300, root: newTenant(url), tenants: new Map(),
    signing: { key: privateKey as CryptoKey, kid, publicJwk, jwks: createLocalJWKSet({ keys: [publicJwk] }) },
    assertionJti: new JtiMemory(now, toleranceMs), proofJti: new JtiMemory(now, toleranceMs),
    issuedJti: new Set(), revokedJti: new Set(), seen: new Set(), dpopNonce: randomBytes(12).toString('base64url'), spentUses: 0,
    requests: [], failures: new FailureQueue(), remoteJwks: new RemoteKeySets(now, (options.jwksRefetchCooldownSec ?? 60) * 1000, http),
  }
}

/**
 * A strict OAuth 2.0 authorization server on 127.0.0.1 for tests, the harness and the demo:
 * client_credentials, jwt-bearer (RFC 7523), refresh_token with rotation, and authorization_code
 * with PKCE behind an authorization endpoint that consents as the client's `consent` says; every client
 * authentication method of RFC 6749 / RFC 7523 / RFC 8705 with cryptographic checks; DPoP
 * (RFC 9449) with nonces; JWT access tokens; RFC 8414 metadata and a JWKS; failure injection;
 * tenants (`tenant(name)`), each with endpoints and clients of its own.
 *
 * @example
 * const as = await startAuthorizationServer()
 * as.registerClient({ clientId: 'c1', authMethod: 'client_secret_basic', secret: 's3cret-value' })
 * // token endpoint: as.tokenUrl
 */
export async function startAuthorizationServer(options: AuthorizationServerOptions = {}): Promise<AuthorizationServer> {
  const server = createServer(options.tls)
  server.keepAliveTimeout = 5000
  const url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${await listen(server)}`
  let ownHttp: HttpClient | undefined
  const st = await initialState(options, url, () => options.http ?? (ownHttp ??= createHttpClient()))
  const jwksUrl = `${url}/jwks`
  /** The tenant `name` names (created on first use), or the server's own endpoint when it names none. */
  const tenantOf = (name: string | undefined): Tenant => {
    if (name === undefined) return st.root
    if (name === '') throw new TypeError('a tenant name must not be empty')
    let t = st.tenants.get(name)
    if (!t) st.tenants.set(name, (t = newTenant(url, name)))
    return t
  }
  server.on('request', (req, res) => {
    res.setHeader('date', new Date(st.now()).toUTCString())
    readBody(req).then((body) => route(st, req, res, body, jwksUrl)).catch(() => {
      if (!res.headersSent) res.writeHead(400)
      res.end()
    })
  })
  return {
    url, issuer: st.root.issuer, tokenUrl: st.root.tokenUrl, authorizationUrl: st.root.authorizationUrl, jwksUrl, requests: st.requests,
    tenant(name) {
      const t = tenantOf(name)
      return { name, issuer: t.issuer, tokenUrl: t.tokenUrl, authorizationUrl: t.authorizationUrl }
    },
    registerClient(client, opts = {}) {
      if (client.secret) st.seen.add(client.secret)
      tenantOf(opts.tenant).clients.register(client)
    },
    issueRefreshToken(clientId, opts = {}) {
      const t = tenantOf(opts.tenant)
      const rt = randomBytes(24).toString('base64url')
      st.seen.add(rt)
      t.refreshTokens.set(rt, { clientId, scope: opts.scope ?? t.clients.get(clientId)?.scopes?.join(' ') ?? '', sub: opts.sub ?? 'user-1', spent: false, revoked: false, family: { revoked: false, issuedJti: [] } })
      return rt
    },
    setFailure: (f) => st.failures.add(f),
    counts: () => countRequests(st.requests),
    spentRefreshTokenUses: () => st.spentUses,
    jwksFetches: () => st.remoteJwks.fetches,
    secretsSeen: () => [...st.seen],
    revokeAll() {
      for (const j of st.issuedJti) st.revokedJti.add(j)
      for (const t of everyTenant(st)) for (const e of t.refreshTokens.values()) e.revoked = true
    },
    rotateDpopNonce() {
      st.dpopNonce = randomBytes(12).toString('base64url')
      return st.dpopNonce
    },
    verifyAccessToken: (authorization, request) => verifyAccessToken(st, authorization, request),
    createProtectedApi: (apiOptions) => startProtectedApi(st, apiOptions),
    async close() {
      await closeServer(server)
      await ownHttp?.close()
    },
  }
}

/** Public JWK of a private key (for registering a test client). */
export async function publicJwkOf(privateKey: KeyObject, alg: string, kid?: string): Promise<JWK> {
  const { createPublicKey } = await import('node:crypto')
  return { ...(await exportJWK(createPublicKey(privateKey))), alg, ...(kid ? { kid } : {}) }
}
