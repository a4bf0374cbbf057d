import { randomUUID } from 'node:crypto'
import { fetch, type Dispatcher } from 'undici'
import { decodeJwt } from 'jose'
import { HttpStatusError, errorCodes, parseRetryAfter, type WeirError } from '../errors.ts'
import { boundedSignal } from '../http/abort.ts'
import { MAX_METADATA_BYTES, readBoundedBody } from '../http/bounded-body.ts'
import { remoteText } from '../http/excerpt.ts'
import { isRetryableStatus } from '../http/status.ts'
import { Secret, formEncode, registerSecretValue, REDACTED } from '../secret.ts'
import type { AccessToken } from './types.ts'
import { OAuthChallengeError, OAuthResponseError, parseWwwAuthenticate, redactedExcerpt } from './errors.ts'
import { signJwt, signingKeyAt, type SigningKey } from './keys.ts'
import type { DpopSigner } from './dpop.ts'
import type { ClientAuthMethod, GrantName } from './config.ts'

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

/** A credential with defaults applied and secrets loaded: everything needed to build a token request. */
export interface ResolvedCredential {
  name: string
  grant: GrantName
  tokenUrl?: string
  issuer?: string
  clientId?: string
  method: ClientAuthMethod
  basicEncoding: 'strict' | 'loose'
  secret?: string
  /** Client assertion keys, earliest `signFrom` first; the one due at the request signs. */
  clientKeys?: SigningKey[]
  clientAudience: string
  assertionLifetimeSec: number
  assertion?: {
    /** Assertion keys, earliest `signFrom` first; the one due at the request signs. */
    keys?: SigningKey[]
    value?: string
    iss?: string
    sub?: string
    audience: string
    lifetimeSec: number
    scopeClaim: boolean
    claims: Record<string, unknown>
  }
  scopes: string[]
  resources: string[]
  audience?: string
  extraParams: Record<string, string>
  timeoutMs: number
  defaultExpiresInSec: number
  clockSkewSec: number
  failFastMs: number
  maxAttempts: number
}

/** The parts of a token request before signing: explain() shows them redacted, send() signs and posts them. */
export interface TokenRequestPlan {
  url: string
  headers: Record<string, string>
  form: Array<[string, string]>
  /** Form fields still to be filled with a signed JWT. */
  toSign: Array<{ field: string; key: SigningKey; claims: Record<string, unknown> }>
}

export { formEncode }

function audienceFor(policy: string, tokenUrl: string, issuer: string | undefined): string {
  if (policy === 'token-endpoint') return tokenUrl
  if (policy === 'issuer') return issuer ?? tokenUrl
  return policy
}

function timeClaims(nowMs: number, lifetimeSec: number) {
  const iat = Math.floor(nowMs / 1000)
  return { iat, nbf: iat, exp: iat + lifetimeSec, jti: randomUUID() }
}

/**
 * Plans a token request: grant parameters, client authentication in exactly one place
 * (RFC 6749 §2.3), scope/resource/audience/extra parameters. `nowMs` is server-corrected time.
 */
