// The rewiring that runs a channel against the embedded servers instead of its providers and APIs:
// each credential's token endpoint at a tenant of the embedded authorization server, its clients
// registered there from the channel's own credentials, its URLs (and its components' requests) at
// the embedded API, its mllp destinations at embedded receivers. `weir test` runs each case so;
// `weir run --embedded` runs a channel so until it is stopped (engine/embedded/rehearsal.ts).
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { displayPath, parseJsonWithLocation } from '../../shared/config/load.ts'
import { escapePointer } from '../../shared/config/problems.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { ConfigError, type ConfigProblem } from '../../shared/errors.ts'
import { resolveCredential, signingKeysOf, publicJwkSet, presetOf, createRefreshTokenStore, importRefreshToken } from '../../shared/oauth/index.ts'
import type { ResolvedCredential } from '../../shared/oauth/token-endpoint.ts'
import type { HttpClient } from '../../shared/http/index.ts'
import type { AuthorizationServer, RegisteredClient } from '../embedded/authorization-server.ts'
import type { EmbeddedApi } from '../embedded/api.ts'
import type { MllpReceiver } from '../embedded/mllp-receiver.ts'
import type { JwksServer } from '../jwks-server.ts'
import type { ClientRegistration } from './test-file.ts'

/** The token URL each credential names (its preset's when it names none), as written: before it is pointed at the embedded authorization server. */
export function originalTokenUrls(raw: Record<string, any>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, cred] of Object.entries((raw.credentials ?? {}) as Record<string, Record<string, any>>)) {
    const url = typeof cred.tokenUrl === 'string' ? cred.tokenUrl : presetOf(cred.preset)?.tokenUrl?.(cred)
    if (url) out[name] = url
  }
  return out
}

/**
 * The tenant of the embedded authorization server each OAuth credential asks for tokens, by
 * credential name: one tenant per token endpoint (or issuer) the channel names, called after the
 * first credential naming it. Credentials of one endpoint meet there as at their provider (one
 * client id is one client: tokens and a refresh token shared as in production); one client id at
 * two endpoints (two providers, two tenants of one) is two clients, each with its own secret or keys.
 */
export function tenantsOf(raw: Record<string, any>): Record<string, string> {
  const urls = originalTokenUrls(raw)
  const byEndpoint = new Map<string, string>()
  const out: Record<string, string> = {}
  for (const [name, cred] of Object.entries((raw.credentials ?? {}) as Record<string, Record<string, any>>)) {
    if (cred.grant === 'static') continue
    const endpoint = cred.issuer && !cred.tokenUrl ? `issuer ${String(cred.issuer)}` : urls[name] !== undefined ? `token endpoint ${urls[name]}` : `credential ${name}`
    if (!byEndpoint.has(endpoint)) byEndpoint.set(endpoint, name)
    out[name] = byEndpoint.get(endpoint)!
  }
  return out
}

/** Where rewriteUrls points a channel's URLs, which origins it leaves as written (`keepUrls`), and which of those it met. */
export interface UrlRewrite { api: string; as: AuthorizationServer; keep: ReadonlySet<string>; kept: Set<string> }

/**
 * Points every external URL of a component config at the embedded servers, keeping the path.
 * Loopback URLs too: a service listening there may be a real one (the user's own API), which a
 * case (or a rehearsal) must not reach unless the test file keeps its origin (`keepUrls`).
 */
export function rewriteUrls(value: unknown, to: UrlRewrite, key = ''): unknown {
  if (typeof value === 'string' && /^https?:\/\//.test(value)) {
    if (key === 'jwksUrl') return to.as.jwksUrl
    if (key === 'issuer') return to.as.issuer
    let u: URL
    try { u = new URL(value) } catch { return value }
    if (to.keep.has(u.origin)) {
      to.kept.add(u.origin)
      return value
    }
    return to.api + value.slice(u.origin.length)
  }
  if (Array.isArray(value)) return value.map((v) => rewriteUrls(v, to))
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>
    if ('$env' in o || '$file' in o) return value
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, rewriteUrls(v, to, k)]))
  }
  return value
}

/** `{ "$file": … }` references made absolute against `dir` (a credentials file's own directory). */
function absoluteFileRefs(value: unknown, dir: string): unknown {
  if (Array.isArray(value)) return value.map((v) => absoluteFileRefs(v, dir))
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>
    if (typeof o.$file === 'string') return { ...o, $file: resolve(dir, o.$file) }
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, absoluteFileRefs(v, dir)]))
  }
  return value
}

