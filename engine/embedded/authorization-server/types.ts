import type { JWK, JWTPayload } from 'jose'
import type { HttpClient } from '../../../shared/http/types.ts'

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'client_secret_jwt' | 'private_key_jwt' | 'tls_client_auth' | 'none'
export type GrantKind = 'client_credentials' | 'jwt_bearer' | 'refresh_token' | 'authorization_code'

/** A client as registered with the embedded server. Plain data, so harnesses can derive it from channel credentials. */
export interface RegisteredClient {
  clientId: string
  authMethod: ClientAuthMethod
  /** client_secret_basic / _post / _jwt. */
  secret?: string
  /** Public key(s) for private_key_jwt and for jwt-bearer assertions signed by this client. */
  jwks?: { keys: JWK[] } | JWK
  /** URL of the client's JWK Set, instead of `jwks`: fetched on first use, cached, refetched on an unknown kid (RFC 7591 §2). */
  jwksUri?: string
  /** Accepted assertion algorithms; default: the keys' `alg`, else all of RS256 RS384 PS256 ES256 ES384 EdDSA (HS256 for client_secret_jwt). */
  allowedAlgs?: string[]
  /** Grants this client may use (default all). */
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
  /**
   * Redirect URIs of the authorization-code flow, matched exactly, except that the port of a
   * loopback IP literal (http://127.0.0.1/..., http://[::1]/...) may be any (RFC 8252 §7.3).
   */
  redirectUris?: string[]
  /** How the simulated user answers this client's consent screen at /authorize (default `approve`; `deny` answers access_denied). */
  consent?: 'approve' | 'deny'
}

export interface FailureSpec {
  status: number
  /** Only token requests at this tenant's endpoint (see AuthorizationServer.tenant); default: at any endpoint. */
  tenant?: string
  /** Only token requests of this client id (as the request names it, before authentication); default: any client. */
  clientId?: string
  /** How many token requests fail (default 1). */
  count?: number
  /** Delay before answering (ms). */
  delayMs?: number
  /** Retry-After header value (seconds or HTTP date). */
  retryAfter?: string | number
  /**
   * Raw body. Default: `{"error":"temporarily_unavailable"}` for 5xx, `{"error":"invalid_client"}` for
   * 401 (what a token endpoint answers a client it cannot authenticate, RFC 6749 §5.2), else
   * `{"error":"invalid_request"}`.
   */
  body?: string
  contentType?: string
}

export interface RecordedTokenRequest {
  at: number
  /** The tenant whose token endpoint received it; absent for the server's own (`tokenUrl`). */
  tenant?: string
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
  /** Least time between two fetches of a client's `jwksUri` on unknown kids, in server time (default 60 s). */
  jwksRefetchCooldownSec?: number
  /** HTTP client for `jwksUri` fetches (default: one of the server's own). */
  http?: HttpClient
  /**
   * A spent refresh token presented again revokes its whole grant: every refresh token rotated from
   * the same one and every access token issued under it (RFC 9700 §4.14.2). Default false.
   */
  revokeGrantOnReuse?: boolean
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

/** Where a tenant of the server answers: its issuer and endpoints, under `/tenants/<name>`. */
export interface TenantEndpoints {
  name: string
  issuer: string
  tokenUrl: string
  authorizationUrl: string
}

export interface AuthorizationServer {
  url: string
  issuer: string
  tokenUrl: string
  /** The authorization endpoint (GET): consents at once as the client's `consent` says, and redirects with a one-time code. */
  authorizationUrl: string
  jwksUrl: string
  /**
   * A tenant of the server (created on first use), as a multi-tenant provider has them: an issuer,
   * token and authorization endpoints and metadata of its own under `/tenants/<name>`, and clients,
   * refresh tokens and codes of its own, so that one client id can be registered at two tenants
   * with different secrets or keys. Tenants share the signing key and the JWKS.
   */
  tenant(name: string): TenantEndpoints
  /** Registers a client with the server itself, or with `options.tenant` (replacing one of the same client id there). */
  registerClient(client: RegisteredClient, options?: { tenant?: string }): void
  /** Issues a refresh token (as if a user had consented) for the refresh_token grant, at the server or at `options.tenant`. */
  issueRefreshToken(clientId: string, options?: { scope?: string; sub?: string; tenant?: string }): string
  /** Queues an injected failure: the token requests it applies to (by `tenant`, `clientId`) get the queued failures in order, each `count` times. */
  setFailure(failure: FailureSpec): void
  /** Every token request, in order. */
  requests: RecordedTokenRequest[]
  /** Token requests per client id and grant (all outcomes; one client id at several tenants counts together). */
  counts(): { total: number; byClient: Record<string, Record<string, number>> }
  /** How often a spent (rotated) refresh token was presented. */
  spentRefreshTokenUses(): number
  /** How often the server fetched a client's `jwksUri`. */
  jwksFetches(): number
  /** Every credential value the server received or issued (secrets, assertions, proofs, tokens), for leak tests. */
  secretsSeen(): string[]
  /** Revokes every access and refresh token issued so far (at every tenant). */
  revokeAll(): void
  /** Rotates the DPoP nonce; returns the new one. */
  rotateDpopNonce(): string
  /** Verifies an access token as a resource server would (signature, iss, exp, revocation, DPoP / certificate binding). */
  verifyAccessToken(authorization: string | undefined, request?: { method: string; url: string; dpop?: string; certThumbprint?: string; nonce?: string }): Promise<VerifiedAccess>
  createProtectedApi(options?: ProtectedApiOptions): Promise<ProtectedApi>
  close(): Promise<void>
}