export function planTokenRequest(r: ResolvedCredential, tokenUrl: string, grantParams: Array<[string, string]>, nowMs: number): TokenRequestPlan {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
  const form: Array<[string, string]> = [...grantParams]
  const toSign: TokenRequestPlan['toSign'] = []
  const grant = grantParams.find(([k]) => k === 'grant_type')?.[1]

  if (r.grant === 'jwt_bearer' && r.assertion) {
    const a = r.assertion
    if (a.value !== undefined) form.push(['assertion', a.value])
    else if (a.keys) {
      const key = signingKeyAt(a.keys, nowMs, `credential "${r.name}" #/assertion/keys`)
      const iss = a.iss ?? key.keyFileIssuer ?? r.clientId
      const claims: Record<string, unknown> = { iss, sub: a.sub ?? iss, aud: audienceFor(a.audience, tokenUrl, r.issuer), ...timeClaims(nowMs, a.lifetimeSec), ...a.claims }
      if (a.scopeClaim && r.scopes.length) claims.scope = r.scopes.join(' ')
      form.push(['assertion', ''])
      toSign.push({ field: 'assertion', key, claims })
    }
  }
  const scopeInForm = !(r.grant === 'jwt_bearer' && r.assertion?.scopeClaim)
  // A code exchange keeps the scope of the authorization request (RFC 6749 §4.1.3). A refresh asks
  // for the credential's own scope (§6: equal to or narrower than granted), so credentials sharing
  // one refresh token (one storeKey) each get a token for theirs (Microsoft identity platform v2
  // issues one per resource); without a configured scope it keeps the scope granted.
  if (scopeInForm && r.scopes.length && grant !== 'authorization_code') form.push(['scope', r.scopes.join(' ')])
  for (const res of r.resources) form.push(['resource', res])
  if (r.audience) form.push(['audience', r.audience])
  for (const [k, v] of Object.entries(r.extraParams)) form.push([k, v])

  switch (r.method) {
    case 'client_secret_basic': {
      const id = r.clientId ?? ''
      const secret = r.secret ?? ''
      const pair = r.basicEncoding === 'strict' ? `${formEncode(id)}:${formEncode(secret)}` : `${id}:${secret}`
      const value = `Basic ${Buffer.from(pair).toString('base64')}`
      registerSecretValue(value.slice(6), { pinned: true }) // derived from the configured client secret
      headers.authorization = value
      break
    }
    case 'client_secret_post':
      form.push(['client_id', r.clientId ?? ''], ['client_secret', r.secret ?? ''])
      break
    case 'client_secret_jwt':
    case 'private_key_jwt': {
      const id = r.clientId ?? ''
      form.push(['client_id', id], ['client_assertion_type', CLIENT_ASSERTION_TYPE], ['client_assertion', ''])
      toSign.push({ field: 'client_assertion', key: signingKeyAt(r.clientKeys!, nowMs, `credential "${r.name}" #/clientAuth/keys`), claims: { iss: id, sub: id, aud: audienceFor(r.clientAudience, tokenUrl, r.issuer), ...timeClaims(nowMs, r.assertionLifetimeSec) } })
      break
    }
    case 'tls_client_auth':
    case 'none':
      if (r.clientId) form.push(['client_id', r.clientId])
      break
  }
  return { url: tokenUrl, headers, form, toSign }
}

const SECRET_FIELDS = new Set(['client_secret', 'client_assertion', 'assertion', 'refresh_token', 'code', 'code_verifier'])

/** The plan with every credential replaced by [REDACTED], assertions shown as their header and claims. */
export function redactPlan(plan: TokenRequestPlan) {
  const headers = { ...plan.headers }
  if (headers.authorization) headers.authorization = `${headers.authorization.split(' ')[0]} ${REDACTED}`
  return {
    method: 'POST',
    url: plan.url,
    headers,
    form: Object.fromEntries(groupForm(plan.form.map(([k, v]) => [k, SECRET_FIELDS.has(k) ? REDACTED : v]))),
    assertions: plan.toSign.map((s) => ({ field: s.field, header: { ...s.key.headers, alg: s.key.alg }, claims: s.claims })),
  }
}

function groupForm(entries: Array<[string, string]>): Array<[string, string | string[]]> {
  const m = new Map<string, string | string[]>()
  for (const [k, v] of entries) {
    const prev = m.get(k)
    m.set(k, prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v])
  }
  return [...m]
}

export interface RawTokenResponse {
  status: number
  headers: Record<string, string>
  /** The body, at most 1 MiB of it. */
  text: string
  /** True when the body went on past 1 MiB (reading stopped there). */
  truncated?: boolean
  sentAt: number
  receivedAt: number
}

/**
 * Signs assertions: `key` carries the configured header values, `claims` the claims. A hosted
 * signer (a KMS) gets the request's `signal`, aborted at the request's timeout or the provider's
 * shutdown, to cancel its own call; its result is ignored once the signal has aborted.
 */
export type AssertionSigner = (key: SigningKey, claims: Record<string, unknown>, signal: AbortSignal) => Promise<string>

