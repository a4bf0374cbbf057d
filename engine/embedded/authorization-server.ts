import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createLocalJWKSet, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import type { KeyObject } from 'node:crypto'
import { closeServer, createServer, listen, readBody } from './authorization-server/http.ts'
import { handleAuthorizationRequest } from './authorization-server/authorize-endpoint.ts'
import { startProtectedApi } from './authorization-server/protected-api.ts'
import { ASYMMETRIC, ClientRegistry, FailureQueue, JWT_BEARER, JtiMemory, countRequests, type ServerState } from './authorization-server/state.ts'
import { handleTokenRequest } from './authorization-server/token-endpoint.ts'
import type { AuthorizationServer, AuthorizationServerOptions } from './authorization-server/types.ts'
import { verifyAccessToken } from './authorization-server/verify.ts'
import { RemoteKeySets } from './authorization-server/remote-jwks.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import type { HttpClient } from '../../shared/http/types.ts'

export type * from './authorization-server/types.ts'
export { AccessDenied } from './authorization-server/state.ts'

/** RFC 8414 metadata of the server. */
function metadata(st: ServerState, jwksUrl: string): Record<string, unknown> {
  return {
    issuer: st.issuer, token_endpoint: st.tokenUrl, jwks_uri: jwksUrl,
    grant_types_supported: ['client_credentials', JWT_BEARER, 'refresh_token', 'authorization_code'],
    authorization_endpoint: `${st.issuer}/authorize`, response_types_supported: ['code'], code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth', 'none'],
    token_endpoint_auth_signing_alg_values_supported: [...ASYMMETRIC, 'HS256'],
    dpop_signing_alg_values_supported: ASYMMETRIC,
    ...(st.options.tls ? { tls_client_certificate_bound_access_tokens: true, mtls_endpoint_aliases: { token_endpoint: st.tokenUrl } } : {}),
  }
}

/** Routes a request: the token and authorization endpoints, the JWKS, the metadata; 404 otherwise. */
async function route(st: ServerState, req: IncomingMessage, res: ServerResponse, body: string, jwksUrl: string): Promise<void> {
  const path = new URL(req.url ?? '/', st.issuer).pathname
  const json = (status: number, payload: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(payload))
  }
  if (req.method === 'POST' && path === '/token') return handleTokenRequest(st, req, res, body)
  if (req.method === 'GET' && path === '/authorize') return handleAuthorizationRequest(st, req, res)
  if (req.method === 'GET' && path === '/jwks') return json(200, { keys: [st.signing.publicJwk] })
  if (req.method === 'GET' && path === '/.well-known/oauth-authorization-server') return json(200, metadata(st, jwksUrl))
  json(404, { error: 'not_found' })
}

/** The state of a new server at `url`: a fresh ES256 signing key, no clients, no tokens. */
async function initialState(options: AuthorizationServerOptions, url: string, http: () => HttpClient): Promise<ServerState> {
  const now = options.now ?? (() => Date.now())
  const toleranceMs = (options.clockToleranceSec ?? 30) * 1000
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const kid = randomBytes(8).toString('hex')
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }
  return {
    options, now, toleranceMs, lifetimeSec: options.tokenLifetimeSec ?? 300, issuer: url, tokenUrl: `${url}/token`,
    signing: { key: privateKey as CryptoKey, kid, publicJwk, jwks: createLocalJWKSet({ keys: [publicJwk] }) },
    clients: new ClientRegistry(), refreshTokens: new Map(), codes: new Map(), assertionJti: new JtiMemory(now, toleranceMs), proofJti: new JtiMemory(now, toleranceMs),
    issuedJti: new Set(), revokedJti: new Set(), seen: new Set(), dpopNonce: randomBytes(12).toString('base64url'), spentUses: 0,
    requests: [], failures: new FailureQueue(), remoteJwks: new RemoteKeySets(now, (options.jwksRefetchCooldownSec ?? 60) * 1000, http),
  }
}

/**
 * A strict OAuth 2.0 authorization server on 127.0.0.1 for tests, the harness and the demo:
 * client_credentials, jwt-bearer (RFC 7523), refresh_token with rotation, and authorization_code
 * with PKCE behind an authorization endpoint that consents as the client's `consent` says; every client
 * authentication method of RFC 6749 / RFC 7523 / RFC 8705 with cryptographic checks; DPoP
 * (RFC 9449) with nonces; JWT access tokens; RFC 8414 metadata and a JWKS; failure injection.
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
  server.on('request', (req, res) => {
    res.setHeader('date', new Date(st.now()).toUTCString())
    readBody(req).then((body) => route(st, req, res, body, jwksUrl)).catch(() => {
      if (!res.headersSent) res.writeHead(400)
      res.end()
    })
  })
  return {
    url, issuer: st.issuer, tokenUrl: st.tokenUrl, authorizationUrl: `${url}/authorize`, jwksUrl, requests: st.requests,
    registerClient(client) {
      if (client.secret) st.seen.add(client.secret)
      st.clients.register(client)
    },
    issueRefreshToken(clientId, opts = {}) {
      const rt = randomBytes(24).toString('base64url')
      st.seen.add(rt)
      st.refreshTokens.set(rt, { clientId, scope: opts.scope ?? st.clients.get(clientId)?.scopes?.join(' ') ?? '', sub: opts.sub ?? 'user-1', spent: false, revoked: false, family: { revoked: false, issuedJti: [] } })
      return rt
    },
    setFailure: (f) => st.failures.add(f),
    counts: () => countRequests(st.requests),
    spentRefreshTokenUses: () => st.spentUses,
    jwksFetches: () => st.remoteJwks.fetches,
    secretsSeen: () => [...st.seen],
    revokeAll() {
      for (const j of st.issuedJti) st.revokedJti.add(j)
      for (const e of st.refreshTokens.values()) e.revoked = true
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