/**
 * The channel with its "credentialsFile" merged into "credentials" (a name in both is an error, as
 * when the engine loads it), so that pointAtEmbedded replaces those token endpoints too: otherwise the
 * loader would read the file later and the channel would send real secrets to the real provider.
 */
export async function inlineCredentialsFile(raw: Record<string, any>, channelFile: string): Promise<Record<string, any>> {
  // None, or not a path (which the loader reports against the channel, reading no file).
  if (typeof raw.credentialsFile !== 'string' || !raw.credentialsFile) return raw
  const ch = structuredClone(raw)
  delete ch.credentialsFile
  const path = resolve(dirname(channelFile), raw.credentialsFile)
  const name = displayPath(path)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new ConfigError([{ file: name, pointer: '', message: code === 'ENOENT' ? 'credentials file not found' : `cannot read credentials file (${code ?? (e as Error).message})` }])
  }
  const shared = parseJsonWithLocation(text, name)
  if (!shared || typeof shared !== 'object' || Array.isArray(shared)) throw new ConfigError([{ file: name, pointer: '', message: 'must be an object of named credentials' }])
  const own = ch.credentials ?? {}
  if (!own || typeof own !== 'object' || Array.isArray(own)) return ch // the loader reports the channel's "credentials"
  const problems: ConfigProblem[] = []
  for (const [cname, cred] of Object.entries(shared as Record<string, unknown>)) {
    if (Object.hasOwn(own, cname)) problems.push({ file: displayPath(channelFile), pointer: `/credentials/${escapePointer(cname)}`, message: `credential "${cname}" is also defined in ${name}; use one` })
    else own[cname] = absoluteFileRefs(cred, dirname(path))
  }
  if (problems.length) throw new ConfigError(problems)
  ch.credentials = own
  return ch
}

/**
 * The channel pointed at the embedded servers: each OAuth credential's token endpoint (or issuer)
 * at its tenant (`tenants`, by credential name; default tenantsOf), every URL of its source, filters and destinations at the embedded
 * API (see rewriteUrls), and each `mllp` destination that has a receiver in `mllp` (by destination
 * name) at that receiver, without TLS. A copy: `raw` is untouched.
 */
export function pointAtEmbedded(raw: Record<string, any>, to: UrlRewrite, mllp: ReadonlyMap<string, MllpReceiver>, tenants = tenantsOf(raw)): Record<string, any> {
  const { as } = to
  const ch = structuredClone(raw)
  for (const [name, cred] of Object.entries((ch.credentials ?? {}) as Record<string, Record<string, unknown>>)) {
    if (cred.grant === 'static') continue
    const tenant = as.tenant(tenants[name]!)
    if (cred.issuer && !cred.tokenUrl) cred.issuer = tenant.issuer
    else { cred.tokenUrl = tenant.tokenUrl; delete cred.issuer }
  }
  const src = ch.source as { type: string; config?: Record<string, unknown> }
  src.config = rewriteUrls(src.config ?? {}, to) as Record<string, unknown>
  for (const f of (ch.filters ?? []) as Array<{ type: string; config?: Record<string, unknown> }>) {
    // A JSON Schema's "$schema", "$id" and "$ref" are names the validator matches, never fetched.
    const { schema, ...rest } = f.config ?? {}
    f.config = f.type === 'validate' && schema !== undefined ? { ...(rewriteUrls(rest, to) as object), schema } : rewriteUrls(f.config ?? {}, to) as Record<string, unknown>
  }
  for (const d of (ch.destinations ?? []) as Array<{ name: string; type: string; config?: Record<string, unknown> }>) {
    d.config = rewriteUrls(d.config ?? {}, to) as Record<string, unknown>
    // Each mllp destination to a receiver of its own, so that a case can script and check it apart from the others.
    const receiver = d.type === 'mllp' ? mllp.get(d.name) : undefined
    if (receiver) {
      Object.assign(d.config, { host: receiver.host, port: receiver.port })
      delete d.config.tls
    }
  }
  return ch
}

/**
 * The shared HTTP client as the channel's components get it: a request to an origin that is neither
 * one of the embedded servers (`own`) nor kept (a test file's `keepUrls`) goes to the embedded API,
 * path and query kept. This reaches the URLs no config rewrite sees: those a component builds at
 * run time (from a host name, a token response, an environment variable).
 */
export function redirectedHttpClient(http: HttpClient, to: UrlRewrite, own: ReadonlySet<string>): HttpClient {
  const redirect = (url: string | URL): string | URL => {
    let u: URL
    try { u = new URL(url) } catch { return url } // the client reports it
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || own.has(u.origin)) return url
    if (to.keep.has(u.origin)) {
      to.kept.add(u.origin)
      return url
    }
    return `${to.api}${u.pathname}${u.search}`
  }
  return { request: (req) => http.request({ ...req, url: redirect(req.url) }), dispatcherFor: (origin) => http.dispatcherFor(origin), close: () => http.close() }
}

