import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { displayPath, parseJsonWithLocation } from '../../shared/config/load.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import type { HttpClient } from '../../shared/http/index.ts'
import type { Logger } from '../../shared/log/index.ts'
import { reveal, scrubSecrets, type Secret } from '../../shared/secret.ts'
import { loadChannelObject } from '../load.ts'
import { clientIdOf, importRefreshTokens, inlineCredentialsFile, originalTokenUrls, pointAtEmbedded, redirectedHttpClient, registerClients, resolveCredentials, tenantsOf, type UrlRewrite } from '../harness/embed.ts'
import { closeMllpReceivers, destinationsOf, startMllpReceivers } from '../harness/mllp.ts'
import type { ClientRegistration } from '../harness/test-file.ts'
import { startAuthorizationServer, type AuthorizationServer } from './authorization-server.ts'
import { startEmbeddedApi, verifiedBy, type EmbeddedApi } from './api.ts'
import type { MllpReceiver } from './mllp-receiver.ts'

/** Loads a channel file as `weir run` does (validated as written, its warnings collected). */
export type ChannelLoader = (file: string, options: { env: NodeJS.ProcessEnv }) => Promise<LoadedChannel>

/**
 * A rehearsal of `weir run --embedded`: the embedded authorization server and API (and MLLP
 * receivers) the channels run against until the engine stops, in place of their providers and APIs.
 */
export interface Rehearsal {
  readonly as: AuthorizationServer
  readonly api: EmbeddedApi
  /**
   * The data directory of the credentials' token stores: a temporary directory of the rehearsal's
   * own, so that the refresh tokens it imports and the tokens it gets never replace those a live
   * engine keeps in the data directory. Removed by `close`.
   */
  readonly tokenDir: string
  /** A loader that loads each channel with `load`, then points it at the embedded servers and registers its clients there. */
  loader(load: ChannelLoader): ChannelLoader
  /** `http` with every request to another origin than the embedded servers' sent to the embedded API, path and query kept. */
  redirect(http: HttpClient): HttpClient
  /** Where the embedded servers listen and what each loaded channel was pointed at, as lines for the user. */
  describe(): string[]
  close(): Promise<void>
}

/** A config value as the rehearsal's lines show it: a `$env` or `$file` reference by name, never its value. */
function shown(value: unknown): string {
  if (typeof value === 'string' || typeof value === 'number') return String(value)
  const ref = value as { $env?: unknown; $file?: unknown } | undefined
  if (ref && typeof ref.$env === 'string') return `$env ${ref.$env}`
  if (ref && typeof ref.$file === 'string') return `$file ${ref.$file}`
  return '(not set)'
}

/** The lines of one channel: each credential's endpoint and each destination, as written and as pointed. */
function channelLines(name: string, file: string, raw: Record<string, any>, pointed: Record<string, any>, channel: LoadedChannel, refreshed: ReadonlySet<string>, api: string): string[] {
  const lines = [`  channel "${name}" (${displayPath(file)}):`]
  const urls = originalTokenUrls(raw)
  const resolved = resolveCredentials(channel)
  for (const [cname, cred] of Object.entries((raw.credentials ?? {}) as Record<string, Record<string, any>>)) {
    if (cred.grant === 'static') {
      lines.push(`    credential "${cname}" (static token): sent as written; the embedded API accepts it`)
      continue
    }
    const to = pointed.credentials[cname] as Record<string, unknown>
    const [from, at] = cred.issuer && !cred.tokenUrl ? [`issuer ${shown(cred.issuer)}`, `${String(to.issuer)}`] : [urls[cname] ?? '(its preset\'s token endpoint)', String(to.tokenUrl)]
    const r = resolved[cname]!
    lines.push(`    credential "${cname}" (${r.grant} grant, client authentication ${r.method}): ${from} → ${at}${refreshed.has(cname) ? '; a refresh token it issued is in the token store' : ''}`)
  }
  for (const [i, d] of ((raw.destinations ?? []) as Array<{ name: string; type: string; config?: Record<string, any> }>).entries()) {
    const to = (pointed.destinations[i] as { config: Record<string, any> }).config
    const from = d.config ?? {}
    if (d.type === 'http') {
      const field = from.baseUrlFromToken === undefined ? undefined : String(from.baseUrlFromToken)
      const url = field === undefined ? `${shown(from.url)} → ${shown(to.url)}` : `${shown(from.url)} on the token's ${field} → ${api}${shown(to.url)} (the token's ${field} is the API's URL)`
      lines.push(`    destination "${d.name}" (http): ${url}`)
    } else if (d.type === 'mllp') {
      lines.push(`    destination "${d.name}" (mllp): ${shown(from.host)}:${shown(from.port)} → ${to.host}:${to.port} (an embedded receiver answering AA)`)
    } else {
      lines.push(`    destination "${d.name}" (${d.type}): as written${d.type === 'file' ? ` (files in ${shown(from.directory)})` : ''}`)
    }
  }
  return lines
}

/**
 * The client registrations the channel needs beyond its own credentials: a destination that takes
 * its base URL from a token response field (`baseUrlFromToken`) gets the embedded API's URL there.
 */