/** `p`, unless `signal` aborts first (then its reason); a later outcome of `p` is dropped unseen. */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined)
    return Promise.reject(signal.reason)
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

/**
 * The plan's form with its assertions signed, under the request's bounded signal: a signer that
 * never answers (a KMS behind a black-holed connection) would otherwise hold the slot's one fetch,
 * and every caller that joins it, for ever. Past the timeout it is a retryable ERR_HTTP_TIMEOUT, so
 * the next attempt signs again; a shutdown rejects with the provider's own reason.
 */
async function signedForm(plan: TokenRequestPlan, signer: AssertionSigner | undefined, bounded: AbortSignal, options: { timeoutMs: number; signal?: AbortSignal }): Promise<Array<[string, string]>> {
  const form = plan.form.map(([k, v]) => [k, v] as [string, string])
  for (const s of plan.toSign) {
    let jwt: string
    try {
      jwt = await unlessAborted(signer ? Promise.resolve().then(() => signer(s.key, s.claims, bounded)) : signJwt(s.key, s.claims), bounded)
    } catch (e) {
      if (e !== bounded.reason || options.signal?.aborted) throw e
      throw new errorCodes.ERR_HTTP_TIMEOUT(`token request to ${plan.url}: signing the ${s.field} timed out after ${options.timeoutMs} ms`, { cause: e })
    }
    registerSecretValue(jwt)
    const entry = form.find(([k, v]) => k === s.field && v === '')
    if (entry) entry[1] = jwt
  }
  return form
}

/**
 * Signs the plan's assertions, adds a DPoP proof, and posts it, all within `timeoutMs` and
 * `signal`. Network failures and timeouts are retryable.
 */
export async function sendTokenRequest(
  plan: TokenRequestPlan,
  options: { dispatcher?: Dispatcher; timeoutMs: number; signal?: AbortSignal; dpop?: DpopSigner; now: () => number; serverNow: () => number; signer?: AssertionSigner },
): Promise<RawTokenResponse> {
  // The provider's long-lived signal is linked without AbortSignal.any (which retains on Node 20).
  const bounded = boundedSignal(options.timeoutMs, options.signal)
  try {
    const form = await signedForm(plan, options.signer, bounded.signal, options)
    const headers = { ...plan.headers }
    if (options.dpop) headers.dpop = await options.dpop.proof('POST', plan.url, undefined, options.serverNow())
    return await postForm(plan.url, headers, form, bounded.signal, options)
  } finally {
    bounded.done()
  }
}

/** Posts a signed token request under `bounded`; a timeout or a network failure becomes a retryable error. */
async function postForm(
  url: string, headers: Record<string, string>, form: Array<[string, string]>, bounded: AbortSignal,
  options: { dispatcher?: Dispatcher; timeoutMs: number; signal?: AbortSignal; dpop?: DpopSigner; now: () => number },
): Promise<RawTokenResponse> {
  const sentAt = options.now()
  let res: Awaited<ReturnType<typeof fetch>>
  let body: { text: string; truncated: boolean }
  try {
    res = await fetch(url, {
      method: 'POST', headers, body: new URLSearchParams(form).toString(), redirect: 'manual', signal: bounded,
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
    })
    body = await readBoundedBody(res, MAX_METADATA_BYTES)
  } catch (e) {
    if (options.signal?.aborted) throw e
    const timeout = (e as Error).name === 'TimeoutError'
    const cause = (e as { cause?: { code?: string; message?: string } }).cause
    if (timeout) throw new errorCodes.ERR_HTTP_TIMEOUT(`token request to ${url} timed out after ${options.timeoutMs} ms`, { cause: e })
    throw new errorCodes.ERR_HTTP_NETWORK(`token request to ${url} failed: ${cause?.code ?? cause?.message ?? (e as Error).message}`, { cause: e })
  }
  const hdrs: Record<string, string> = {}
  res.headers.forEach((v, k) => { hdrs[k] = v })
  if (options.dpop) options.dpop.noteNonce(url, hdrs['dpop-nonce'])
  return { status: res.status, headers: hdrs, text: body.text, ...(body.truncated ? { truncated: true } : {}), sentAt, receivedAt: options.now() }
}

