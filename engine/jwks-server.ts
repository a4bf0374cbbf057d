import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { calculateJwkThumbprint, type JWK } from 'jose'
import type { LoadedChannel } from '../shared/config/types.ts'
import { errorCodes } from '../shared/errors.ts'
import { publicJwkSet, resolveCredential, signingKeysOf, type CredentialConfig } from '../shared/oauth/index.ts'
import type { SigningKey } from '../shared/oauth/keys.ts'

/** How the JWK Sets are cut: `/jwks/<credential>.json` per credential, or one `/jwks.json` with every key. */
export type JwksSets = 'per-credential' | 'combined'
export const JWKS_SETS: readonly JwksSets[] = ['per-credential', 'combined']

/** One served JWK Set: its body and strong ETag. */
export interface JwksDocument { body: string; etag: string }

/** The signing keys of a credential, as `jwksDocuments` takes them. */
export interface CredentialKeys { name: string; keys: readonly SigningKey[] }

/** The signing keys of every OAuth credential of `channels` (static tokens and secret-only credentials have none). */
export function channelSigningKeys(channels: readonly LoadedChannel[]): CredentialKeys[] {
  const out: CredentialKeys[] = []
  for (const ch of channels) {
    for (const [name, cfg] of Object.entries(ch.credentials)) {
      if ((cfg as CredentialConfig).grant === 'static') continue
      const keys = signingKeysOf(resolveCredential(name, cfg as CredentialConfig)).filter((k) => !(k.key instanceof Uint8Array))
      if (keys.length) out.push({ name, keys })
    }
  }
  return out
}

/**
 * Adds `jwks` to `into`, once per kid: the same key again (a credential shared by two channels) is
 * skipped; another key under a kid already taken is an error, as the provider could not tell them apart.
 */
async function addKeys(into: Map<string, { jwk: JWK; thumbprint: string; owner: string }>, jwks: JWK[], owner: string): Promise<void> {
  for (const jwk of jwks) {
    const thumbprint = await calculateJwkThumbprint(jwk)
    const seen = into.get(jwk.kid!)
    if (!seen) into.set(jwk.kid!, { jwk, thumbprint, owner })
    else if (seen.thumbprint !== thumbprint) {
      throw new errorCodes.ERR_CONFIG_INVALID(`kid "${jwk.kid}" names two different keys (credentials "${seen.owner}" and "${owner}"); one JWK Set needs a kid per key`)
    }
  }
}

function documentOf(keys: JWK[]): JwksDocument {
  const body = JSON.stringify({ keys })
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` }
}

/**
 * The public JWK Sets to serve, by path: `/jwks/<credential>.json` per credential, or `/jwks.json`
 * with every key. Only public members are published (`publicJwk`), every key with kid and alg.
 *
 * @example
 * const docs = await jwksDocuments(channelSigningKeys(channels), 'per-credential')
 * docs.get('/jwks/epic.json')?.body // → '{"keys":[{"kty":"RSA","n":"…","e":"AQAB","alg":"RS384","use":"sig","kid":"k1"}]}'
 * @see https://www.rfc-editor.org/rfc/rfc7517#section-5
 */
export async function jwksDocuments(credentials: readonly CredentialKeys[], sets: JwksSets): Promise<Map<string, JwksDocument>> {
  const byPath = new Map<string, Map<string, { jwk: JWK; thumbprint: string; owner: string }>>()
  for (const c of credentials) {
    const path = sets === 'combined' ? '/jwks.json' : `/jwks/${encodeURIComponent(c.name)}.json`
    let keys = byPath.get(path)
    if (!keys) byPath.set(path, (keys = new Map()))
    await addKeys(keys, (await publicJwkSet(c.keys)).keys, c.name)
  }
  if (sets === 'combined' && !byPath.size) byPath.set('/jwks.json', new Map())
  return new Map([...byPath].map(([path, keys]) => [path, documentOf([...keys.values()].map((k) => k.jwk))]))
}

/** Whether an If-None-Match header names `etag` (or is `*`); weak comparison, RFC 9110 §13.1.2. */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false
  return header.split(',').map((t) => t.trim().replace(/^W\//, '')).some((t) => t === '*' || t === etag)
}

/** The answer to one request for a JWK Set: 200 with caching headers, 304, 404 or 405. Pure. */
export function jwksResponse(documents: ReadonlyMap<string, JwksDocument>, request: { method: string; path: string; ifNoneMatch?: string }, maxAgeSec = 300): { status: number; headers: Record<string, string>; body: string } {
  if (request.method !== 'GET' && request.method !== 'HEAD') return { status: 405, headers: { allow: 'GET, HEAD' }, body: '' }
  const doc = documents.get(request.path)
  if (!doc) return { status: 404, headers: { 'content-type': 'application/json' }, body: '{"error":"not_found"}' }
  const headers = { 'cache-control': `public, max-age=${maxAgeSec}`, etag: doc.etag, 'x-content-type-options': 'nosniff' }
  if (matchesEtag(request.ifNoneMatch, doc.etag)) return { status: 304, headers, body: '' }
  return { status: 200, headers: { ...headers, 'content-type': 'application/jwk-set+json' }, body: request.method === 'HEAD' ? '' : doc.body }
}

/** A node:http request handler serving `documents()` (mountable on any server: the run's own listener or an admin server). */
export function jwksHandler(documents: () => ReadonlyMap<string, JwksDocument>, maxAgeSec = 300): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname
    const ifNoneMatch = req.headers['if-none-match']
    const answer = jwksResponse(documents(), { method: req.method ?? 'GET', path, ...(ifNoneMatch ? { ifNoneMatch } : {}) }, maxAgeSec)
    res.writeHead(answer.status, answer.headers)
    res.end(answer.body)
  }
}

export interface JwksServer {
  /** Base URL, e.g. http://127.0.0.1:8090 */
  url: string
  /** Paths served, e.g. ['/jwks/epic.json']. */
  paths(): string[]
  /** Serves these documents from now on (after a key rotation). */
  setDocuments(documents: Map<string, JwksDocument>): void
  close(): Promise<void>
}

/** Parses a listen address: `PORT`, `HOST:PORT` or `[IPv6]:PORT` (host default 127.0.0.1). */
export function parseListenAddress(value: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):)?(\d{1,5})$/.exec(value)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65_535) throw new errorCodes.ERR_USAGE(`--jwks must be PORT or HOST:PORT (e.g. 127.0.0.1:8090); got "${value}"`)
  return { host: (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port }
}

/**
 * Serves public JWK Sets on a listener of its own, for providers that take a `jwks_uri`
 * (`weir run --jwks`): Cache-Control with a short max-age, a strong ETag and 304 on If-None-Match.
 *
 * @example
 * const server = await startJwksServer({ host: '127.0.0.1', port: 0, documents: await jwksDocuments(keys, 'per-credential') })
 * // GET `${server.url}/jwks/epic.json`
 */
export async function startJwksServer(options: { host: string; port: number; documents: Map<string, JwksDocument>; maxAgeSec?: number }): Promise<JwksServer> {
  let documents = options.documents
  const server = createServer(jwksHandler(() => documents, options.maxAgeSec))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    paths: () => [...documents.keys()],
    setDocuments(next) { documents = next },
    close: () => new Promise((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    }),
  }
}