function baseUrlRegistrations(raw: Record<string, any>): Record<string, ClientRegistration> {
  const regs: Record<string, ClientRegistration> = {}
  for (const d of (raw.destinations ?? []) as Array<{ type: string; config?: Record<string, unknown> }>) {
    const { credential, baseUrlFromToken } = d.config ?? {}
    if (d.type !== 'http' || typeof credential !== 'string' || typeof baseUrlFromToken !== 'string') continue
    regs[credential] = { tokenResponse: { ...regs[credential]?.tokenResponse, [baseUrlFromToken]: '{api}' } }
  }
  return regs
}

/**
 * Starts the embedded authorization server and API on 127.0.0.1 for `weir run --embedded`. The API
 * answers 200 `{}` to every request whose bearer token the authorization server issued (or that is
 * a channel's static token), and to one without a token (an API key, no authentication); 401
 * invalid_token to any other token. It logs each request at info level (method, path, status: never
 * a header or the body). With `channels` above one, each channel's tenants are its own (named
 * after the channel), so that two channels' credentials of one name are two clients.
 *
 * @example
 * const rehearsal = await startRehearsal({ log, channels: 1 })
 * const channel = await rehearsal.loader(loadChannel)('channels/crm.json', { env: process.env })
 * // channel's token endpoints, URLs and mllp destinations now point at rehearsal.as and rehearsal.api
 */
export async function startRehearsal(options: { log: Logger; channels: number }): Promise<Rehearsal> {
  const { log } = options
  const statics = new Set<string>()
  const receivers: Array<ReadonlyMap<string, MllpReceiver>> = []
  const described: string[] = []
  const tokenDir = await mkdtemp(join(tmpdir(), 'weir-rehearsal-'))
  const as = await startAuthorizationServer().catch(async (e: unknown) => { await rm(tokenDir, { recursive: true, force: true }); throw e })
  const verify = verifiedBy(as)
  const api = await startEmbeddedApi({
    anonymous: true,
    maxRecorded: 0,
    verifyToken: async (token, req) => (statics.has(token) ? null : verify(token, req)),
    onAnswered: (r) => log.info({ method: r.method, path: r.path, status: r.status }, 'embedded API answered'),
  }).catch(async (e: unknown) => {
    await as.close()
    await rm(tokenDir, { recursive: true, force: true })
    throw e
  })
  const to: UrlRewrite = { api: api.url, as, keep: new Set(), kept: new Set() }
  const close = async () => {
    for (const r of receivers) await closeMllpReceivers(r)
    await api.close()
    await as.close()
    await rm(tokenDir, { recursive: true, force: true })
  }
  return {
    as, api, tokenDir,
    loader: (load) => async (file, opts) => {
      const asWritten = await load(file, opts)
      const raw = await inlineCredentialsFile(parseJsonWithLocation(await readFile(file, 'utf8'), displayPath(file)) as Record<string, any>, file)
      const mllp = await startMllpReceivers(destinationsOf(raw), undefined)
      receivers.push(mllp)
      const prefix = options.channels > 1 ? `${asWritten.name}.` : ''
      const tenants = Object.fromEntries(Object.entries(tenantsOf(raw)).map(([name, t]) => [name, prefix + t]))
      const pointed = pointAtEmbedded(raw, to, mllp, tenants)
      const channel = await loadChannelObject(pointed, { file, env: opts.env })
      const resolved = resolveCredentials(channel)
      await registerClients(channel, resolved, tenants, baseUrlRegistrations(raw), as, api, originalTokenUrls(raw), undefined)
      const clientIds = Object.fromEntries(Object.entries(resolved).map(([name, r]) => [name, clientIdOf(r)]))
      const refreshed = Object.keys(resolved).filter((name) => resolved[name]!.grant === 'refresh_token')
      await importRefreshTokens(as, channel, refreshed, clientIds, tenants, join(tokenDir, 'oauth'))
      for (const c of Object.values(channel.credentials) as Array<{ grant?: string; token?: Secret | string }>) {
        if (c.grant === 'static' && c.token !== undefined) statics.add(reveal(c.token)!)
      }
      described.push(...channelLines(channel.name, file, raw, pointed, channel, new Set(refreshed), api.url))
      return { ...channel, warnings: asWritten.warnings }
    },
    redirect: (http) => redirectedHttpClient(http, to, new Set([api.url, as.url].map((u) => new URL(u).origin))),
    // Scrubbed of every secret value the engine knows, as log lines are: a URL as written may carry one.
    describe: () => [
      'weir run --embedded: a rehearsal against embedded servers; nothing leaves 127.0.0.1 (no token request, API call or MLLP message reaches a real provider or service)',
      `  authorization server: ${as.url} (each credential's client registered with the channel's own secret or public key)`,
      `  API: ${api.url} (answers 200 {} to a request with a token the authorization server issued, or with none; 401 invalid_token otherwise)`,
      ...described,
      '  every other URL in a component config, and every request a component sends through the engine\'s HTTP client, goes to the embedded API too',
    ].map(scrubSecrets),
    close,
  }
}