/** Server clock minus local clock, from the response `Date` header; 0 when under the header's 1 s resolution. */
export function clockOffsetFrom(raw: RawTokenResponse): number | undefined {
  const d = raw.headers.date ? Date.parse(raw.headers.date) : NaN
  if (Number.isNaN(d)) return undefined
  const offset = d + 500 - (raw.sentAt + raw.receivedAt) / 2
  return Math.abs(offset) < 2000 ? 0 : Math.round(offset)
}

export interface ProcessedToken {
  token: AccessToken
  /** Lifetime in ms as the server stated it (for refresh scheduling). */
  lifetimeMs: number
  refreshToken?: Secret
}

/**
 * The longest token lifetime believed (one year): a larger `expires_in` (or JWT `exp`) is cut to it,
 * so an absurd value (1e300) cannot overflow a date.
 */
export const MAX_TOKEN_LIFETIME_SEC = 365 * 24 * 3600

function responseError(raw: RawTokenResponse, message: string): WeirError {
  return Object.assign(new errorCodes.ERR_OAUTH_RESPONSE(message, { retryable: false }), { status: raw.status })
}

/**
 * Checks a token response (RFC 6749 §5.1/§5.2) as oauth4webapi's processClientCredentialsResponse
 * does: OAuth error bodies (even with 200), non-JSON bodies, access_token and token_type, expires_in
 * (number or numeric string, else the JWT `exp`, else `defaultExpiresInSec`).
 */
export function processTokenResponse(
  raw: RawTokenResponse,
  options: { url: string; expectDpop: boolean; defaultExpiresInSec: number; clockOffsetMs: number },
): ProcessedToken {
  const where = `token endpoint ${options.url}`
  let json: unknown
  try {
    json = raw.text === '' ? undefined : JSON.parse(raw.text)
  } catch {
    json = undefined
  }
  const body = json && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined
  const excerpt = redactedExcerpt(raw.text)
  if (raw.truncated) {
    const message = `${where} answered ${raw.status} with a body over ${MAX_METADATA_BYTES} bytes; stopped reading it`
    throw isRetryableStatus(raw.status) ? new HttpStatusError(message, raw.status) : responseError(raw, message)
  }
  if (body && typeof body.error === 'string') throw oauthError(raw, body, where, excerpt)
  if (raw.status < 200 || raw.status > 299) throw statusError(raw, body, where, excerpt)
  if (!body) throw responseError(raw, `${where} answered ${raw.status} with a body that is not a JSON object${excerpt ? `: "${excerpt}"` : ' (empty)'}`)
  const at = body.access_token
  if (typeof at !== 'string' || at === '') throw responseError(raw, `${where} answered ${raw.status}: "response" body "access_token" property must be a non-empty string`)
  const token = new Secret(at, 'token-response')
  const rt = body.refresh_token
  if (rt !== undefined && (typeof rt !== 'string' || rt === '')) throw responseError(raw, `${where} answered ${raw.status}: "response" body "refresh_token" property must be a non-empty string`)
  const refreshToken = typeof rt === 'string' ? new Secret(rt, 'token-response') : undefined
  if (typeof body.id_token === 'string') registerSecretValue(body.id_token)
  const tt = body.token_type
  if (typeof tt !== 'string' || tt === '') throw responseError(raw, `${where} answered ${raw.status}: "response" body "token_type" property must be a non-empty string`)
  const type = tt.toLowerCase()
  if (options.expectDpop ? type !== 'dpop' : type !== 'bearer') {
    throw responseError(raw, `${where} answered ${raw.status}: unsupported "token_type" ${JSON.stringify(tt.slice(0, 20))} (expected ${options.expectDpop ? 'DPoP' : 'Bearer'})`)
  }
  const expiresAt = expiryOf(raw, body, at, options, where)
  const extra: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(body)) {
    if (!['access_token', 'refresh_token', 'id_token', 'token_type', 'expires_in', 'scope'].includes(k)) extra[k] = v
  }
  const accessToken: AccessToken = {
    value: token, tokenType: options.expectDpop ? 'DPoP' : 'Bearer', expiresAt, extra,
    ...(typeof body.scope === 'string' ? { scope: body.scope } : {}),
  }
  return { token: accessToken, lifetimeMs: Math.max(0, expiresAt - raw.sentAt), ...(refreshToken ? { refreshToken } : {}) }
}

