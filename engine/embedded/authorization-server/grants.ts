import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { SignJWT, decodeJwt, type JWTPayload } from 'jose'
import { JWT_BEARER, OAuthFailure, type CodeEntry, type GrantFamily, type RefreshEntry, type ServerState, type Tenant } from './state.ts'
import type { GrantKind, RecordedTokenRequest, RegisteredClient } from './types.ts'
import { verifyAssertion } from './verify.ts'

/** What a grant decided: for whom (client, subject) and which scope; a refresh token to spend once every check passed. */
export interface GrantOutcome {
  client: RegisteredClient
  sub: string
  scope: string
  spendRefresh?: RefreshEntry
  /** The authorization code the tokens descend from (redeemed now, or earlier through a chain of refreshes). */
  code?: CodeEntry
  /** A code was redeemed: hand out its first refresh token (if the client may refresh). */
  firstRefresh?: boolean
  /** The grant a refresh continues. */
  family?: GrantFamily
}

export function checkScopes(client: RegisteredClient, requested: string | null): string {
  if (requested === null || requested.trim() === '') return client.defaultScope ?? client.scopes?.join(' ') ?? ''
  const items = requested.split(' ').filter(Boolean)
  for (const s of items) if (client.scopes && !client.scopes.includes(s)) throw new OAuthFailure(400, 'invalid_scope', `scope ${s} not allowed for this client`)
  return items.join(' ')
}

/** client_credentials (RFC 6749 §4.4): the client itself is the subject. */
function clientCredentialsGrant(client: RegisteredClient | undefined, form: URLSearchParams): GrantOutcome {
  if (!client) throw new OAuthFailure(401, 'invalid_client', 'client authentication required')
  return { client, sub: client.clientId, scope: checkScopes(client, form.get('scope')) }
}

/** jwt-bearer (RFC 7523 §2.1): the assertion's subject; an unauthenticated client is found (at `tenant`) by the assertion's issuer. */
async function jwtBearerGrant(st: ServerState, tenant: Tenant, authClient: RegisteredClient | undefined, form: URLSearchParams, record: RecordedTokenRequest): Promise<GrantOutcome> {
  const assertion = form.get('assertion')
  if (!assertion) throw new OAuthFailure(400, 'invalid_request', 'assertion is required')
  let claims: JWTPayload
  try {
    claims = decodeJwt(assertion)
  } catch {
    throw new OAuthFailure(400, 'invalid_grant', 'assertion: not a JWT')
  }
  let client = authClient
  if (!client) {
    client = tenant.clients.byAssertionIssuer(claims.iss)
    if (!client) throw new OAuthFailure(400, 'invalid_grant', 'assertion: unknown issuer')
    record.clientId = client.clientId
  }
  const verified = await verifyAssertion(st, tenant, assertion, client, { iss: client.assertionIssuer ?? client.clientId, what: 'assertion', error: 'invalid_grant' })
  return { client, sub: String(verified.sub), scope: checkScopes(client, form.get('scope') ?? (typeof verified.scope === 'string' ? verified.scope : null)) }
}

/** refresh_token (RFC 6749 §6): a token `tenant` issued, for at most its original scope; a spent (rotated) token is invalid_grant. */
function refreshTokenGrant(st: ServerState, tenant: Tenant, client: RegisteredClient | undefined, form: URLSearchParams): GrantOutcome {
  if (!client) throw new OAuthFailure(401, 'invalid_client', 'client authentication required')
  const entry = tenant.refreshTokens.get(form.get('refresh_token') ?? '')
  if (!entry || entry.clientId !== client.clientId) throw new OAuthFailure(400, 'invalid_grant', 'unknown refresh token')
  if (entry.spent) {
    st.spentUses++
    if (st.options.revokeGrantOnReuse) revokeFamily(st, entry.family)
    throw new OAuthFailure(400, 'invalid_grant', 'refresh token already used')
  }
  if (entry.revoked || entry.family.revoked) throw new OAuthFailure(400, 'invalid_grant', 'refresh token revoked')
  const asked = form.get('scope')
  if (asked) for (const s of asked.split(' ')) if (!entry.scope.split(' ').includes(s)) throw new OAuthFailure(400, 'invalid_scope', `scope ${s} exceeds the original grant`)
  // Rotated by issueTokens, once every check has passed: a rejected request must not burn the token.
  return { client, sub: entry.sub, scope: asked ?? entry.scope, family: entry.family, ...(entry.code ? { code: entry.code } : {}), ...((client.rotateRefreshTokens ?? true) ? { spendRefresh: entry } : {}) }
}

