import { createRemoteJWKSet, customFetch, jwtVerify, type JWTPayload } from 'jose'
import type { ComponentContext } from '../component.ts'
import type { HttpRequest } from '../http/types.ts'
import { discover, type MetadataGet } from '../oauth/discovery.ts'
import { Refusal } from './refusal.ts'

/** What an inbound JWT must satisfy: the `jwt` block of a listener's config. */
export interface InboundJwtOptions {
  issuer: string
  audience: string | readonly string[]
  jwksUrl?: string
  requiredScopes: readonly string[]
  clockToleranceSec: number
  algorithms: readonly string[]
  /** Required `typ` header (e.g. `at+jwt`, RFC 9068); absent: any. */
  typ?: string
  /** Bound of one key-set (or discovery) fetch. */
  jwksTimeoutMs: number
}

/**
 * How long a failure to obtain the issuer's keys is remembered: requests meanwhile are answered 503
 * at once, so bad or unverifiable tokens cannot make the listener fetch the key set once each.
 */
export const KEYS_FAILURE_MS = 5000

/** What an unauthenticated client learns when the keys are unavailable (the log has the URL and cause). */
const KEYS_UNAVAILABLE = 'cannot verify access tokens now, retry later'

function scopesOf(payload: JWTPayload): Set<string> {
  const out = new Set<string>()
  const add = (v: unknown) => {
    const list = typeof v === 'string' ? v.split(/\s+/) : Array.isArray(v) ? v : []
    for (const s of list) if (typeof s === 'string' && s) out.add(s)
  }
  add(payload.scope)
  add(payload.scp)
  return out
}

/** The issuer's key set: from jwksUrl or by discovery, fetched through ctx.http (pools, TLS settings), cached by jose. */
function remoteKeys(jwt: InboundJwtOptions, ctx: ComponentContext) {
  // The request's own timeout equals jose's, so a timeout reports the wait that really happened.
  const fetchVia = async (url: string, options: { headers: Headers; signal: AbortSignal }) => {
    const req: HttpRequest & { throwHttpErrors: boolean } = { url, method: 'GET', headers: Object.fromEntries(options.headers.entries()), signal: options.signal, timeoutMs: jwt.jwksTimeoutMs, throwHttpErrors: false }
    const res = await ctx.http.request(req)
    return new Response(res.body, { status: res.status, headers: { 'content-type': String(res.headers['content-type'] ?? 'application/json') } })
  }
  // throwHttpErrors: false (shared/http/client.ts option): discovery reads the status itself (404: try the next document).
  const get: MetadataGet = async (url, { timeoutMs, signal }) => {
    const req: HttpRequest & { throwHttpErrors: boolean } = { url, method: 'GET', headers: { accept: 'application/json' }, timeoutMs: Math.min(timeoutMs, jwt.jwksTimeoutMs), throwHttpErrors: false, ...(signal ? { signal } : {}) }
    return ctx.http.request(req)
  }
  let keys: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined
  return () => {
    keys ??= (async () => {
      const url = jwt.jwksUrl ?? (await discover(jwt.issuer, { first: 'oidc', requires: 'jwks_uri', get })).jwks_uri!
      return createRemoteJWKSet(new URL(url), { timeoutDuration: jwt.jwksTimeoutMs, [customFetch]: fetchVia as never })
    })().catch((e: unknown) => { keys = undefined; throw e })
    return keys
  }
}

/** jose error codes that mean the key set could not be fetched or used: the issuer's outage, not the client's fault. */
const isKeysFailure = (code: string) => ['ERR_JWKS_TIMEOUT', 'ERR_JWKS_INVALID', 'ERR_JOSE_GENERIC'].includes(code) || !/^ERR_J(WT|WS|WK|OSE)/.test(code)

/**
 * The bearer-token verifier of an inbound listener: checks signature (issuer's keys), `iss`, `aud`,
 * `exp`, the algorithms, the `typ` header when required and the scopes; resolves with the payload or
 * throws a `Refusal` (401 with a challenge, 403 for scopes, 503 when the keys cannot be obtained).
 * A failure to obtain the keys is remembered for KEYS_FAILURE_MS (RFC 6750 §3 for the challenges).
 *
 * @example
 * const verify = jwtVerifier(config.jwt, ctx)
 * const payload = await verify(req.headers.authorization)
 * @see https://www.rfc-editor.org/rfc/rfc9068 (JWT access tokens, `typ: at+jwt`)
 */
export function jwtVerifier(jwt: InboundJwtOptions, ctx: ComponentContext, now: () => number = Date.now) {
  const keySet = remoteKeys(jwt, ctx)
  let outage: { until: number; reason: string } | undefined

  const unavailable = (reason: string, until: number) =>
    new Refusal(503, reason, { 'retry-after': String(Math.max(1, Math.ceil((until - now()) / 1000))) }, KEYS_UNAVAILABLE)
  const keysFailed = (e: unknown) => {
    outage = { until: now() + KEYS_FAILURE_MS, reason: `cannot obtain the issuer's keys: ${(e as Error).message}` }
    return unavailable(outage.reason, outage.until)
  }

  return async (authorization: string | undefined): Promise<JWTPayload> => {
    const m = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(authorization ?? '')
    if (!authorization) throw new Refusal(401, 'missing bearer token', { 'www-authenticate': 'Bearer realm="weir"' })
    if (!m) throw new Refusal(401, 'malformed Authorization header (expected "Bearer <token>")', { 'www-authenticate': 'Bearer realm="weir", error="invalid_request"' })
    if (outage && now() < outage.until) throw unavailable(`${outage.reason} (failed less than ${KEYS_FAILURE_MS} ms ago; not fetched again)`, outage.until)
    let jwks
    try {
      jwks = await keySet()
    } catch (e) {
      throw keysFailed(e)
    }
    let payload: JWTPayload
    try {
      ({ payload } = await jwtVerify(m[1]!, jwks, {
        issuer: jwt.issuer, audience: jwt.audience as string | string[], algorithms: jwt.algorithms as string[],
        clockTolerance: jwt.clockToleranceSec, requiredClaims: ['exp'], ...(jwt.typ ? { typ: jwt.typ } : {}),
      }))
    } catch (e) {
      const code = (e as { code?: string }).code ?? ''
      if (isKeysFailure(code)) throw keysFailed(e)
      const reason = code === 'ERR_JWT_EXPIRED' ? 'token expired' : (e as Error).message
      throw new Refusal(401, `invalid token: ${reason}`, { 'www-authenticate': `Bearer realm="weir", error="invalid_token", error_description="${reason.replace(/["\\]/g, '')}"` })
    }
    const have = scopesOf(payload)
    const missing = jwt.requiredScopes.filter((s) => !have.has(s))
    if (missing.length) {
      throw new Refusal(403, `token lacks required scope(s): ${missing.join(' ')}`, { 'www-authenticate': `Bearer realm="weir", error="insufficient_scope", scope="${jwt.requiredScopes.join(' ')}"` })
    }
    return payload
  }
}
