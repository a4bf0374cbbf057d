import type { CryptoKey, JWK, createLocalJWKSet } from 'jose'
import type { AuthorizationServerOptions, FailureSpec, RecordedTokenRequest, RegisteredClient } from './types.ts'
import type { RemoteKeySets } from './remote-jwks.ts'

export const ASYMMETRIC = ['RS256', 'RS384', 'PS256', 'ES256', 'ES384', 'EdDSA']
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
/** Form fields that carry credentials: recorded as [REDACTED], remembered for leak tests. */
export const SECRET_FIELDS = new Set(['client_secret', 'client_assertion', 'assertion', 'refresh_token', 'code', 'code_verifier'])

/** A refused token request: status, RFC 6749 §5.2 error code and description, extra headers. */
export class OAuthFailure extends Error {
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

/** `jti` values seen until they expire: a second use within the window is a replay. */
export class JtiMemory {
  readonly #until = new Map<string, number>()
  constructor(private readonly now: () => number, private readonly toleranceMs: number) {}

  /** Records `jti` (valid until `until`); false when it was seen and has not expired. */
  remember(jti: string, until: number): boolean {
    const t = this.now()
    if (this.#until.size > 10_000) for (const [k, exp] of this.#until) if (exp < t) this.#until.delete(k)
    const prev = this.#until.get(jti)
    if (prev !== undefined && prev >= t - this.toleranceMs) return false
    this.#until.set(jti, until)
    return true
  }
}

export function asKeySet(jwks: RegisteredClient['jwks']): { keys: JWK[] } {
  if (!jwks) return { keys: [] }
  return 'keys' in jwks && Array.isArray(jwks.keys) ? (jwks as { keys: JWK[] }) : { keys: [jwks as JWK] }
}

/** The clients registered at one token endpoint (the server's or a tenant's), by client id and by the issuer of their jwt-bearer assertions. */
export class ClientRegistry {
  readonly #clients = new Map<string, RegisteredClient>()
  register(client: RegisteredClient): void {
    this.#clients.set(client.clientId, { ...client })
  }
  get(id: string): RegisteredClient | undefined {
    return this.#clients.get(id)
  }
  has(id: string): boolean {
    return this.#clients.has(id)
  }
  /** The client whose jwt-bearer assertions `iss` signs (its `assertionIssuer`, else its client id). */
  byAssertionIssuer(iss: unknown): RegisteredClient | undefined {
    return [...this.#clients.values()].find((c) => (c.assertionIssuer ?? c.clientId) === iss)
  }
}

/** Accepted assertion algorithms of a client: registered, else its keys' `alg`, else every asymmetric one (HS256 for client_secret_jwt). */
export function allowedAlgs(client: RegisteredClient): string[] {
  if (client.allowedAlgs) return client.allowedAlgs
  if (client.authMethod === 'client_secret_jwt') return ['HS256']
  const fromKeys = asKeySet(client.jwks).keys.map((k) => k.alg).filter((a): a is string => typeof a === 'string')
  return fromKeys.length ? fromKeys : ASYMMETRIC
}

/** Injected token-endpoint failures, answered in order, each `count` times, to the requests each applies to. */
export class FailureQueue {
  readonly #failures: FailureSpec[] = []
  add(f: FailureSpec): void {
    this.#failures.push({ ...f })
  }
  /** The failure a token request at `tenant` (undefined: the server's own endpoint) from `clientId` gets, if any (counted as used). */
  take(request: { tenant?: string | undefined; clientId?: string | undefined }): FailureSpec | undefined {
    const i = this.#failures.findIndex((f) => (f.tenant === undefined || f.tenant === request.tenant) && (f.clientId === undefined || f.clientId === request.clientId))
    const failure = this.#failures[i]
    if (!failure) return undefined
    if ((failure.count ?? 1) <= 1) this.#failures.splice(i, 1)
    else failure.count = (failure.count ?? 1) - 1
    return failure
  }
}

/** Token requests per client and grant (all outcomes). */
export function countRequests(requests: RecordedTokenRequest[]): { total: number; byClient: Record<string, Record<string, number>> } {
  const byClient: Record<string, Record<string, number>> = {}
  for (const r of requests) {
    const c = (byClient[r.clientId ?? '(unknown)'] ??= {})
    c[r.grant ?? '(none)'] = (c[r.grant ?? '(none)'] ?? 0) + 1
  }
  return { total: requests.length, byClient }
}

/** One grant as its refresh tokens rotate: what reuse of a spent one revokes (RFC 9700 §4.14.2). */
export interface GrantFamily {
  revoked: boolean
  /** `jti` of every access token issued under the grant. */
  issuedJti: string[]
}

export interface RefreshEntry {
  clientId: string
  scope: string
  sub: string
  spent: boolean
  revoked: boolean
  family: GrantFamily
  /** The authorization code this token descends from (through rotations), so a replay of the code revokes it. */
  code?: CodeEntry
}

/** A one-time authorization code (RFC 6749 §4.1.2) and what was asked with it. */
export interface CodeEntry {
  clientId: string
  redirectUri: string
  /** S256 code challenge (RFC 7636 §4.2). */
  challenge: string
  scope: string
  sub: string
  expiresAt: number
  used: boolean
  /** `jti` of every access token issued from this code (directly or by refreshing its descendants). */
  issuedJti: string[]
}

/**
 * One token endpoint of the server and what is registered and issued at it: the server's own, or a
 * tenant's under `/tenants/<name>`. A request's client id, refresh token or code is looked up at
 * the endpoint it came to, so one client id can be two clients at two tenants.
 */
export interface Tenant {
  /** Undefined for the server's own endpoint. */
  name?: string
  issuer: string
  tokenUrl: string
  authorizationUrl: string
  clients: ClientRegistry
  refreshTokens: Map<string, RefreshEntry>
  /** Authorization codes by value. */
  codes: Map<string, CodeEntry>
}

/** A tenant at `url` (the server's own when `name` is undefined): its URLs, no clients, no tokens. */
export function newTenant(url: string, name?: string): Tenant {
  const issuer = name === undefined ? url : `${url}/tenants/${encodeURIComponent(name)}`
  return { ...(name !== undefined ? { name } : {}), issuer, tokenUrl: `${issuer}/token`, authorizationUrl: `${issuer}/authorize`, clients: new ClientRegistry(), refreshTokens: new Map(), codes: new Map() }
}

/** Everything the server's handlers share. */
export interface ServerState {
  options: AuthorizationServerOptions
  now: () => number
  toleranceMs: number
  lifetimeSec: number
  /** The server's own endpoint (its issuer is the server's URL). */
  root: Tenant
  /** The tenants by name. */
  tenants: Map<string, Tenant>
  signing: { key: CryptoKey; kid: string; publicJwk: JWK; jwks: ReturnType<typeof createLocalJWKSet> }
  assertionJti: JtiMemory
  proofJti: JtiMemory
  issuedJti: Set<string>
  revokedJti: Set<string>
  /** Every credential value received or issued, for leak tests. */
  seen: Set<string>
  dpopNonce: string
  spentUses: number
  requests: RecordedTokenRequest[]
  failures: FailureQueue
  /** JWK Sets of clients registered by `jwksUri`. */
  remoteJwks: RemoteKeySets
}

/** The server's own endpoint and every tenant. */
export const everyTenant = (st: ServerState): Tenant[] => [st.root, ...st.tenants.values()]