/** Revokes a grant: its refresh tokens and its access tokens (a spent refresh token came back: one of its holders may be an attacker). */
function revokeFamily(st: ServerState, family: GrantFamily): void {
  family.revoked = true
  for (const jti of family.issuedJti) st.revokedJti.add(jti)
}

/** Revokes every token issued from `code` (at `tenant`): a code presented twice may have been stolen (RFC 6749 §4.1.2). */
function revokeDescendants(st: ServerState, tenant: Tenant, code: CodeEntry): void {
  for (const jti of code.issuedJti) st.revokedJti.add(jti)
  for (const e of tenant.refreshTokens.values()) if (e.code === code) e.revoked = true
}

/**
 * authorization_code (RFC 6749 §4.1.3, RFC 7636 §4.6): a one-time, short-lived code for this
 * client, the same redirect URI, and the PKCE verifier of its challenge. The code is spent by the
 * first exchange that names it, whatever the outcome; a second one revokes what the first obtained.
 */
export function authorizationCodeGrant(st: ServerState, tenant: Tenant, client: RegisteredClient | undefined, form: URLSearchParams): GrantOutcome {
  if (!client) throw new OAuthFailure(401, 'invalid_client', 'client authentication required')
  const entry = tenant.codes.get(form.get('code') ?? '')
  if (!entry || entry.clientId !== client.clientId) throw new OAuthFailure(400, 'invalid_grant', 'unknown authorization code')
  if (entry.used) {
    revokeDescendants(st, tenant, entry)
    throw new OAuthFailure(400, 'invalid_grant', 'authorization code already used; the tokens issued for it are revoked')
  }
  entry.used = true
  if (st.now() > entry.expiresAt) throw new OAuthFailure(400, 'invalid_grant', 'authorization code expired')
  if (form.get('redirect_uri') !== entry.redirectUri) throw new OAuthFailure(400, 'invalid_grant', 'redirect_uri does not match the authorization request')
  const verifier = form.get('code_verifier') ?? ''
  if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier)) throw new OAuthFailure(400, 'invalid_grant', 'code_verifier is missing or malformed (RFC 7636 §4.1)')
  if (createHash('sha256').update(verifier).digest('base64url') !== entry.challenge) throw new OAuthFailure(400, 'invalid_grant', 'PKCE verification failed: code_verifier does not match code_challenge')
  return { client, sub: entry.sub, scope: entry.scope, code: entry, firstRefresh: true }
}

/** Runs the handler of `grant` at `tenant` and checks that the client may use it. */
export async function runGrant(st: ServerState, tenant: Tenant, grant: string, authClient: RegisteredClient | undefined, form: URLSearchParams, record: RecordedTokenRequest): Promise<GrantOutcome> {
  let outcome: GrantOutcome
  if (grant === 'client_credentials') outcome = clientCredentialsGrant(authClient, form)
  else if (grant === JWT_BEARER) outcome = await jwtBearerGrant(st, tenant, authClient, form, record)
  else if (grant === 'refresh_token') outcome = refreshTokenGrant(st, tenant, authClient, form)
  else if (grant === 'authorization_code') outcome = authorizationCodeGrant(st, tenant, authClient, form)
  else throw new OAuthFailure(400, 'unsupported_grant_type', `grant_type ${grant} is not supported`)
  const grantKind: GrantKind = grant === JWT_BEARER ? 'jwt_bearer' : (grant as GrantKind)
  if (outcome.client.grants && !outcome.client.grants.includes(grantKind)) throw new OAuthFailure(400, 'unauthorized_client', `grant ${grantKind} not allowed for this client`)
  return outcome
}

