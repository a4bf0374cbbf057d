import type { IncomingMessage, ServerResponse } from 'node:http'
import { decodeJwt, decodeProtectedHeader, type JWTPayload } from 'jose'
import { authenticate, claimedClientId } from './client-auth.ts'
import { issueTokens, runGrant, tokenAudience } from './grants.ts'
import { peerThumbprint } from './http.ts'
import { JWT_BEARER, OAuthFailure, SECRET_FIELDS, type ServerState, type Tenant } from './state.ts'
import type { FailureSpec, RecordedTokenRequest, RegisteredClient } from './types.ts'
import { verifyDpopProof } from './verify.ts'

/** Records a token request to `tenant` (credentials redacted) and remembers every credential value it carries. */
function recordRequest(st: ServerState, tenant: Tenant, req: IncomingMessage, form: URLSearchParams, grant: string | null): RecordedTokenRequest {
  const record: RecordedTokenRequest = { at: st.now(), ...(tenant.name !== undefined ? { tenant: tenant.name } : {}), form: {}, dpop: Boolean(req.headers.dpop), status: 0 }
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
  const claimed = claimedClientId(tenant.clients, req, form)
  if (claimed) record.clientId = claimed
  for (const k of SECRET_FIELDS) for (const v of form.getAll(k)) st.seen.add(v)
  if (req.headers.authorization) st.seen.add(req.headers.authorization.replace(/^\S+\s+/, ''))
  if (typeof req.headers.dpop === 'string') st.seen.add(req.headers.dpop)
  st.requests.push(record)
  return record
}

/**
 * The error code of an injected failure without a body, as a token endpoint answers with that
 * status (RFC 6749 §5.2): a client it cannot authenticate gets 401 invalid_client.
 */
const defaultFailureError = (status: number) => status >= 500 ? 'temporarily_unavailable' : status === 401 ? 'invalid_client' : 'invalid_request'

/** Answers an injected failure as configured (status, delay, Retry-After, raw body). */
async function answerFailure(res: ServerResponse, record: RecordedTokenRequest, failure: FailureSpec, headers: Record<string, string>): Promise<void> {
  if (failure.delayMs) await new Promise((r) => setTimeout(r, failure.delayMs))
  record.status = failure.status
  const fh: Record<string, string> = { 'content-type': failure.contentType ?? 'application/json', ...headers }
  if (failure.retryAfter !== undefined) fh['retry-after'] = String(failure.retryAfter)
  res.writeHead(failure.status, fh)
  res.end(failure.body ?? JSON.stringify({ error: defaultFailureError(failure.status) }))
}

/** What the token is bound to (RFC 9449 `jkt`, RFC 8705 `x5t#S256`); checks the DPoP proof (for `tenant`'s token endpoint) and nonce. */
async function confirmation(st: ServerState, tenant: Tenant, req: IncomingMessage, client: RegisteredClient | undefined): Promise<Record<string, string>> {
  const cnf: Record<string, string> = {}
  const proof = req.headers.dpop
  if (typeof proof === 'string') {
    if (st.options.dpopNonces) {
      const c = (() => { try { return decodeJwt(proof) } catch { return {} as JWTPayload } })()
      if (c.nonce !== st.dpopNonce) throw new OAuthFailure(400, 'use_dpop_nonce', 'DPoP nonce required')
    }
    cnf.jkt = await verifyDpopProof(st, proof, 'POST', tenant.tokenUrl, { nonce: Boolean(st.options.dpopNonces) }, 'invalid_dpop_proof')
  } else if (client?.requireDpop) throw new OAuthFailure(400, 'invalid_request', 'DPoP proof required for this client')
  const peer = peerThumbprint(req)
  if (peer.thumbprint && peer.authorized) cnf['x5t#S256'] = peer.thumbprint
  return cnf
}

/** The token endpoint of `tenant` (RFC 6749 §3.2): record, injected failure, client authentication, binding, grant, tokens. */
export async function handleTokenRequest(st: ServerState, tenant: Tenant, req: IncomingMessage, res: ServerResponse, body: string): Promise<void> {
  const form = new URLSearchParams(body)
  const grant = form.get('grant_type')
  const record = recordRequest(st, tenant, req, form, grant)
  const headers: Record<string, string> = { 'cache-control': 'no-store' }
  if (st.options.dpopNonces) headers['dpop-nonce'] = st.dpopNonce
  const send = (status: number, payload: unknown, extra: Record<string, string> = {}) => {
    record.status = status
    res.writeHead(status, { 'content-type': 'application/json', ...headers, ...extra })
    res.end(JSON.stringify(payload))
  }
  try {
    const failure = st.failures.take(record)
    if (failure) return await answerFailure(res, record, failure, headers)
    if (req.headers['content-type']?.split(';')[0]?.trim() !== 'application/x-www-form-urlencoded') throw new OAuthFailure(400, 'invalid_request', 'content-type must be application/x-www-form-urlencoded')
    if (!grant) throw new OAuthFailure(400, 'invalid_request', 'grant_type is required')
    const { client, method } = await authenticate(st, tenant, req, form, grant)
    if (client) record.clientId = client.clientId
    if (method) record.authMethod = method
    const cnf = await confirmation(st, tenant, req, client)
    const outcome = await runGrant(st, tenant, grant, client, form, record)
    send(200, await issueTokens(st, tenant, outcome, tokenAudience(tenant.issuer, outcome.client, form), cnf))
  } catch (e) {
    if (e instanceof OAuthFailure) {
      record.error = e.error
      record.error_description = e.description
      send(e.status, { error: e.error, error_description: e.description, error_uri: `${tenant.issuer}/errors#${e.error}` }, e.headers)
    } else {
      record.error = 'server_error'
      send(500, { error: 'server_error', error_description: 'internal error' })
    }
  }
}
