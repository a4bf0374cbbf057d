import type { IncomingMessage } from 'node:http'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { formDecode, peerThumbprint } from './http.ts'
import { CLIENT_ASSERTION_TYPE, JWT_BEARER, OAuthFailure, type ClientRegistry, type ServerState, type Tenant } from './state.ts'
import type { ClientAuthMethod, RegisteredClient } from './types.ts'
import { verifyAssertion } from './verify.ts'

export interface Authenticated { client?: RegisteredClient; method?: ClientAuthMethod }
type Invalid = (description: string) => OAuthFailure

/** client_secret_basic (RFC 6749 §2.3.1): id and secret form-urlencoded (`strict`) or raw (`loose`), then base64. */
function basicAuth(clients: ClientRegistry, basic: string, form: URLSearchParams, invalid: Invalid): Authenticated {
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

/** private_key_jwt and client_secret_jwt (RFC 7523 §2.2): a signed client assertion. */
async function assertionAuth(st: ServerState, tenant: Tenant, form: URLSearchParams, invalid: Invalid): Promise<Authenticated> {
  if (form.get('client_assertion_type') !== CLIENT_ASSERTION_TYPE) throw invalid(`client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`)
  const jwt = form.get('client_assertion')!
  let sub: unknown
  try {
    sub = decodeJwt(jwt).sub
  } catch {
    throw invalid('client assertion: not a JWT')
  }
  const id = form.get('client_id') ?? (typeof sub === 'string' ? sub : undefined)
  const client = id ? tenant.clients.get(id) : undefined
  if (!client) throw invalid('unknown client')
  if (client.authMethod !== 'private_key_jwt' && client.authMethod !== 'client_secret_jwt') throw invalid(`client is registered for ${client.authMethod}, not a client assertion`)
  const alg = String(decodeProtectedHeader(jwt).alg)
  const method = alg === 'HS256' ? 'client_secret_jwt' : 'private_key_jwt'
  if (method !== client.authMethod && !(client.allowedAlgs?.includes(alg))) throw invalid(`client assertion: alg ${alg} not allowed for this client`)
  await verifyAssertion(st, tenant, jwt, client, { iss: client.clientId, sub: client.clientId, what: 'client assertion', error: 'invalid_client' })
  return { client, method: client.authMethod }
}

/** client_secret_post (RFC 6749 §2.3.1): client_id and client_secret in the form. */
function postAuth(clients: ClientRegistry, id: string | null, form: URLSearchParams, invalid: Invalid): Authenticated {
  const client = id ? clients.get(id) : undefined
  if (!client) throw invalid('unknown client')
  if (client.authMethod !== 'client_secret_post') throw invalid(`client is registered for ${client.authMethod}, not client_secret_post`)
  if (form.get('client_secret') !== client.secret) throw invalid('client secret mismatch')
  return { client, method: 'client_secret_post' }
}

/** tls_client_auth (RFC 8705 §2.1): a trusted client certificate matching the registration. */
function tlsAuth(req: IncomingMessage, client: RegisteredClient, invalid: Invalid): Authenticated {
  const peer = peerThumbprint(req)
  if (!peer.thumbprint) throw invalid('tls_client_auth requires a client certificate')
  if (!peer.authorized) throw invalid('client certificate is not trusted')
  const ok = (client.tlsCertThumbprint && client.tlsCertThumbprint === peer.thumbprint) || (client.tlsSubjectDn && client.tlsSubjectDn === peer.subject)
  if (!ok) throw invalid('client certificate does not match the registration')
  return { client, method: 'tls_client_auth' }
}

/** RFC 6749 §2.3: identifies and authenticates the client among those of `tenant`; credentials must come in exactly one place. */
export async function authenticate(st: ServerState, tenant: Tenant, req: IncomingMessage, form: URLSearchParams, grant: string | null): Promise<Authenticated> {
  const authz = req.headers.authorization
  const basic = authz && /^basic /i.test(authz) ? authz.slice(6).trim() : undefined
  const places = [basic !== undefined, form.has('client_secret'), form.has('client_assertion')].filter(Boolean).length
  if (places > 1) throw new OAuthFailure(400, 'invalid_request', 'client credentials sent in more than one place (RFC 6749 §2.3)')
  const invalid: Invalid = (d) => new OAuthFailure(401, 'invalid_client', d, basic !== undefined ? { 'www-authenticate': 'Basic realm="weir"' } : {})
  if (basic !== undefined) return basicAuth(tenant.clients, basic, form, invalid)
  if (form.has('client_assertion')) return assertionAuth(st, tenant, form, invalid)
  const id = form.get('client_id')
  if (form.has('client_secret')) return postAuth(tenant.clients, id, form, invalid)
  if (!id) {
    if (grant === JWT_BEARER) return {}
    throw invalid('no client authentication and no client_id')
  }
  const client = tenant.clients.get(id)
  if (!client) throw invalid('unknown client')
  if (client.authMethod === 'tls_client_auth') return tlsAuth(req, client, invalid)
  if (client.authMethod !== 'none') throw invalid(`client is registered for ${client.authMethod}, but sent no credentials`)
  return { client, method: 'none' }
}

/** The client id a request claims (before authentication), for the request log. */
export function claimedClientId(clients: ClientRegistry, req: IncomingMessage, form: URLSearchParams): string | undefined {
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
      const id = f === 'client_assertion' ? c.sub : clients.byAssertionIssuer(c.iss)?.clientId
      if (typeof id === 'string') return id
    } catch { /* not a JWT */ }
  }
  return undefined
}
