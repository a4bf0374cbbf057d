import { fetch, type Dispatcher } from 'undici'
import { HttpStatusError, errorCodes, type WeirError } from '../errors.ts'
import { boundedSignal } from '../http/abort.ts'
import { MAX_METADATA_BYTES, readBoundedBody } from '../http/bounded-body.ts'
import { remoteText } from '../http/excerpt.ts'
import { isRetryableStatus } from '../http/status.ts'

export interface ServerMetadata {
  issuer: string
  token_endpoint: string
  jwks_uri?: string
  authorization_endpoint?: string
  /** RFC 9207 §3: the server puts `iss` in every authorization response. */
  authorization_response_iss_parameter_supported?: boolean
  token_endpoint_auth_methods_supported?: string[]
  dpop_signing_alg_values_supported?: string[]
  mtls_endpoint_aliases?: { token_endpoint?: string }
  [k: string]: unknown
}

/** A metadata field a caller can require of discovery. */
export type MetadataField = 'token_endpoint' | 'jwks_uri' | 'authorization_endpoint'

/** One GET of a metadata document: status and body text (`truncated` when reading stopped at a size limit). Network failures throw. */
export type MetadataGet = (url: string, options: { timeoutMs: number; signal?: AbortSignal }) => Promise<{ status: number; body: string; truncated?: boolean }>

export interface DiscoveryOptions {
  /** Dispatcher of the default GET (undici fetch). */
  dispatcher?: Dispatcher
  /** Per-document timeout (default 10 s). */
  timeoutMs?: number
  signal?: AbortSignal
  /** Which document to try first: RFC 8414 `oauth2` (default, a token client) or OpenID `oidc` (a resource server's issuer). */
  first?: 'oauth2' | 'oidc'
  /** The metadata field the caller needs (default `token_endpoint`); discovery fails without it. */
  requires?: MetadataField
  /** GET through this instead of undici fetch (a component passes its shared HTTP client). */
  get?: MetadataGet
}

/**
 * Metadata URLs to try for `issuer`: RFC 8414 §3.1 (path inserted after the host), then OpenID
 * Connect Discovery (path appended); the other order with `first: 'oidc'`.
 */
export function discoveryUrls(issuer: string, first: 'oauth2' | 'oidc' = 'oauth2'): string[] {
  const u = new URL(issuer)
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '')
  const urls = [`${u.origin}/.well-known/oauth-authorization-server${path}`, `${u.origin}${path}/.well-known/openid-configuration`]
  return first === 'oidc' ? urls.reverse() : urls
}

/**
 * Fetches authorization server metadata (RFC 8414 and OpenID Connect Discovery, in the order of
 * `first`) and checks that its `issuer` is exactly the configured one (RFC 8414 §3.3). A 404 moves
 * on to the next document; 408, 429, 5xx and network failures are retryable.
 *
 * @example
 * const meta = await discover('https://login.example.org/realms/weir')
 * meta.token_endpoint // → 'https://login.example.org/realms/weir/protocol/openid-connect/token'
 * @see https://www.rfc-editor.org/rfc/rfc8414#section-3
 */
export async function discover(issuer: string, options: DiscoveryOptions = {}): Promise<ServerMetadata> {
  const get = options.get ?? fetchText(options.dispatcher)
  const urls = discoveryUrls(issuer, options.first)
  for (const url of urls) {
    const res = await get(url, { timeoutMs: options.timeoutMs ?? 10_000, ...(options.signal ? { signal: options.signal } : {}) })
    const meta = checkedMetadata(issuer, url, res, options.requires ?? 'token_endpoint')
    if (meta) return meta
  }
  throw discoveryError(`issuer ${issuer} publishes no discovery document (404 at ${urls.join(' and ')})`)
}

/** The metadata in one answer, or undefined on 404 (try the next URL). */
function checkedMetadata(issuer: string, url: string, res: { status: number; body: string; truncated?: boolean }, requires: MetadataField): ServerMetadata | undefined {
  if (res.status === 404) return undefined
  if (isRetryableStatus(res.status)) throw new HttpStatusError(`issuer discovery at ${url} answered ${res.status}`, res.status)
  if (res.truncated) throw discoveryError(`issuer discovery at ${url} answered ${res.status} with a body over ${MAX_METADATA_BYTES} bytes; stopped reading it`)
  let meta: ServerMetadata
  try {
    meta = JSON.parse(res.body) as ServerMetadata
  } catch {
    throw discoveryError(`issuer discovery at ${url} answered ${res.status} with a body that is not JSON`)
  }
  if (res.status !== 200) throw discoveryError(`issuer discovery at ${url} answered ${res.status}`)
  if (meta?.issuer !== issuer) throw discoveryError(`issuer discovery at ${url} names issuer ${remoteText(JSON.stringify(meta?.issuer) ?? 'undefined', 300)}, not ${JSON.stringify(issuer)}`)
  if (typeof meta[requires] !== 'string') throw discoveryError(`issuer discovery at ${url} has no "${requires}"`)
  return meta
}

/** The default GET: undici fetch, bounded by the timeout and the caller's signal, never following redirects. */
function fetchText(dispatcher: Dispatcher | undefined): MetadataGet {
  return async (url, { timeoutMs, signal }) => {
    const bounded = boundedSignal(timeoutMs, signal)
    try {
      const res = await fetch(url, { headers: { accept: 'application/json' }, redirect: 'manual', signal: bounded.signal, ...(dispatcher ? { dispatcher } : {}) })
      const body = await readBoundedBody(res, MAX_METADATA_BYTES)
      return { status: res.status, body: body.text, ...(body.truncated ? { truncated: true } : {}) }
    } catch (e) {
      throw new errorCodes.ERR_HTTP_NETWORK(`issuer discovery at ${url} failed: ${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message}`, { cause: e })
    } finally {
      bounded.done()
    }
  }
}

function discoveryError(message: string): WeirError {
  return new errorCodes.ERR_OAUTH_DISCOVERY(message)
}
