import { randomBytes, randomUUID } from 'node:crypto'
import { SignJWT, decodeJwt, type JWTPayload } from 'jose'
import { JWT_BEARER, OAuthFailure, type RefreshEntry, type ServerState } from './state.ts'
import type { GrantKind, RecordedTokenRequest, RegisteredClient } from './types.ts'
import { verifyAssertion } from './verify.ts'

/** What a grant decided: for whom (client, subject) and which scope; a refresh token to spend once every check passed. */
export interface GrantOutcome {
  client: RegisteredClient
  sub: string
  scope: string
  spendRefresh?: RefreshEntry
}

function checkScopes(client: RegisteredClient, requested: string | null): string {
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

/** jwt-bearer (RFC 7523 §2.1): the assertion's subject; an unauthenticated client is found by the assertion's issuer. */
async function jwtBearerGrant(st: ServerState, authClient: RegisteredClient | undefined, form: URLSearchParams, record: RecordedTokenRequest): Promise<GrantOutcome> {
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
    client = st.clients.byAssertionIssuer(claims.iss)
    if (!client) throw new OAuthFailure(400, 'invalid_grant', 'assertion: unknown issuer')
    record.clientId = client.clientId
  }
  const verified = await verifyAssertion(st, assertion, client, { iss: client.assertionIssuer ?? client.clientId, what: 'assertion', error: 'invalid_grant' })
  return { client, sub: String(verified.sub), scope: checkScopes(client, form.get('scope') ?? (typeof verified.scope === 'string' ? verified.scope : null)) }
}

/** refresh_token (RFC 6749 §6): at most the original scope; a spent (rotated) token is invalid_grant. */
function refreshTokenGrant(st: ServerState, client: RegisteredClient | undefined, form: URLSearchParams): GrantOutcome {
  if (!client) throw new OAuthFailure(401, 'invalid_client', 'client authentication required')
  const entry = st.refreshTokens.get(form.get('refresh_token') ?? '')
  if (!entry || entry.clientId !== client.clientId) throw new OAuthFailure(400, 'invalid_grant', 'unknown refresh token')
  if (entry.spent) {
    st.spentUses++
    throw new OAuthFailure(400, 'invalid_grant', 'refresh token already used')
  }
  if (entry.revoked) throw new OAuthFailure(400, 'invalid_grant', 'refresh token revoked')
  const asked = form.get('scope')
  if (asked) for (const s of asked.split(' ')) if (!entry.scope.split(' ').includes(s)) throw new OAuthFailure(400, 'invalid_scope', `scope ${s} exceeds the original grant`)
  // Rotated by issueTokens, once every check has passed: a rejected request must not burn the token.
  return { client, sub: entry.sub, scope: asked ?? entry.scope, ...((client.rotateRefreshTokens ?? true) ? { spendRefresh: entry } : {}) }
}

/** Runs the handler of `grant` and checks that the client may use it. */
export async function runGrant(st: ServerState, grant: string, authClient: RegisteredClient | undefined, form: URLSearchParams, record: RecordedTokenRequest): Promise<GrantOutcome> {
  let outcome: GrantOutcome
  if (grant === 'client_credentials') outcome = clientCredentialsGrant(authClient, form)
  else if (grant === JWT_BEARER) outcome = await jwtBearerGrant(st, authClient, form, record)
  else if (grant === 'refresh_token') outcome = refreshTokenGrant(st, authClient, form)
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

async function issueAccessToken(st: ServerState, client: RegisteredClient, claims: { sub: string; scope: string; aud: string | string[]; cnf?: Record<string, string> }) {
  const t = Math.floor(st.now() / 1000)
  const life = client.tokenLifetimeSec ?? st.lifetimeSec
  const jti = randomUUID()
  st.issuedJti.add(jti)
  const jwt = await new SignJWT({ client_id: client.clientId, scope: claims.scope || undefined, ...(claims.cnf ? { cnf: claims.cnf } : {}) })
    .setProtectedHeader({ alg: 'ES256', kid: st.signing.kid, typ: 'at+jwt' })
    .setIssuer(st.issuer).setSubject(claims.sub).setAudience(claims.aud).setIssuedAt(t).setExpirationTime(t + life).setJti(jti)
    .sign(st.signing.key)
  return { jwt, life }
}

/**
 * The successful token response (RFC 6749 §5.1): a JWT access token bound to `cnf` (DPoP key,
 * client certificate), and the rotated refresh token when the grant spent one.
 */
export async function issueTokens(st: ServerState, outcome: GrantOutcome, aud: string | string[], cnf: Record<string, string>): Promise<Record<string, unknown>> {
  const { client, sub, scope, spendRefresh } = outcome
  let refreshOut: string | undefined
  if (spendRefresh) {
    spendRefresh.spent = true
    refreshOut = randomBytes(24).toString('base64url')
    st.refreshTokens.set(refreshOut, { clientId: client.clientId, scope: spendRefresh.scope, sub, spent: false, revoked: false })
  }
  const { jwt, life } = await issueAccessToken(st, client, { sub, scope, aud, ...(Object.keys(cnf).length ? { cnf } : {}) })
  st.seen.add(jwt)
  if (refreshOut) st.seen.add(refreshOut)
  return {
    ...client.tokenResponse,
    access_token: jwt, token_type: cnf.jkt ? 'DPoP' : 'Bearer', ...(st.options.omitExpiresIn ? {} : { expires_in: life }),
    ...(scope ? { scope } : {}), ...(refreshOut ? { refresh_token: refreshOut } : {}),
  }
}
