import { createHash, randomBytes, randomUUID, X509Certificate, type KeyObject } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import {
  SignJWT, calculateJwkThumbprint, compactVerify, createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, jwtVerify,
  type JWK, type JWTPayload, type CryptoKey,
} from 'jose'

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'client_secret_jwt' | 'private_key_jwt' | 'tls_client_auth' | 'none'
export type GrantKind = 'client_credentials' | 'jwt_bearer' | 'refresh_token'

/** A client as registered with the embedded server. Plain data, so harnesses can derive it from channel credentials. */
export interface RegisteredClient {
  clientId: string
  authMethod: ClientAuthMethod
  /** client_secret_basic / _post / _jwt. */
  secret?: string
  /** Public key(s) for private_key_jwt and for jwt-bearer assertions signed by this client. */
  jwks?: { keys: JWK[] } | JWK
  /** Accepted assertion algorithms; default: the keys' `alg`, else all of RS256 RS384 PS256 ES256 ES384 EdDSA (HS256 for client_secret_jwt). */
  allowedAlgs?: string[]
  /** Grants this client may use (default all three). */
  grants?: GrantKind[]
  /** Scopes this client may request; default any. Granted when none is requested: `defaultScope` or all of these. */
  scopes?: string[]
  defaultScope?: string
  /** RFC 8707 resources / audiences this client may request; default any. */
  resources?: string[]
  audiences?: string[]
  /** Accepted assertion `aud` values; default the token endpoint (and the issuer when `acceptIssuerAudience`). */
  assertionAudiences?: string[]
  acceptIssuerAudience?: boolean
  /** Maximum assertion lifetime (exp - now), default 300 s. */
  maxAssertionLifetimeSec?: number
  /** tls_client_auth: the client certificate's SHA-256 thumbprint (base64url) or subject DN, e.g. `CN=client`. */
  tlsCertThumbprint?: string
  tlsSubjectDn?: string
  /** `strict` (default) form-urldecodes the Basic credentials (RFC 6749 §2.3.1); `loose` compares them raw. */
  basicEncoding?: 'strict' | 'loose'
  /** Access token lifetime for this client (default: the server's). */
  tokenLifetimeSec?: number
  /** Rotate refresh tokens on use (default true): a spent one is rejected with invalid_grant. */
  rotateRefreshTokens?: boolean
  requireDpop?: boolean
  /** jwt-bearer grant: the issuer expected in the assertion (default clientId; Google: client_email). */
  assertionIssuer?: string
  /** Extra fields of this client's successful token responses (Salesforce `instance_url`); never overrides the standard ones. */
  tokenResponse?: Record<string, unknown>
}

export interface FailureSpec {
  status: number
  /** How many token requests fail (default 1). */
  count?: number
  /** Delay before answering (ms). */
  delayMs?: number
  /** Retry-After header value (seconds or HTTP date). */
  retryAfter?: string | number
  /** Raw body (default `{"error":"temporarily_unavailable"}` for 5xx, else `{"error":"invalid_request"}`). */
  body?: string
  contentType?: string
}

export interface RecordedTokenRequest {
  at: number
  clientId?: string
  grant?: string
  authMethod?: string
  /** Form fields; credentials (client_secret, client_assertion, assertion, refresh_token) as [REDACTED]. */
  form: Record<string, string | string[]>
  dpop: boolean
  status: number
  error?: string
  error_description?: string
  /** The client assertion or jwt-bearer assertion as received: its JOSE header and claims (never the signed JWT). */
  assertion?: { header: Record<string, unknown>; claims: Record<string, unknown> }
}

export interface AuthorizationServerOptions {
  /** Access token lifetime (default 300 s). */
  tokenLifetimeSec?: number
  /** Server clock, epoch ms (default Date.now); also written to the Date header. */
  now?: () => number
  /** Serve HTTPS and request client certificates (tls_client_auth, certificate-bound tokens). */
  tls?: { cert: string; key: string; ca?: string }
  /** Require DPoP nonces (RFC 9449 §8). */
  dpopNonces?: boolean
  /** Clock tolerance for assertions and proofs (default 30 s). */
  clockToleranceSec?: number
  /** Omit `expires_in` from token responses (clients then read the JWT `exp`). */
  omitExpiresIn?: boolean
}

export interface VerifiedAccess {
  claims: JWTPayload & { client_id?: string; scope?: string; cnf?: { jkt?: string; 'x5t#S256'?: string } }
}

export interface ProtectedApiOptions {
  tls?: { cert: string; key: string; ca?: string }
  /** Require DPoP nonces on the API. */
  dpopNonces?: boolean
  /** Required `aud` value of tokens. */
  audience?: string
}

export interface ApiRequestRecord {
  method: string
  path: string
  /** Headers with Authorization and DPoP values replaced by `<scheme> [REDACTED]` / `[REDACTED]`. */
  headers: Record<string, string>
  body: string
  status: number
  sub?: string
  clientId?: string
}