/** The access token's audience: the requested RFC 8707 resources or audience, if the client may have them; else the issuer's API. */
export function tokenAudience(issuer: string, client: RegisteredClient, form: URLSearchParams): string | string[] {
  const resources = form.getAll('resource')
  for (const r of resources) {
    if (!/^[a-z][a-z0-9+.-]*:/i.test(r) || r.includes('#')) throw new OAuthFailure(400, 'invalid_target', `resource ${r} must be an absolute URI without fragment`)
    if (client.resources && !client.resources.includes(r)) throw new OAuthFailure(400, 'invalid_target', `resource ${r} not allowed for this client`)
  }
  const audience = form.get('audience')
  if (audience && client.audiences && !client.audiences.includes(audience)) throw new OAuthFailure(400, 'invalid_target', `audience ${audience} not allowed for this client`)
  return resources.length ? (resources.length === 1 ? resources[0]! : resources) : audience ?? `${issuer}/api`
}

async function issueAccessToken(st: ServerState, tenant: Tenant, client: RegisteredClient, claims: { sub: string; scope: string; aud: string | string[]; cnf?: Record<string, string> }) {
  const t = Math.floor(st.now() / 1000)
  const life = client.tokenLifetimeSec ?? st.lifetimeSec
  const jti = randomUUID()
  st.issuedJti.add(jti)
  const jwt = await new SignJWT({ client_id: client.clientId, scope: claims.scope || undefined, ...(claims.cnf ? { cnf: claims.cnf } : {}) })
    .setProtectedHeader({ alg: 'ES256', kid: st.signing.kid, typ: 'at+jwt' })
    .setIssuer(tenant.issuer).setSubject(claims.sub).setAudience(claims.aud).setIssuedAt(t).setExpirationTime(t + life).setJti(jti)
    .sign(st.signing.key)
  return { jwt, life, jti }
}

/** The refresh token a grant at `tenant` hands out: a rotation of the spent one, or the first one of a redeemed code (if the client may refresh). */
function nextRefreshToken(tenant: Tenant, outcome: GrantOutcome): string | undefined {
  const { client, sub, spendRefresh, code } = outcome
  const first = outcome.firstRefresh && (!client.grants || client.grants.includes('refresh_token'))
  if (!spendRefresh && !first) return undefined
  if (spendRefresh) spendRefresh.spent = true
  const token = randomBytes(24).toString('base64url')
  tenant.refreshTokens.set(token, { clientId: client.clientId, scope: spendRefresh?.scope ?? outcome.scope, sub, spent: false, revoked: false, family: outcome.family ?? (outcome.family = { revoked: false, issuedJti: [] }), ...(code ? { code } : {}) })
  return token
}

/**
 * The successful token response (RFC 6749 §5.1) of `tenant`: a JWT access token (its issuer the
 * tenant's) bound to `cnf` (DPoP key, client certificate), and a new refresh token when the grant
 * spent one or redeemed a code.
 */
export async function issueTokens(st: ServerState, tenant: Tenant, outcome: GrantOutcome, aud: string | string[], cnf: Record<string, string>): Promise<Record<string, unknown>> {
  const { client, sub, scope } = outcome
  const refreshOut = nextRefreshToken(tenant, outcome)
  const { jwt, life, jti } = await issueAccessToken(st, tenant, client, { sub, scope, aud, ...(Object.keys(cnf).length ? { cnf } : {}) })
  outcome.code?.issuedJti.push(jti)
  outcome.family?.issuedJti.push(jti)
  st.seen.add(jwt)
  if (refreshOut) st.seen.add(refreshOut)
  return {
    ...client.tokenResponse,
    access_token: jwt, token_type: cnf.jkt ? 'DPoP' : 'Bearer', ...(st.options.omitExpiresIn ? {} : { expires_in: life }),
    ...(scope ? { scope } : {}), ...(refreshOut ? { refresh_token: refreshOut } : {}),
  }
}