/** An OAuth error body (RFC 6749 §5.2), whatever the status: the provider's error code and words, one line, cut. */
function oauthError(raw: RawTokenResponse, body: Record<string, unknown>, where: string, excerpt: string): OAuthResponseError {
  const retryAfterMs = parseRetryAfter(raw.headers['retry-after'])
  const retryable = isRetryableStatus(raw.status) || body.error === 'temporarily_unavailable' || body.error === 'server_error' || body.error === 'slow_down'
  // Every text of the answer may echo the request (its client_secret, code, code_verifier): scrubbed.
  const error = redactedExcerpt(body.error as string, 100)
  const desc = typeof body.error_description === 'string' ? redactedExcerpt(body.error_description, 500) : undefined
  const fields = {
    status: raw.status, error, retryable, headers: raw.headers, excerpt,
    ...(desc !== undefined ? { error_description: desc } : {}),
    ...(typeof body.error_uri === 'string' ? { error_uri: redactedExcerpt(body.error_uri, 500) } : {}),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  }
  return new OAuthResponseError(`${where} answered ${raw.status} ${error}${desc ? `: ${redactedExcerpt(desc)}` : ''}`, fields)
}

/** A status outside 2xx without an OAuth error body: retryable (408/429/5xx), a 401 challenge, or a response error. */
function statusError(raw: RawTokenResponse, body: Record<string, unknown> | undefined, where: string, excerpt: string): Error {
  if (isRetryableStatus(raw.status)) {
    const retryAfterMs = parseRetryAfter(raw.headers['retry-after'])
    return new HttpStatusError(`${where} answered ${raw.status}${excerpt ? `: "${excerpt}"` : ''}`, raw.status, retryAfterMs !== undefined ? { retryAfterMs } : {})
  }
  const challenge = parseWwwAuthenticate(raw.headers['www-authenticate'])[0]
  if (raw.status === 401 && challenge) {
    const error = challenge.parameters.error ? redactedExcerpt(challenge.parameters.error, 100) : undefined
    return new OAuthChallengeError(`${where} answered 401 with a ${remoteText(challenge.scheme, 100)} challenge${error ? ` (${error})` : ''}`, 401, challenge)
  }
  return responseError(raw, `${where} answered ${raw.status} with ${body ? 'a JSON body without "error"' : 'a body that is not JSON'}${excerpt ? `: "${excerpt}"` : ''}`)
}

/**
 * When the token expires (epoch ms): from `expires_in` (a number or a numeric string), else the
 * access token's own `exp` if it is a JWT, else `defaultExpiresInSec`; never past the longest
 * lifetime accepted.
 */
function expiryOf(raw: RawTokenResponse, body: Record<string, unknown>, accessToken: string, options: { defaultExpiresInSec: number; clockOffsetMs: number }, where: string): number {
  const ei = body.expires_in
  let expiresAt: number
  if (ei !== undefined) {
    const n = typeof ei === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(ei) ? Number(ei) : ei
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw responseError(raw, `${where} answered ${raw.status}: "response" body "expires_in" property must be a non-negative number`)
    expiresAt = raw.sentAt + n * 1000
  } else {
    let exp: number | undefined
    try {
      const claims = decodeJwt(accessToken)
      if (typeof claims.exp === 'number') exp = claims.exp
    } catch { /* not a JWT */ }
    expiresAt = exp !== undefined ? exp * 1000 - options.clockOffsetMs : raw.sentAt + options.defaultExpiresInSec * 1000
  }
  return Math.min(Math.max(expiresAt, 0), raw.sentAt + MAX_TOKEN_LIFETIME_SEC * 1000)
}
