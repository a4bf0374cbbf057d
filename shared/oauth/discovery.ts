import { fetch, type Dispatcher } from 'undici'
import { RetryableError, WeirError } from '../errors.ts'
import { boundedSignal } from '../http/abort.ts'
import { isRetryableStatus } from '../http/status.ts'

export interface ServerMetadata {
  issuer: string
  token_endpoint: string
  jwks_uri?: string
  token_endpoint_auth_methods_supported?: string[]
  dpop_signing_alg_values_supported?: string[]
  mtls_endpoint_aliases?: { token_endpoint?: string }
  [k: string]: unknown
}

/** Metadata URLs to try for `issuer`: RFC 8414 §3.1 (path inserted after the host), then OpenID Connect Discovery. */
export function discoveryUrls(issuer: string): string[] {
  const u = new URL(issuer)
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '')
  return [`${u.origin}/.well-known/oauth-authorization-server${path}`, `${u.origin}${path}/.well-known/openid-configuration`]
}

/**
 * Fetches authorization server metadata (RFC 8414, then OpenID configuration) and checks that its
 * `issuer` is exactly the configured one (RFC 8414 §3.3).
 */
export async function discover(issuer: string, options: { dispatcher?: Dispatcher; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ServerMetadata> {
  let lastStatus = 0
  for (const url of discoveryUrls(issuer)) {
    const bounded = boundedSignal(options.timeoutMs ?? 10_000, options.signal)
    let meta: ServerMetadata | undefined
    try {
      meta = await fetchMetadata(issuer, url, options.dispatcher, bounded.signal)
    } finally {
      bounded.done()
    }
    if (meta) return meta
    lastStatus = 404
  }
  throw discoveryError(`discovery of ${issuer}: no metadata at ${discoveryUrls(issuer).join(' or ')} (last status ${lastStatus})`)
}

/** The metadata at `url`, or undefined on 404 (try the next URL). */
async function fetchMetadata(issuer: string, url: string, dispatcher: Dispatcher | undefined, signal: AbortSignal): Promise<ServerMetadata | undefined> {
  let res: Awaited<ReturnType<typeof fetch>>
  try {
    res = await fetch(url, { headers: { accept: 'application/json' }, redirect: 'manual', signal, ...(dispatcher ? { dispatcher } : {}) })
  } catch (e) {
    throw new RetryableError(`discovery of ${issuer} failed at ${url}: ${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message}`, { code: 'ERR_HTTP_NETWORK', cause: e })
  }
  if (res.status === 404) {
    await res.body?.cancel()
    return undefined
  }
  if (isRetryableStatus(res.status)) {
    await res.body?.cancel()
    throw new RetryableError(`discovery of ${issuer}: ${url} answered ${res.status}`, { code: 'ERR_HTTP_STATUS' })
  }
  let meta: ServerMetadata
  try {
    meta = (await res.json()) as ServerMetadata
  } catch {
    throw discoveryError(`discovery of ${issuer}: ${url} answered ${res.status} with a body that is not JSON`)
  }
  if (res.status !== 200) throw discoveryError(`discovery of ${issuer}: ${url} answered ${res.status}`)
  if (meta.issuer !== issuer) throw discoveryError(`discovery of ${issuer}: metadata "issuer" is ${JSON.stringify(meta.issuer)}, expected the configured issuer exactly`)
  if (typeof meta.token_endpoint !== 'string') throw discoveryError(`discovery of ${issuer}: metadata has no "token_endpoint"`)
  return meta
}

function discoveryError(message: string): WeirError {
  const e = new WeirError(message)
  e.code = 'ERR_OAUTH_RESPONSE'
  return e
}