export interface ProtectedApi {
  url: string
  requests: ApiRequestRecord[]
  /** The next `count` requests (default 1) get this response instead, after token verification unless `beforeAuth`. */
  respondNext(spec: { status: number; headers?: Record<string, string>; body?: string; count?: number; beforeAuth?: boolean }): void
  close(): Promise<void>
}

export interface AuthorizationServer {
  url: string
  issuer: string
  tokenUrl: string
  jwksUrl: string
  registerClient(client: RegisteredClient): void
  /** Issues a refresh token (as if a user had consented) for the refresh_token grant. */
  issueRefreshToken(clientId: string, options?: { scope?: string; sub?: string }): string
  setFailure(failure: FailureSpec): void
  /** Every token request, in order. */
  requests: RecordedTokenRequest[]
  /** Token requests per client and grant (all outcomes). */
  counts(): { total: number; byClient: Record<string, Record<string, number>> }
  /** How often a spent (rotated) refresh token was presented. */
  spentRefreshTokenUses(): number
  /** Every credential value the server received or issued (secrets, assertions, proofs, tokens), for leak tests. */
  secretsSeen(): string[]
  /** Revokes every access and refresh token issued so far. */
  revokeAll(): void
  /** Rotates the DPoP nonce; returns the new one. */
  rotateDpopNonce(): string
  /** Verifies an access token as a resource server would (signature, iss, exp, revocation, DPoP / certificate binding). */
  verifyAccessToken(authorization: string | undefined, request?: { method: string; url: string; dpop?: string; certThumbprint?: string; nonce?: string }): Promise<VerifiedAccess>
  createProtectedApi(options?: ProtectedApiOptions): Promise<ProtectedApi>
  close(): Promise<void>
}

const ASYMMETRIC = ['RS256', 'RS384', 'PS256', 'ES256', 'ES384', 'EdDSA']
const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
const SECRET_FIELDS = new Set(['client_secret', 'client_assertion', 'assertion', 'refresh_token'])

class OAuthFailure extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description)
  }
}

/** Thrown by verifyAccessToken; the protected API turns it into 401 with a WWW-Authenticate challenge. */
export class AccessDenied extends Error {
  constructor(
    readonly error: string,
    readonly description: string,
    readonly scheme: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description)
  }
}

function formDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '))
}

function readBody(req: IncomingMessage, limit = 1_000_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) reject(new Error('body too large'))
      else chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function peerThumbprint(req: IncomingMessage): { thumbprint?: string; subject?: string; authorized: boolean } {
  const sock = req.socket as TLSSocket
  if (typeof sock.getPeerCertificate !== 'function') return { authorized: false }
  const cert = sock.getPeerCertificate()
  if (!cert || !cert.raw) return { authorized: false }
  const x = new X509Certificate(cert.raw)
  return { thumbprint: createHash('sha256').update(cert.raw).digest('base64url'), subject: x.subject.split('\n').join(','), authorized: sock.authorized }
}

function asKeySet(jwks: RegisteredClient['jwks']): { keys: JWK[] } {
  if (!jwks) return { keys: [] }
  return 'keys' in jwks && Array.isArray(jwks.keys) ? (jwks as { keys: JWK[] }) : { keys: [jwks as JWK] }
}

function listen(server: Server, ): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
  })
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

/**
 * A strict OAuth 2.0 authorization server on 127.0.0.1 for tests, the harness and the demo:
 * client_credentials, jwt-bearer (RFC 7523) and refresh_token with rotation; every client
 * authentication method of RFC 6749 / RFC 7523 / RFC 8705 with cryptographic checks; DPoP
 * (RFC 9449) with nonces; JWT access tokens; RFC 8414 metadata and a JWKS; failure injection.
 *
 * @example
 * const as = await startAuthorizationServer()
 * as.registerClient({ clientId: 'c1', authMethod: 'client_secret_basic', secret: 's3cret-value' })
 * // token endpoint: as.tokenUrl
 */