/**
 * The client id a credential is registered under at its tenant of the authorization server: what
 * it records per token request, what `credential` in tokenRequests expectations and tokenFailures
 * selects (with the tenant), whom imported refresh tokens are issued to.
 */
export function clientIdOf(r: ResolvedCredential): string {
  return r.clientId ?? r.assertion?.iss ?? r.assertion?.keys?.[0]?.keyFileIssuer ?? r.clientKeys?.[0]?.keyFileIssuer ?? r.name
}

/** Every OAuth credential of the channel (static tokens have no client), keys and secrets loaded. */
export function resolveCredentials(channel: LoadedChannel): Record<string, ResolvedCredential> {
  const out: Record<string, ResolvedCredential> = {}
  for (const [name, cfg] of Object.entries(channel.credentials)) {
    if ((cfg as Record<string, unknown>).grant === 'static') continue
    out[name] = resolveCredential(name, cfg as never)
  }
  return out
}

/**
 * Registers each OAuth credential's client at its tenant (see tenantsOf), as its provider has it:
 * `regs` (a test file's and its case's `server.clients`) over the channel's own settings.
 */
export async function registerClients(channel: LoadedChannel, resolved: Record<string, ResolvedCredential>, tenants: Record<string, string>, regs: Record<string, ClientRegistration>, as: AuthorizationServer, api: EmbeddedApi, originals: Record<string, string>, jwks: JwksServer | undefined): Promise<void> {
  for (const [name, r] of Object.entries(resolved)) {
    const c = channel.credentials[name] as Record<string, any>
    const tenant = as.tenant(tenants[name]!)
    const reg = regs[name] ?? {}
    const keys = signingKeysOf(r)
    const published = await publicJwkSet(keys)
    // By jwks_uri, the provider reads the set the harness serves (and, after a rotation, serves anew).
    const keyRegistration = reg.jwksUri && jwks ? { jwksUri: `${jwks.url}/jwks/${encodeURIComponent(name)}.json` } : published.keys.length ? { jwks: published } : {}
    const clientId = clientIdOf(r)
    // As the provider would accept them (the preset table): algorithms, assertion lifetime and audiences.
    const preset = presetOf(c.preset)
    const audiences = [...(originals[name] ? preset?.assertionAudiences?.(originals[name]) ?? [] : []), ...(reg.assertionAudiences ?? [])]
    const client: RegisteredClient = {
      clientId,
      authMethod: r.grant === 'jwt_bearer' && !r.clientId ? 'none' : r.method,
      ...(reg.secret ?? r.secret ? { secret: reg.secret ?? r.secret } : {}),
      ...keyRegistration,
      ...((reg.allowedAlgs ?? preset?.algs.length) ? { allowedAlgs: reg.allowedAlgs ?? preset!.algs } : {}),
      ...(reg.scopes ? { scopes: reg.scopes } : {}),
      ...(audiences.length ? { assertionAudiences: [tenant.tokenUrl, ...audiences] } : {}),
      maxAssertionLifetimeSec: preset?.maxAssertionLifetimeSec ?? 300,
      basicEncoding: r.basicEncoding,
      ...(r.assertion?.iss ? { assertionIssuer: r.assertion.iss } : keys[0]?.keyFileIssuer ? { assertionIssuer: keys[0].keyFileIssuer } : {}),
      ...(c.dpop ? { requireDpop: true } : {}),
      ...(reg.tokenResponse ? { tokenResponse: JSON.parse(JSON.stringify(reg.tokenResponse).replaceAll('{api}', api.url)) } : {}),
    }
    as.registerClient(client, { tenant: tenant.name })
  }
}

/**
 * Refresh tokens a user consented to outside the engine, for the credentials `names`: issued by the
 * server (to the credential's client at its tenant) and imported into the encrypted token store
 * under `oauthDir`, at the credential's store key, as `weir credentials import` does.
 */
export async function importRefreshTokens(as: AuthorizationServer, channel: LoadedChannel, names: readonly string[], clientIds: Record<string, string>, tenants: Record<string, string>, oauthDir: string): Promise<void> {
  for (const name of names) {
    const storeKey = (channel.credentials[name] as { storeKey?: string } | undefined)?.storeKey
    await importRefreshToken(createRefreshTokenStore({ dir: oauthDir }), storeKey ?? name, as.issueRefreshToken(clientIds[name] ?? name, { tenant: tenants[name] }))
  }
}