export async function startAuthorizationServer(options: AuthorizationServerOptions = {}): Promise<AuthorizationServer> {
  const now = options.now ?? (() => Date.now())
  const tolerance = (options.clockToleranceSec ?? 30) * 1000
  const lifetimeSec = options.tokenLifetimeSec ?? 300
  const { privateKey: signingKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const serverKid = randomBytes(8).toString('hex')
  const publicJwk = { ...(await exportJWK(publicKey)), kid: serverKid, alg: 'ES256', use: 'sig' }
  const localJwks = createLocalJWKSet({ keys: [publicJwk] })

  const clients = new Map<string, RegisteredClient>()
  const refreshTokens = new Map<string, { clientId: string; scope: string; sub: string; spent: boolean; revoked: boolean }>()
  const seenJti = new Map<string, number>()
  const seenProofJti = new Map<string, number>()
  const failures: FailureSpec[] = []
  const requests: RecordedTokenRequest[] = []
  let spentUses = 0
  const issuedJti = new Set<string>()
  const seen = new Set<string>()
  const revokedJti = new Set<string>()
  let dpopNonce = randomBytes(12).toString('base64url')

  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key, ...(options.tls.ca ? { ca: options.tls.ca } : {}), requestCert: true, rejectUnauthorized: false })
    : createHttpServer()
  server.keepAliveTimeout = 5000
  const port = await listen(server)
  const url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`
  const issuer = url
  const tokenUrl = `${url}/token`
  const jwksUrl = `${url}/jwks`

  function rememberJti(map: Map<string, number>, jti: string, until: number): boolean {
    const t = now()
    if (map.size > 10_000) for (const [k, exp] of map) if (exp < t) map.delete(k)
    const prev = map.get(jti)
    if (prev !== undefined && prev >= t - tolerance) return false
    map.set(jti, until)
    return true
  }

  function allowedAlgs(client: RegisteredClient): string[] {
    if (client.allowedAlgs) return client.allowedAlgs
    if (client.authMethod === 'client_secret_jwt') return ['HS256']
    const fromKeys = asKeySet(client.jwks).keys.map((k) => k.alg).filter((a): a is string => typeof a === 'string')
    return fromKeys.length ? fromKeys : ASYMMETRIC
  }

  /** Verifies a client assertion or jwt-bearer assertion; returns its claims. */
  async function verifyAssertion(jwt: string, client: RegisteredClient, expected: { iss: string; sub?: string; what: string; error: string }): Promise<JWTPayload> {
    const fail = (d: string) => new OAuthFailure(expected.error === 'invalid_client' ? 401 : 400, expected.error, `${expected.what}: ${d}`)
    let header: ReturnType<typeof decodeProtectedHeader>
    try {
      header = decodeProtectedHeader(jwt)
    } catch {
      throw fail('not a JWS')
    }
    const alg = String(header.alg)
    if (!allowedAlgs(client).includes(alg)) throw fail(`alg ${alg} not allowed for this client`)
    try {
      if (alg === 'HS256') {
        if (!client.secret) throw fail('client has no secret for HS256')
        await compactVerify(jwt, new TextEncoder().encode(client.secret), { algorithms: ['HS256'] })
      } else {
        const set = asKeySet(client.jwks)
        if (header.kid !== undefined && !set.keys.some((k) => k.kid === header.kid)) throw fail(`no registered key with kid ${JSON.stringify(header.kid)}`)
        await compactVerify(jwt, createLocalJWKSet(set), { algorithms: [alg] })
      }
    } catch (e) {
      if (e instanceof OAuthFailure) throw e
      throw fail(`signature verification failed (${(e as { code?: string }).code ?? 'error'})`)
    }
    const c = decodeJwt(jwt)
    const t = now()
    if (c.iss !== expected.iss) throw fail(`iss must be ${expected.what === 'client assertion' ? 'the client_id' : JSON.stringify(expected.iss)}`)
    if (expected.sub !== undefined && c.sub !== expected.sub) throw fail('sub must be the client_id')
    if (typeof c.sub !== 'string') throw fail('sub is required')
    const auds = Array.isArray(c.aud) ? c.aud : c.aud === undefined ? [] : [c.aud]
    const accepted = client.assertionAudiences ?? (client.acceptIssuerAudience ? [tokenUrl, issuer] : [tokenUrl])
    if (!auds.some((a) => accepted.includes(a))) throw fail(client.assertionAudiences ? `aud must be one of ${accepted.join(', ')}` : 'aud must be the token endpoint')
    if (typeof c.exp !== 'number') throw fail('exp is required')
    const max = client.maxAssertionLifetimeSec ?? 300
    if (c.exp * 1000 < t - tolerance) throw fail('assertion expired')
    if (c.exp * 1000 - t > max * 1000 + tolerance) throw fail(`exp more than ${max} s ahead`)
    if (typeof c.iat === 'number' && c.iat * 1000 > t + tolerance) throw fail('iat is in the future')
    if (typeof c.nbf === 'number' && c.nbf * 1000 > t + tolerance) throw fail('nbf is in the future')
    if (typeof c.jti !== 'string' || c.jti === '') {
      if (expected.what === 'client assertion') throw fail('jti is required')
    } else if (!rememberJti(seenJti, `${client.clientId}:${c.jti}`, c.exp * 1000 + tolerance)) throw fail('jti reused')
    return c
  }

  /** RFC 6749 §2.3: identifies and authenticates the client; credentials must come in exactly one place. */
  async function authenticate(req: IncomingMessage, form: URLSearchParams, grant: string | null): Promise<{ client?: RegisteredClient; method?: ClientAuthMethod }> {
    const authz = req.headers.authorization
    const basic = authz && /^basic /i.test(authz) ? authz.slice(6).trim() : undefined
    const places = [basic !== undefined, form.has('client_secret'), form.has('client_assertion')].filter(Boolean).length
    if (places > 1) throw new OAuthFailure(400, 'invalid_request', 'client credentials sent in more than one place (RFC 6749 §2.3)')
    const invalid = (d: string) => new OAuthFailure(401, 'invalid_client', d, basic !== undefined ? { 'www-authenticate': 'Basic realm="weir"' } : {})
    if (basic !== undefined) {
      const decoded = Buffer.from(basic, 'base64').toString('utf8')
      const i = decoded.indexOf(':')
      if (i < 0) throw invalid('malformed Basic credentials')
      const rawId = decoded.slice(0, i)
      const rawSecret = decoded.slice(i + 1)
      let id = rawId
      let secret = rawSecret
      const strictId = (() => { try { return formDecode(rawId) } catch { return undefined } })()
      const client = clients.get(rawId) ?? (strictId !== undefined ? clients.get(strictId) : undefined)
      if (!client) throw invalid('unknown client')
      if ((client.basicEncoding ?? 'strict') === 'strict') {
        try {
          id = formDecode(rawId)
          secret = formDecode(rawSecret)
        } catch {
          throw invalid('Basic credentials are not form-urlencoded')
        }
      }
      if (id !== client.clientId) throw invalid('unknown client')
      if (client.authMethod !== 'client_secret_basic') throw invalid(`client is registered for ${client.authMethod}, not client_secret_basic`)
      if (form.has('client_id') && form.get('client_id') !== client.clientId) throw invalid('client_id does not match the Basic credentials')
      if (secret !== client.secret) throw invalid('client secret mismatch')
      return { client, method: 'client_secret_basic' }
    }
    if (form.has('client_assertion')) {
      if (form.get('client_assertion_type') !== CLIENT_ASSERTION_TYPE) throw invalid(`client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`)
      const jwt = form.get('client_assertion')!
      let sub: unknown
      try {
        sub = decodeJwt(jwt).sub
      } catch {
        throw invalid('client assertion: not a JWT')
      }
      const id = form.get('client_id') ?? (typeof sub === 'string' ? sub : undefined)
      const client = id ? clients.get(id) : undefined
      if (!client) throw invalid('unknown client')
      if (client.authMethod !== 'private_key_jwt' && client.authMethod !== 'client_secret_jwt') throw invalid(`client is registered for ${client.authMethod}, not a client assertion`)
      const alg = String(decodeProtectedHeader(jwt).alg)
      const method = alg === 'HS256' ? 'client_secret_jwt' : 'private_key_jwt'
      if (method !== client.authMethod && !(client.allowedAlgs?.includes(alg))) throw invalid(`client assertion: alg ${alg} not allowed for this client`)
      await verifyAssertion(jwt, client, { iss: client.clientId, sub: client.clientId, what: 'client assertion', error: 'invalid_client' })
      return { client, method: client.authMethod }
    }
    const id = form.get('client_id')
    if (form.has('client_secret')) {
      const client = id ? clients.get(id) : undefined
      if (!client) throw invalid('unknown client')
      if (client.authMethod !== 'client_secret_post') throw invalid(`client is registered for ${client.authMethod}, not client_secret_post`)
      if (form.get('client_secret') !== client.secret) throw invalid('client secret mismatch')
      return { client, method: 'client_secret_post' }
    }
    if (!id) {
      if (grant === JWT_BEARER) return {}
      throw invalid('no client authentication and no client_id')
    }
    const client = clients.get(id)
    if (!client) throw invalid('unknown client')
    if (client.authMethod === 'tls_client_auth') {
      const peer = peerThumbprint(req)
      if (!peer.thumbprint) throw invalid('tls_client_auth requires a client certificate')
      if (!peer.authorized) throw invalid('client certificate is not trusted')
      const ok = (client.tlsCertThumbprint && client.tlsCertThumbprint === peer.thumbprint) || (client.tlsSubjectDn && client.tlsSubjectDn === peer.subject)
      if (!ok) throw invalid('client certificate does not match the registration')
      return { client, method: 'tls_client_auth' }
    }
    if (client.authMethod !== 'none') throw invalid(`client is registered for ${client.authMethod}, but sent no credentials`)
    return { client, method: 'none' }
  }

  /** The client id a request claims (before authentication), for the request log. */
  function claimedClientId(req: IncomingMessage, form: URLSearchParams): string | undefined {
    const authz = req.headers.authorization
    if (authz && /^basic /i.test(authz)) {
      const decoded = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8')
      const raw = decoded.slice(0, Math.max(0, decoded.indexOf(':')))
      try {
        const strict = formDecode(raw)
        return clients.has(strict) ? strict : raw
      } catch {
        return raw
      }
    }
    if (form.get('client_id')) return form.get('client_id')!
    for (const f of ['client_assertion', 'assertion']) {
      const jwt = form.get(f)
      if (!jwt) continue
      try {
        const c = decodeJwt(jwt)
        const id = f === 'client_assertion' ? c.sub : [...clients.values()].find((x) => (x.assertionIssuer ?? x.clientId) === c.iss)?.clientId
        if (typeof id === 'string') return id
      } catch { /* not a JWT */ }
    }
    return undefined
  }

  async function verifyDpopProof(proof: string, htm: string, htu: string, opts: { nonce: boolean; accessToken?: string; jkt?: string }, errorCode: string): Promise<string> {
    const fail = (d: string) => new OAuthFailure(errorCode === 'invalid_dpop_proof' ? 400 : 401, errorCode, d)
    let header: ReturnType<typeof decodeProtectedHeader>
    try {
      header = decodeProtectedHeader(proof)
    } catch {
      throw fail('DPoP proof is not a JWS')
    }
    if (header.typ !== 'dpop+jwt') throw fail('DPoP proof typ must be dpop+jwt')
    if (!ASYMMETRIC.includes(String(header.alg))) throw fail(`DPoP proof alg ${String(header.alg)} not allowed`)
    const jwk = header.jwk as JWK | undefined
    if (!jwk || 'd' in jwk) throw fail('DPoP proof must carry a public jwk')
    try {
      await compactVerify(proof, await importJWK(jwk, String(header.alg)), { algorithms: [String(header.alg)] })
    } catch {
      throw fail('DPoP proof signature verification failed')
    }
    const c = decodeJwt(proof)
    const u = new URL(htu)
    if (c.htm !== htm) throw fail(`DPoP proof htm must be ${htm}`)
    if (c.htu !== `${u.origin}${u.pathname}`) throw fail('DPoP proof htu does not match the request URL')
    if (typeof c.iat !== 'number' || Math.abs(c.iat * 1000 - now()) > Math.max(tolerance, 60_000)) throw fail('DPoP proof iat too far from now')
    if (typeof c.jti !== 'string' || !rememberJti(seenProofJti, c.jti, now() + 300_000)) throw fail('DPoP proof jti missing or reused')
    if (opts.accessToken !== undefined && c.ath !== createHash('sha256').update(opts.accessToken).digest('base64url')) throw fail('DPoP proof ath does not match the access token')
    const jkt = await calculateJwkThumbprint(jwk)
    if (opts.jkt !== undefined && opts.jkt !== jkt) throw fail('DPoP proof key does not match the token binding')
    return jkt
  }

  async function issueAccessToken(client: RegisteredClient, claims: { sub: string; scope: string; aud: string | string[]; cnf?: Record<string, string> }) {
    const t = Math.floor(now() / 1000)
    const life = client.tokenLifetimeSec ?? lifetimeSec
    const jti = randomUUID()
    issuedJti.add(jti)
    const jwt = await new SignJWT({ client_id: client.clientId, scope: claims.scope || undefined, ...(claims.cnf ? { cnf: claims.cnf } : {}) })
      .setProtectedHeader({ alg: 'ES256', kid: serverKid, typ: 'at+jwt' })
      .setIssuer(issuer).setSubject(claims.sub).setAudience(claims.aud).setIssuedAt(t).setExpirationTime(t + life).setJti(jti)
      .sign(signingKey as CryptoKey)
    return { jwt, life }
  }

  function checkScopes(client: RegisteredClient, requested: string | null): string {
    if (requested === null || requested.trim() === '') return client.defaultScope ?? client.scopes?.join(' ') ?? ''
    const items = requested.split(' ').filter(Boolean)
    for (const s of items) if (client.scopes && !client.scopes.includes(s)) throw new OAuthFailure(400, 'invalid_scope', `scope ${s} not allowed for this client`)
    return items.join(' ')
  }

  async function tokenEndpoint(req: IncomingMessage, res: ServerResponse, body: string) {
    const form = new URLSearchParams(body)
    const grant = form.get('grant_type')
    const record: RecordedTokenRequest = { at: now(), form: {}, dpop: Boolean(req.headers.dpop), status: 0 }
    for (const [k, v] of form) {
      const value = SECRET_FIELDS.has(k) ? '[REDACTED]' : v
      const prev = record.form[k]
      record.form[k] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
    }
    record.grant = grant === JWT_BEARER ? 'jwt_bearer' : grant ?? undefined
    const signed = form.get('client_assertion') ?? form.get('assertion')
    if (signed) {
      try { record.assertion = { header: { ...decodeProtectedHeader(signed) }, claims: { ...decodeJwt(signed) } } } catch { /* not a JWT: refused below */ }
    }
    const claimed = claimedClientId(req, form)
    if (claimed) record.clientId = claimed
    for (const k of SECRET_FIELDS) for (const v of form.getAll(k)) seen.add(v)
    if (req.headers.authorization) seen.add(req.headers.authorization.replace(/^\S+\s+/, ''))
    if (typeof req.headers.dpop === 'string') seen.add(req.headers.dpop)
    requests.push(record)
    const headers: Record<string, string> = { 'cache-control': 'no-store' }
    if (options.dpopNonces) headers['dpop-nonce'] = dpopNonce
    const send = (status: number, payload: unknown, extra: Record<string, string> = {}) => {
      record.status = status
      res.writeHead(status, { 'content-type': 'application/json', ...headers, ...extra })
      res.end(JSON.stringify(payload))
    }
    try {
      const failure = failures[0]
      if (failure) {
        if ((failure.count ?? 1) <= 1) failures.shift()
        else failure.count = (failure.count ?? 1) - 1
        if (failure.delayMs) await new Promise((r) => setTimeout(r, failure.delayMs))
        record.status = failure.status
        const fh: Record<string, string> = { 'content-type': failure.contentType ?? 'application/json', ...headers }
        if (failure.retryAfter !== undefined) fh['retry-after'] = String(failure.retryAfter)
        res.writeHead(failure.status, fh)
        res.end(failure.body ?? JSON.stringify({ error: failure.status >= 500 ? 'temporarily_unavailable' : 'invalid_request' }))
        return
      }
      if (req.headers['content-type']?.split(';')[0]?.trim() !== 'application/x-www-form-urlencoded') throw new OAuthFailure(400, 'invalid_request', 'content-type must be application/x-www-form-urlencoded')
      if (!grant) throw new OAuthFailure(400, 'invalid_request', 'grant_type is required')
      const { client: authClient, method } = await authenticate(req, form, grant)
      if (authClient) record.clientId = authClient.clientId
      if (method) record.authMethod = method

      let jkt: string | undefined
      const proof = req.headers.dpop
      if (typeof proof === 'string') {
        if (options.dpopNonces) {
          const c = (() => { try { return decodeJwt(proof) } catch { return {} as JWTPayload } })()
          if (c.nonce !== dpopNonce) throw new OAuthFailure(400, 'use_dpop_nonce', 'DPoP nonce required')
        }
        jkt = await verifyDpopProof(proof, 'POST', tokenUrl, { nonce: Boolean(options.dpopNonces) }, 'invalid_dpop_proof')
      } else if (authClient?.requireDpop) throw new OAuthFailure(400, 'invalid_request', 'DPoP proof required for this client')
      const peer = peerThumbprint(req)
      const cnf: Record<string, string> = {}
      if (jkt) cnf.jkt = jkt
      if (peer.thumbprint && peer.authorized) cnf['x5t#S256'] = peer.thumbprint

      let client = authClient
      let sub: string
      let scope: string
      let refreshOut: string | undefined
      let spendRefresh: { scope: string; spent: boolean } | undefined
      if (grant === 'client_credentials') {
        if (!client) throw new OAuthFailure(401, 'invalid_client', 'client authentication required')
        sub = client.clientId
        scope = checkScopes(client, form.get('scope'))
      } else if (grant === JWT_BEARER) {
        const assertion = form.get('assertion')
        if (!assertion) throw new OAuthFailure(400, 'invalid_request', 'assertion is required')
        let claims: JWTPayload
        try {
          claims = decodeJwt(assertion)
        } catch {
          throw new OAuthFailure(400, 'invalid_grant', 'assertion: not a JWT')
        }
        if (!client) {
          client = [...clients.values()].find((c) => (c.assertionIssuer ?? c.clientId) === claims.iss)
          if (!client) throw new OAuthFailure(400, 'invalid_grant', 'assertion: unknown issuer')
          record.clientId = client.clientId
        }
        const verified = await verifyAssertion(assertion, client, { iss: client.assertionIssuer ?? client.clientId, what: 'assertion', error: 'invalid_grant' })
        sub = String(verified.sub)
        scope = checkScopes(client, form.get('scope') ?? (typeof verified.scope === 'string' ? verified.scope : null))
      } else if (grant === 'refresh_token') {
        if (!client) throw new OAuthFailure(401, 'invalid_client', 'client authentication required')
        const rt = form.get('refresh_token') ?? ''
        const entry = refreshTokens.get(rt)
        if (!entry || entry.clientId !== client.clientId) throw new OAuthFailure(400, 'invalid_grant', 'unknown refresh token')
        if (entry.spent) {
          spentUses++
          throw new OAuthFailure(400, 'invalid_grant', 'refresh token already used')
        }
        if (entry.revoked) throw new OAuthFailure(400, 'invalid_grant', 'refresh token revoked')
        sub = entry.sub
        const asked = form.get('scope')
        if (asked) for (const s of asked.split(' ')) if (!entry.scope.split(' ').includes(s)) throw new OAuthFailure(400, 'invalid_scope', `scope ${s} exceeds the original grant`)
        scope = asked ?? entry.scope
        // Rotated below, once every check has passed: a rejected request must not burn the token.
        if (client.rotateRefreshTokens ?? true) spendRefresh = entry
      } else {
        throw new OAuthFailure(400, 'unsupported_grant_type', `grant_type ${grant} is not supported`)
      }
      const grantKind: GrantKind = grant === JWT_BEARER ? 'jwt_bearer' : (grant as GrantKind)
      if (client.grants && !client.grants.includes(grantKind)) throw new OAuthFailure(400, 'unauthorized_client', `grant ${grantKind} not allowed for this client`)
      const resources = form.getAll('resource')
      for (const r of resources) {
        if (!/^[a-z][a-z0-9+.-]*:/i.test(r) || r.includes('#')) throw new OAuthFailure(400, 'invalid_target', `resource ${r} must be an absolute URI without fragment`)
        if (client.resources && !client.resources.includes(r)) throw new OAuthFailure(400, 'invalid_target', `resource ${r} not allowed for this client`)
      }
      const audience = form.get('audience')
      if (audience && client.audiences && !client.audiences.includes(audience)) throw new OAuthFailure(400, 'invalid_target', `audience ${audience} not allowed for this client`)
      const aud = resources.length ? (resources.length === 1 ? resources[0]! : resources) : audience ?? `${issuer}/api`
      if (spendRefresh) {
        spendRefresh.spent = true
        refreshOut = randomBytes(24).toString('base64url')
        refreshTokens.set(refreshOut, { clientId: client.clientId, scope: spendRefresh.scope, sub, spent: false, revoked: false })
      }
      const { jwt, life } = await issueAccessToken(client, { sub, scope, aud, ...(Object.keys(cnf).length ? { cnf } : {}) })
      seen.add(jwt)
      if (refreshOut) seen.add(refreshOut)
      send(200, {
        ...client.tokenResponse,
        access_token: jwt, token_type: jkt ? 'DPoP' : 'Bearer', ...(options.omitExpiresIn ? {} : { expires_in: life }),
        ...(scope ? { scope } : {}), ...(refreshOut ? { refresh_token: refreshOut } : {}),
      })
    } catch (e) {
      if (e instanceof OAuthFailure) {
        record.error = e.error
        record.error_description = e.description
        send(e.status, { error: e.error, error_description: e.description, error_uri: `${issuer}/errors#${e.error}` }, e.headers)
      } else {
        record.error = 'server_error'
        send(500, { error: 'server_error', error_description: 'internal error' })
      }
    }
  }

  server.on('request', (req, res) => {
    res.setHeader('date', new Date(now()).toUTCString())
    const path = new URL(req.url ?? '/', url).pathname
    readBody(req).then(async (body) => {
      if (req.method === 'POST' && path === '/token') return tokenEndpoint(req, res, body)
      if (req.method === 'GET' && path === '/jwks') {
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({ keys: [publicJwk] }))
      }
      if (req.method === 'GET' && path === '/.well-known/oauth-authorization-server') {
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({
          issuer, token_endpoint: tokenUrl, jwks_uri: jwksUrl,
          grant_types_supported: ['client_credentials', JWT_BEARER, 'refresh_token'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth', 'none'],
          token_endpoint_auth_signing_alg_values_supported: [...ASYMMETRIC, 'HS256'],
          dpop_signing_alg_values_supported: ASYMMETRIC,
          ...(options.tls ? { tls_client_certificate_bound_access_tokens: true, mtls_endpoint_aliases: { token_endpoint: tokenUrl } } : {}),
        }))
      }
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: 'not_found' }))
    }).catch(() => {
      if (!res.headersSent) res.writeHead(400)
      res.end()
    })
  })

  async function verifyAccessToken(authorization: string | undefined, request?: { method: string; url: string; dpop?: string; certThumbprint?: string; nonce?: string }): Promise<VerifiedAccess> {
    const m = /^(Bearer|DPoP) +(\S+)$/i.exec(authorization ?? '')
    if (!m) throw new AccessDenied('invalid_request', 'no access token', 'Bearer')
    const scheme = m[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer'
    const token = m[2]!
    let claims: VerifiedAccess['claims']
    try {
      ;({ payload: claims } = await jwtVerify(token, localJwks, { issuer, algorithms: ['ES256'], currentDate: new Date(now()), typ: 'at+jwt' }))
    } catch (e) {
      throw new AccessDenied('invalid_token', (e as { code?: string }).code === 'ERR_JWT_EXPIRED' ? 'token expired' : 'token verification failed', scheme)
    }
    if (revokedJti.has(String(claims.jti))) throw new AccessDenied('invalid_token', 'token revoked', scheme)
    if (claims.cnf?.jkt) {
      if (scheme !== 'DPoP') throw new AccessDenied('invalid_token', 'DPoP-bound token sent as Bearer', 'DPoP')
      if (!request?.dpop) throw new AccessDenied('invalid_dpop_proof', 'DPoP proof required', 'DPoP')
      if (request.nonce !== undefined) {
        const c = (() => { try { return decodeJwt(request.dpop!) } catch { return {} as JWTPayload } })()
        if (c.nonce !== request.nonce) throw new AccessDenied('use_dpop_nonce', 'DPoP nonce required', 'DPoP', { 'dpop-nonce': request.nonce })
      }
      try {
        await verifyDpopProof(request.dpop, request.method, request.url, { nonce: false, accessToken: token, jkt: claims.cnf.jkt }, 'invalid_dpop_proof')
      } catch (e) {
        throw new AccessDenied('invalid_dpop_proof', (e as Error).message, 'DPoP')
      }
    } else if (scheme === 'DPoP') throw new AccessDenied('invalid_token', 'token is not DPoP-bound', 'DPoP')
    const x5t = claims.cnf?.['x5t#S256']
    if (x5t && request?.certThumbprint !== x5t) throw new AccessDenied('invalid_token', 'certificate-bound token presented without the bound client certificate', scheme)
    return { claims }
  }

  async function createProtectedApi(apiOptions: ProtectedApiOptions = {}): Promise<ProtectedApi> {
    const api: Server = apiOptions.tls
      ? createHttpsServer({ cert: apiOptions.tls.cert, key: apiOptions.tls.key, ...(apiOptions.tls.ca ? { ca: apiOptions.tls.ca } : {}), requestCert: true, rejectUnauthorized: false })
      : createHttpServer()
    const apiPort = await listen(api)
    const apiUrl = `${apiOptions.tls ? 'https' : 'http'}://127.0.0.1:${apiPort}`
    const recorded: ApiRequestRecord[] = []
    const queue: Array<{ status: number; headers?: Record<string, string>; body?: string; count?: number; beforeAuth?: boolean }> = []
    const apiNonce = randomBytes(12).toString('base64url')
    api.on('request', (req, res) => {
      res.setHeader('date', new Date(now()).toUTCString())
      readBody(req).then(async (body) => {
        const headers: Record<string, string> = {}
        for (const [k, v] of Object.entries(req.headers)) {
          if (v === undefined) continue
          const s = Array.isArray(v) ? v.join(', ') : v
          headers[k] = k === 'authorization' ? `${s.split(' ')[0]} [REDACTED]` : k === 'dpop' ? '[REDACTED]' : s
        }
        if (req.headers.authorization) seen.add(req.headers.authorization.replace(/^\S+\s+/, ''))
        if (typeof req.headers.dpop === 'string') seen.add(req.headers.dpop)
        const rec: ApiRequestRecord = { method: req.method ?? 'GET', path: req.url ?? '/', headers, body, status: 0 }
        recorded.push(rec)
        const reply = (status: number, h: Record<string, string>, b: string) => {
          rec.status = status
          res.writeHead(status, { 'content-type': 'application/json', ...h })
          res.end(b)
        }
        const next = queue[0]
        const take = () => {
          if ((next!.count ?? 1) <= 1) queue.shift()
          else next!.count = (next!.count ?? 1) - 1
          reply(next!.status, next!.headers ?? {}, next!.body ?? '')
        }
        if (next?.beforeAuth) return take()
        try {
          const peer = peerThumbprint(req)
          const { claims } = await verifyAccessToken(req.headers.authorization, {
            method: req.method ?? 'GET', url: `${apiUrl}${req.url ?? '/'}`,
            ...(typeof req.headers.dpop === 'string' ? { dpop: req.headers.dpop } : {}),
            ...(peer.thumbprint && peer.authorized ? { certThumbprint: peer.thumbprint } : {}),
            ...(apiOptions.dpopNonces ? { nonce: apiNonce } : {}),
          })
          if (apiOptions.audience) {
            const auds = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
            if (!auds.includes(apiOptions.audience)) throw new AccessDenied('invalid_token', 'token audience does not include this API', 'Bearer')
          }
          if (claims.sub) rec.sub = claims.sub
          if (claims.client_id) rec.clientId = claims.client_id
          if (next) return take()
          reply(200, {}, JSON.stringify({ ok: true, sub: claims.sub, client_id: claims.client_id, scope: claims.scope ?? '' }))
        } catch (e) {
          if (!(e instanceof AccessDenied)) throw e
          reply(401, { 'www-authenticate': `${e.scheme} error="${e.error}", error_description="${e.description}"`, ...e.headers }, JSON.stringify({ error: e.error }))
        }
      }).catch(() => {
        if (!res.headersSent) res.writeHead(500)
        res.end()
      })
    })
    return {
      url: apiUrl,
      requests: recorded,
      respondNext: (spec) => void queue.push({ ...spec }),
      close: () => closeServer(api),
    }
  }

  return {
    url, issuer, tokenUrl, jwksUrl, requests,
    registerClient(client) {
      if (client.secret) seen.add(client.secret)
      clients.set(client.clientId, { ...client })
    },
    issueRefreshToken(clientId, opts = {}) {
      const rt = randomBytes(24).toString('base64url')
      seen.add(rt)
      refreshTokens.set(rt, { clientId, scope: opts.scope ?? clients.get(clientId)?.scopes?.join(' ') ?? '', sub: opts.sub ?? 'user-1', spent: false, revoked: false })
      return rt
    },
    setFailure(f) {
      failures.push({ ...f })
    },
    counts() {
      const byClient: Record<string, Record<string, number>> = {}
      for (const r of requests) {
        const c = (byClient[r.clientId ?? '(unknown)'] ??= {})
        c[r.grant ?? '(none)'] = (c[r.grant ?? '(none)'] ?? 0) + 1
      }
      return { total: requests.length, byClient }
    },
    spentRefreshTokenUses: () => spentUses,
    secretsSeen: () => [...seen],
    revokeAll() {
      for (const j of issuedJti) revokedJti.add(j)
      for (const e of refreshTokens.values()) e.revoked = true
    },
    rotateDpopNonce() {
      dpopNonce = randomBytes(12).toString('base64url')
      return dpopNonce
    },
    verifyAccessToken,
    createProtectedApi,
    close: () => closeServer(server),
  }
}

/** Public JWK of a private key (for registering a test client). */
export async function publicJwkOf(privateKey: KeyObject, alg: string, kid?: string): Promise<JWK> {
  const { createPublicKey } = await import('node:crypto')
  return { ...(await exportJWK(createPublicKey(privateKey))), alg, ...(kid ? { kid } : {}) }
}
