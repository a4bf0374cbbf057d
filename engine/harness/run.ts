import { mkdtemp, rm, mkdir, writeFile, readFile, rename } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import { displayPath, parseJsonWithLocation } from '../../shared/config/load.ts'
import { loadChannel, loadChannelObject } from '../load.ts'
import { escapePointer, nearest } from '../../shared/config/problems.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { ConfigError, errorCodes, formatProblem, isWeirError, type ConfigProblem } from '../../shared/errors.ts'
import { createLogger, type Logger } from '../../shared/log/index.ts'
import { createTokenProvider, TokenCache } from '../../shared/oauth/index.ts'
import type { TokenProvider } from '../../shared/oauth/types.ts'
import { createHttpClient, type HttpClient } from '../../shared/http/index.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import type { MessageStatus, MessageStore } from '../../shared/store/types.ts'
import { scrubSecrets } from '../../shared/secret.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../embedded/authorization-server.ts'
import { startEmbeddedApi, verifiedBy, type EmbeddedApi, type ApiRoute, type RecordedRequest } from '../embedded/api.ts'
import type { MllpReceiver } from '../embedded/mllp-receiver.ts'
import { startChannel, type ChannelHandle } from '../runtime/index.ts'
import { loadTestFile, PLAIN_FILE_NAME, type TestCase, type TestFile, type Expectation, type ClientRegistration, type RotateKeysStep, type SendStep, type Step, type RequestExpectation, type TokenExpectation } from './test-file.ts'
import { channelSigningKeys, jwksDocuments, startJwksServer, type JwksServer } from '../jwks-server.ts'
import { rotateKey } from '../key-rotation.ts'
import { containsSubset, short } from './match.ts'
import { listFiles, sandboxChannelDir, type ChannelSandbox } from './sandbox.ts'
import { instrumentChannel, type Recording } from './instrument.ts'
import { checkDeliveries } from './deliveries.ts'
import { formatMessagePaths, messagePaths } from './trace.ts'
import { checkMllp, closeMllpReceivers, destinationsOf, mllpEncodingOf, mllpSender, startMllpReceivers, unknownMllpDestinationProblems, type MllpSendStep } from './mllp.ts'
import { globToRegExp } from '../../components/sources/file-poller.ts'
import { clientIdOf, importRefreshTokens, inlineCredentialsFile, originalTokenUrls, pointAtEmbedded, redirectedHttpClient, registerClients, resolveCredentials, tenantsOf, type UrlRewrite } from './embed.ts'

export { containsSubset } from './match.ts'

export interface CaseResult {
  name: string
  passed: boolean
  failures: string[]
  durationMs: number
  /** With `verbose`: each message's way through the channel (filters, destinations, attempts), as lines. */
  trace?: string[]
}
export interface TestFileResult { file: string; channel: string; cases: CaseResult[]; durationMs: number }

const IDLE_TIMEOUT_MS = 20_000
/** How long in-flight work may take when the channel stops at the end of a case (as a restart step allows). */
const STOP_TIMEOUT_MS = 5000

/** The origins of the test file's `keepUrls`, as URL.origin spells them (default ports dropped, host lowercased). */
const keptOrigins = (file: TestFile): ReadonlySet<string> => new Set((file.keepUrls ?? []).map((o) => new URL(o).origin))

/**
 * Where the requests a case found missing went, when the channel has URLs the test file keeps:
 * to the service at that origin, not to the embedded API.
 */
function keptUrlHints(failures: string[], kept: ReadonlySet<string>): string[] {
  if (!failures.some((f) => /^expect\.(requests|requestCount)\b/.test(f))) return []
  return [...kept].map((o) => `what the channel sent to ${o} went to the service listening there, not to the embedded API: "keepUrls" keeps that origin`)
}

/**
 * The channel as the case runs it: pointed at the embedded servers (see pointAtEmbedded), its
 * listener's port and its directories replaced.
 */
function rewriteChannel(raw: Record<string, any>, to: UrlRewrite, dirs: { in: string; out: string }, mllp: ReadonlyMap<string, MllpReceiver>): Record<string, any> {
  const ch = pointAtEmbedded(raw, to, mllp)
  const src = ch.source as { type: string; config: Record<string, unknown> }
  if (src.type === 'http-listener' || src.type === 'mllp-listener') Object.assign(src.config, { port: 0, host: '127.0.0.1' })
  if (src.type === 'mllp-listener') delete src.config.tls
  if (src.type === 'file-poller') {
    Object.assign(src.config, { directory: dirs.in, pollIntervalMs: 50 })
    delete src.config.doneDirectory
    delete src.config.errorDirectory
  }
  for (const d of (ch.destinations ?? []) as Array<{ type: string; config: Record<string, unknown> }>) if (d.type === 'file') d.config.directory = dirs.out
  return ch
}

/** The file's client registrations with the case's changes merged in, per credential. */
function registrations(file: TestFile, tc: TestCase): Record<string, ClientRegistration> {
  const out: Record<string, ClientRegistration> = { ...file.server.clients }
  for (const [name, r] of Object.entries(tc.server?.clients ?? {})) out[name] = { ...out[name], ...r }
  return out
}

/** Routes with "{api}" replaced by the embedded API's URL (absolute next links, Location headers). */
function withApiUrl(routes: ApiRoute[], url: string): ApiRoute[] {
  return JSON.parse(JSON.stringify(routes).replaceAll('{api}', url)) as ApiRoute[]
}

/** `the channel has no OAuth credential "cmr"; did you mean "crm"? (its OAuth credentials: "crm")`. */
function noCredential(name: string, known: readonly string[]): string {
  const guess = nearest(name, known)
  const has = known.length ? `its OAuth credentials: ${known.map((n) => `"${n}"`).join(', ')}` : 'it has none'
  return `the channel has no OAuth credential "${name}"${guess ? `; did you mean "${guess}"?` : ''} (${has})`
}

/** The credential names a case's `expect.tokenRequests` and `tokenFailures` entries give, each with its JSON pointer (`at`: the case's). */
function credentialReferences(tc: TestCase, at: string): Array<[name: string, pointer: string]> {
  const refs: Array<[string, string]> = []
  const exp = tc.expect.tokenRequests
  for (const [i, t] of (Array.isArray(exp) ? exp : exp ? [exp] : []).entries()) {
    if (t.credential !== undefined) refs.push([t.credential, `${at}/expect/tokenRequests${Array.isArray(exp) ? `/${i}` : ''}/credential`])
  }
  for (const [i, f] of (tc.tokenFailures ?? []).entries()) if (f.credential !== undefined) refs.push([f.credential, `${at}/tokenFailures/${i}/credential`])
  return refs
}

/**
 * Names of OAuth credentials the channel does not have, in the file's `server.clients` and in the
 * case (its `server.clients`, `expect.tokenRequests[].credential`, `tokenFailures[].credential`):
 * a registration would be ignored, silently dropping what it meant to restrict (scopes, algorithms,
 * a secret); an expectation would count no request, a fault would hit none.
 */
function unknownClientProblems(file: TestFile, tc: TestCase, known: readonly string[]): ConfigProblem[] {
  const at = `/cases/${file.cases.indexOf(tc)}`
  const entries: Array<[string, string]> = [
    ...Object.keys(file.server.clients).map((n): [string, string] => [n, `/server/clients/${escapePointer(n)}`]),
    ...Object.keys(tc.server?.clients ?? {}).map((n): [string, string] => [n, `${at}/server/clients/${escapePointer(n)}`]),
    ...credentialReferences(tc, at),
  ]
  return entries.filter(([n]) => !known.includes(n)).map(([n, pointer]) => ({ file: file.displayName, pointer, message: noCredential(n, known) }))
}

/** The channel's destinations as unknownMllpDestinationProblems needs them: name and type. */
const destinationEntries = (channel: LoadedChannel) => channel.destinations.map((d) => ({ name: d.name, type: d.definition.type }))

/**
 * `mllp.destinations` entries (the file's and the case's) that name no `mllp` destination of the
 * channel: ignored, the destination would answer AA where the case scripted AE, AR or a fault.
 */
function unknownMllpProblems(file: TestFile, tc: TestCase, channel: LoadedChannel): ConfigProblem[] {
  const scripts = [{ script: file.mllp, pointer: '/mllp' }, { script: tc.mllp, pointer: `/cases/${file.cases.indexOf(tc)}/mllp` }]
  return unknownMllpDestinationProblems(scripts, destinationEntries(channel), file.displayName)
}

/**
 * The `mllp.destinations` problems of a whole test file (its own entries and every case's), each
 * once, as unknownClientsOfFile gives those of `server.clients`.
 */
export function unknownMllpDestinationsOfFile(file: TestFile, channel: LoadedChannel): ConfigProblem[] {
  const byPointer = new Map(file.cases.flatMap((tc) => unknownMllpProblems(file, tc, channel)).map((p) => [p.pointer, p]))
  return [...byPointer.values()]
}

/**
 * The credential names of a whole test file that are none of `known` (the names of its channel's
 * OAuth credentials; see unknownClientProblems: its `server.clients` and every case's,
 * `expect.tokenRequests` and `tokenFailures`), each once. By name, so that it serves a channel
 * known only by its JSON too.
 */
export function unknownCredentialNamesOfFile(file: TestFile, known: readonly string[]): ConfigProblem[] {
  const byPointer = new Map(file.cases.flatMap((tc) => unknownClientProblems(file, tc, known)).map((p) => [p.pointer, p]))
  return [...byPointer.values()]
}

/** The names of a channel's OAuth credentials (a static token has no client to register). */
const oauthCredentialNames = (channel: LoadedChannel): string[] =>
  Object.entries(channel.credentials).filter(([, c]) => (c as Record<string, unknown>).grant !== 'static').map(([name]) => name)

/**
 * The unknown credential names of a whole test file against its loaded channel (see
 * unknownCredentialNamesOfFile): what `weir validate` reports of a test file before any case runs,
 * as `weir test` would.
 */
export function unknownClientsOfFile(file: TestFile, channel: LoadedChannel): ConfigProblem[] {
  return unknownCredentialNamesOfFile(file, oauthCredentialNames(channel))
}

/**
 * The channel with a credential's key rotated as `weir keys rotate` does: a new key (written 0600
 * under `keyDir`) signing from `nowMs` + delaySec. A copy; the test file's channel is untouched.
 */
async function rotatedChannel(raw: Record<string, any>, step: RotateKeysStep, nowMs: number, keyDir: string): Promise<Record<string, any>> {
  const ch = structuredClone(raw)
  const credential = ch.credentials?.[step.credential] as Record<string, unknown> | undefined
  if (!credential) throw new errorCodes.ERR_USAGE(`rotateKeys: the channel has no credential "${step.credential}"`)
  const r = await rotateKey(credential, `rotateKeys credential "${step.credential}"`, {
    signFrom: new Date(nowMs + step.delaySec * 1000).toISOString(),
    ...(step.assertion ? { which: 'assertion' as const } : {}), ...(step.alg ? { alg: step.alg } : {}),
    keyFile: (kid) => {
      const path = join(keyDir, `${kid}.private.pem`)
      return { path, ref: path }
    },
  })
  await mkdir(keyDir, { recursive: true })
  await writeFile(r.keyFile, r.privatePem, { mode: 0o600 })
  return ch
}

interface Running {
  handle: ChannelHandle
  store: MessageStore
  providers: Map<string, TokenProvider>
  http: HttpClient
  /** Set by the first stopChannelOf. */
  stopped?: Promise<void>
}

/**
 * Waits until the source has stored `n` messages (or recognised them as duplicates), at most
 * IDLE_TIMEOUT_MS: undefined once it has, else why not (`giveUp`'s reason as soon as it has one,
 * or that the time ran out).
 */
async function receivedAtLeast(r: Running, n: number, giveUp?: () => string | undefined): Promise<string | undefined> {
  const deadline = Date.now() + IDLE_TIMEOUT_MS
  for (;;) {
    if (r.handle.counters().received + r.handle.counters().duplicates >= n) return undefined
    const reason = giveUp?.()
    if (reason) return reason
    if (Date.now() >= deadline) return `not within ${IDLE_TIMEOUT_MS / 1000} s`
    await new Promise((res) => setTimeout(res, 20))
  }
}

/** A file a send step dropped into a file-poller's directory: where, and how to name it in a failure. */
interface PolledFile { path: string; shown: string; pattern: string }

/** The file-poller's reason for moving `file` to its error directory, from the case's log, once it has. */
function rejectionOf(logLines: string[], file: string): string | undefined {
  for (const line of logLines) {
    if (!line.includes('"file rejected"')) continue
    try {
      const l = JSON.parse(line) as { msg?: string; file?: string; reason?: string }
      if (l.msg === 'file rejected' && l.file === file) return `it moved the file to its error directory: ${l.reason ?? 'no reason logged'}`
    } catch { /* not a JSON line */ }
  }
  return undefined
}

/** The first failure of `results` (undefined where a part succeeded), thrown. */
function throwFirst(results: unknown[]): void {
  const failed = results.find((e) => e !== undefined)
  if (failed !== undefined) throw failed
}

/**
 * Stops the channel as `weir run` stops it (the source stops, its filters' and destinations'
 * `close()` run, their log lines and files written), then closes its credentials and HTTP client;
 * the store stays open for the checks. Once: a second call returns the first stop.
 */
function stopChannelOf(r: Running, timeoutMs: number): Promise<void> {
  return (r.stopped ??= (async () => {
    const results = [await r.handle.stop({ timeoutMs }).then(() => undefined, (e: unknown) => e)]
    results.push(...(await Promise.allSettled([...[...r.providers.values()].map((p) => p.close()), r.http.close()])).map((x) => (x.status === 'rejected' ? x.reason : undefined)))
    throwFirst(results)
  })())
}

/** Stops the channel, then closes what it ran on; every part is closed even when one fails (the first failure is thrown). */
async function stopRunning(r: Running, timeoutMs: number): Promise<void> {
  const results = [await stopChannelOf(r, timeoutMs).then(() => undefined, (e: unknown) => e)]
  results.push(await r.store.close().then(() => undefined, (e: unknown) => e))
  throwFirst(results)
}

/** True when `name` resolved against `dir` is a file directly inside it. */
const isPlainFileIn = (dir: string, name: string) => dirname(resolve(dir, name)) === resolve(dir)

/**
 * Sends one `send` step to the channel's source: an HTTP POST to an http-listener, a file dropped
 * into a file-poller's directory, or an MLLP frame. `stored` when the source took the message;
 * `waitUntilStored` when the source answered before storing it (the case waits until it has).
 */
async function sendStep(send: SendStep | MllpSendStep, at: string, ctx: { r: Running; channel: LoadedChannel; work: string; inDir: string; pollerDir: string; sender: ReturnType<typeof mllpSender>; failures: string[]; file: string; pointer: string }): Promise<{ stored: boolean; waitUntilStored: boolean; polled?: PolledFile }> {
  const { channel, failures } = ctx
  const source = ctx.r.handle.source
  const type = channel.source.definition.type
  if ('mllp' in send) {
    if (type !== 'mllp-listener') {
      failures.push(`${at}: "mllp" is sent to an mllp-listener source, not a ${type}`)
      return { stored: false, waitUntilStored: false }
    }
    const r = await ctx.sender.send({ port: source.address!()!.port, encoding: mllpEncodingOf(channel.source.config) }, send, at)
    failures.push(...r.failures)
    return { stored: r.stored !== false, waitUntilStored: r.stored === undefined }
  }
  const isText = typeof send.body === 'string'
  const body = isText ? (send.body as string) : JSON.stringify(send.body)
  if (type === 'http-listener') {
    const path = String(channel.source.config.path ?? '/')
    const res = await fetch(`http://127.0.0.1:${source.address?.()?.port}${path}`, { method: 'POST', headers: { 'content-type': send.contentType ?? (isText ? 'text/plain' : 'application/json'), ...send.headers }, body })
    await res.arrayBuffer()
    const want = send.expectStatus ?? 202
    if (res.status !== want) failures.push(`${at}: the http-listener answered ${res.status}, expected ${want}`)
    return { stored: res.status === 202, waitUntilStored: false }
  }
  if (type === 'file-poller') {
    const name = send.fileName ?? `message-${at.replace(/\D/g, '')}.json`
    // The schema allows plain names only; a name that still leads out of the case's directories is refused, not written.
    if (!isPlainFileIn(ctx.work, name) || !isPlainFileIn(ctx.inDir, name)) {
      failures.push(formatProblem({ file: ctx.file, pointer: `${ctx.pointer}/fileName`, message: `"${name}" would be written outside the case's work directory: it ${PLAIN_FILE_NAME}` }))
      return { stored: false, waitUntilStored: false }
    }
    // The directory is the case's own (the harness sets it), so only the name can keep the poller from taking the file.
    const pattern = String(channel.source.config.pattern ?? '*')
    const shown = `${ctx.pollerDir.replace(/[\\/]+$/, '')}/${name}`
    if (name.startsWith('.') || !globToRegExp(pattern).test(name)) {
      const why = name.startsWith('.') ? 'names starting with "." are never picked up' : `the name does not match its pattern ${JSON.stringify(pattern)}`
      failures.push(`${at}: the file-poller will not take ${shown}: ${why}; give the step a "fileName" that does`)
      return { stored: false, waitUntilStored: false }
    }
    await writeFile(join(ctx.work, name), body)
    await rename(join(ctx.work, name), join(ctx.inDir, name))
    return { stored: true, waitUntilStored: true, polled: { path: join(ctx.inDir, name), shown, pattern } }
  }
  failures.push(`${at}: "send" is not supported for a ${type} source; use "tick"`)
  return { stored: false, waitUntilStored: false }
}

/** One case while it runs: its clock, directories, log, embedded servers, and the channel object as its steps changed it. */
interface CaseRun {
  readonly file: TestFile
  readonly tc: TestCase
  readonly failures: string[]
  /** Added to the real time by `advanceSec` steps. */
  readonly clock: { offset: number }
  readonly now: () => number
  readonly work: string
  readonly dirs: { in: string; out: string; data: string }
  readonly logLines: string[]
  readonly log: Logger
  readonly as: AuthorizationServer
  readonly api: EmbeddedApi
  readonly regs: Record<string, ClientRegistration>
  readonly jwks: JwksServer | undefined
  /** The embedded MLLP receiver of each `mllp` destination, by destination name (none when the channel has no such destination). */
  readonly mllp: ReadonlyMap<string, MllpReceiver>
  readonly sender: ReturnType<typeof mllpSender>
  /** Origins of the channel's URLs left as written (`keepUrls`): its requests there never reach the embedded API. */
  readonly keptUrls: Set<string>
  readonly env: NodeJS.ProcessEnv
  /** The channel file's object, with the keys of earlier `rotateKeys` steps. */
  raw: Record<string, any>
  running: Running | undefined
  /** Messages the source has taken so far. */
  sent: number
}

/** The case's channel as loaded, the instrumented copy that runs in the sandbox, and what the checks need. */
interface CaseChannel {
  readonly channel: LoadedChannel
  readonly instrumented: LoadedChannel
  readonly recording: Recording
  readonly sandbox: ChannelSandbox
  readonly clientIds: Record<string, string>
  /** The authorization server's tenant of each OAuth credential, by credential name (see tenantsOf). */
  readonly tenants: Record<string, string>
  /** What token providers are made from: reloaded after a key rotation. */
  credentials: LoadedChannel['credentials']
}

/** The case's work directories, log capture and embedded servers (a JWKS server and MLLP receivers only when the case needs them). */
async function openCase(file: TestFile, rawChannel: Record<string, any>, tc: TestCase): Promise<CaseRun> {
  const clock = { offset: 0 }
  const now = () => Date.now() + clock.offset
  const work = await mkdtemp(join(tmpdir(), 'weir-test-'))
  const dirs = { in: join(work, 'in'), out: join(work, 'out'), data: join(work, 'data') }
  await Promise.all(Object.values(dirs).map((d) => mkdir(d, { recursive: true })))
  const logLines: string[] = []
  const log = createLogger({ pretty: false, level: 'debug', destination: new Writable({ write(c, _e, cb) { logLines.push(String(c)); cb() } }) })
  const as = await startAuthorizationServer({ tokenLifetimeSec: file.server.tokenLifetimeSec, now })
  const api = await startEmbeddedApi({ verifyToken: verifiedBy(as) })
  api.setRoutes(withApiUrl(tc.api ?? file.api, api.url))
  const regs = registrations(file, tc)
  const jwks = Object.values(regs).some((r) => r.jwksUri) ? await startJwksServer({ host: '127.0.0.1', port: 0, documents: new Map() }) : undefined
  // A receiver per mllp destination, reading (and answering) in that destination's encoding.
  const mllp = await startMllpReceivers(destinationsOf(rawChannel), tc.mllp ?? file.mllp)
  return {
    file, tc, failures: [], clock, now, work, dirs, logLines, log, as, api, regs, jwks, mllp,
    sender: mllpSender(), keptUrls: new Set(), env: { ...process.env, ...file.env }, raw: rawChannel, running: undefined, sent: 0,
  }
}

/** Where the case points the channel's URLs: the embedded servers, or as written for the origins the test file keeps. */
const urlRewriteOf = (c: CaseRun): UrlRewrite => ({ api: c.api.url, as: c.as, keep: keptOrigins(c.file), kept: c.keptUrls })

/** The origins of the case's embedded HTTP servers. */
const ownOrigins = (c: CaseRun): Set<string> => new Set([c.api.url, c.as.issuer, c.as.tokenUrl, c.as.jwksUrl, ...(c.jwks ? [c.jwks.url] : [])].map((u) => new URL(u).origin))

const loadCaseChannel = (c: CaseRun) => loadChannelObject(rewriteChannel(c.raw, urlRewriteOf(c), c.dirs, c.mllp), { file: c.file.channel, env: c.env })

const publishKeys = async (c: CaseRun, ch: LoadedChannel) => c.jwks?.setDocuments(await jwksDocuments(channelSigningKeys([ch]), 'per-credential'))

/** Loads the case's channel into its sandbox and prepares the authorization server for its credentials. */
async function prepareChannel(c: CaseRun): Promise<CaseChannel> {
  const channel = await loadCaseChannel(c)
  await publishKeys(c, channel)
  const sandbox = await sandboxChannelDir(channel.dir, join(c.work, 'channel'))
  const { channel: instrumented, recording } = instrumentChannel(channel, { channelDir: sandbox.dir, dataDir: c.dirs.data })
  const resolved = resolveCredentials(channel)
  const unknown = [...unknownClientProblems(c.file, c.tc, Object.keys(resolved)), ...unknownMllpProblems(c.file, c.tc, channel)]
  if (unknown.length) throw new ConfigError(unknown)
  const clientIds = Object.fromEntries(Object.entries(resolved).map(([name, r]) => [name, clientIdOf(r)]))
  const tenants = tenantsOf(c.raw)
  await registerClients(channel, resolved, tenants, c.regs, c.as, c.api, originalTokenUrls(c.raw), c.jwks)
  const imported = Object.entries(c.regs).filter(([, r]) => r.importRefreshToken).map(([name]) => name)
  await importRefreshTokens(c.as, channel, imported, clientIds, tenants, join(c.dirs.data, 'oauth'))
  for (const f of c.tc.tokenFailures ?? []) {
    // A fault of one credential hits the requests of its client at its tenant: its own (and those of a credential the provider could not tell from it).
    const whose = f.credential !== undefined ? { tenant: tenants[f.credential]!, clientId: clientIds[f.credential]! } : {}
    c.as.setFailure({ status: f.status, count: f.count, ...whose, ...(f.retryAfter !== undefined ? { retryAfter: f.retryAfter } : {}), ...(f.delayMs ? { delayMs: f.delayMs } : {}), ...(f.body ? { body: f.body } : {}) })
  }
  return { channel, instrumented, recording, sandbox, clientIds, tenants, credentials: channel.credentials }
}

/** Starts the channel on a fresh store, token cache and HTTP client, as an engine (re)start would. */
async function startRunning(c: CaseRun, cc: CaseChannel): Promise<Running> {
  const { log, dirs, now } = c
  const store = openSqliteStore({ dataDir: dirs.data })
  const providers = new Map<string, TokenProvider>()
  // A fresh cache per start: a restarted engine keeps only what its stores persisted.
  const cache = new TokenCache()
  const http = redirectedHttpClient(createHttpClient({ log }), urlRewriteOf(c), ownOrigins(c))
  const handle = await startChannel(cc.instrumented, {
    store, log, dataDir: dirs.data, http,
    credential: (name) => {
      let p = providers.get(name)
      if (!p) providers.set(name, (p = createTokenProvider(name, cc.credentials[name] as never, { log, dataDir: dirs.data, now, cache })))
      return p
    },
  })
  return { handle, store, providers, http }
}

async function restart(c: CaseRun, cc: CaseChannel, r: Running): Promise<void> {
  await stopRunning(r, STOP_TIMEOUT_MS)
  c.running = await startRunning(c, cc)
}

/** Rotates a credential's key in the case's channel object and publishes the new keys; the channel must restart to use them. */
async function rotateKeys(c: CaseRun, cc: CaseChannel, step: RotateKeysStep): Promise<void> {
  c.raw = await rotatedChannel(c.raw, step, c.now(), join(c.work, 'keys'))
  const reloaded = await loadCaseChannel(c)
  cc.credentials = reloaded.credentials
  await publishKeys(c, reloaded)
}

/** Runs step `i` of the case, then waits until the channel is idle or waits on an outage (see settled). */
async function runStep(c: CaseRun, cc: CaseChannel, step: Step, i: number): Promise<void> {
  const r: Running = c.running!
  const source = r.handle.source
  if ('send' in step) {
    const pointer = `/cases/${c.file.cases.indexOf(c.tc)}/steps/${i}/send`
    const pollerDir = String((c.raw.source as { config?: { directory?: unknown } } | undefined)?.config?.directory ?? 'in')
    const sentNow = await sendStep(step.send, `step ${i + 1}`, { r, channel: cc.channel, work: c.work, inDir: c.dirs.in, pollerDir, sender: c.sender, failures: c.failures, file: c.file.displayName, pointer })
    if (sentNow.stored) c.sent++
    const polled = sentNow.polled
    if (sentNow.waitUntilStored) {
      const missing = await receivedAtLeast(r, c.sent, polled && (() => rejectionOf(c.logLines, polled.path)))
      if (missing && polled) {
        c.failures.push(`step ${i + 1}: the file-poller did not take ${polled.shown} (pattern ${JSON.stringify(polled.pattern)}): ${missing}`)
        c.sent--
      }
    }
  } else if ('tick' in step) {
    if (!source.tick) c.failures.push(`step ${i + 1}: the ${cc.channel.source.definition.type} source cannot be ticked`)
    else await source.tick()
  } else if ('advanceSec' in step) {
    c.clock.offset += step.advanceSec * 1000
  } else if ('revokeTokens' in step) {
    c.as.revokeAll()
  } else if ('restart' in step) {
    c.sender.close()
    await restart(c, cc, r)
  } else if ('rotateKeys' in step) {
    await rotateKeys(c, cc, step.rotateKeys)
    await restart(c, cc, r)
  } else if ('waitMs' in step) {
    await new Promise((res) => setTimeout(res, step.waitMs))
  }
  if (!(await settled(c.running!, cc.channel.name))) c.failures.push(`step ${i + 1}: the channel did not become idle within ${IDLE_TIMEOUT_MS / 1000} s`)
}

/** How long the channel must stay waiting on an outage, unchanged, before a step counts it as done. */
const OUTAGE_SETTLE_MS = 300
/** A retry due sooner than this is a backoff the step waits out (so its outcome does not depend on the jitter). */
const SOON_MS = 2000

const unfinished = (status: MessageStatus) => status === 'queued' || status === 'in-flight' || status === 'retrying'

/**
 * The state of the channel's unfinished work (counters, messages, deliveries) when all of it waits
 * on an outage, else undefined: the channel is `failing` (a credential fails fast, a destination's
 * breaker is open) and every delivery that failed waits for its next attempt, none mid-attempt and
 * none due within SOON_MS (unless overdue: held by the open breaker). Messages with no failed
 * delivery wait behind those (their order key, the open breaker).
 */
async function outageSnapshot(r: Running, channel: string, now: number): Promise<string | undefined> {
  if (r.handle.status() !== 'failing') return undefined
  const counters = r.handle.counters()
  if (counters.retrying === 0) return undefined
  const waiting = (await r.store.list({ channel, order: 'asc', limit: 10_000 })).filter((m) => unfinished(m.status))
  const rows: string[] = []
  let retrying = 0
  for (const m of waiting) {
    for (const d of (await r.store.get(m.id))?.deliveries ?? []) {
      if (d.status === 'retrying') retrying++
      if (d.status === 'retrying' && d.nextAttemptAt !== undefined && d.nextAttemptAt > now && d.nextAttemptAt <= now + SOON_MS) return undefined
      rows.push(`${m.id} ${d.destination} ${d.part} ${d.status} ${d.attempts}`)
    }
  }
  return retrying === counters.retrying ? JSON.stringify({ counters, messages: waiting.map((m) => `${m.id} ${m.status}`), rows }) : undefined
}

/**
 * The deliveries waiting for their next attempt as the steps end, by message id (`destination part`):
 * stopping the channel at the end of the case puts them back in the queue.
 */
async function retryingDeliveries(r: Running, channel: string): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>()
  for (const m of await r.store.list({ channel, order: 'asc', limit: 10_000 })) {
    if (!unfinished(m.status)) continue
    const keys = ((await r.store.get(m.id))?.deliveries ?? []).filter((d) => d.status === 'retrying').map((d) => `${d.destination} ${d.part}`)
    if (keys.length) out.set(m.id, new Set(keys))
  }
  return out
}

/**
 * Waits until the step's work is done: the channel is idle, or all its unfinished work waits on an
 * outage (see outageSnapshot), unchanged for OUTAGE_SETTLE_MS. A credential the token endpoint
 * refuses is such an outage: its messages stay queued until it is fixed, and a case expects them
 * `retrying`. False when neither happened within IDLE_TIMEOUT_MS.
 */
async function settled(r: Running, channel: string): Promise<boolean> {
  const deadline = Date.now() + IDLE_TIMEOUT_MS
  let seen: { at: number; snapshot: string } | undefined
  for (;;) {
    if (await r.handle.whenIdle({ timeoutMs: 50 }).then(() => true, () => false)) return true
    const snapshot = await outageSnapshot(r, channel, Date.now()) // the runtime's clock: the case's moves only its token clients
    if (snapshot === undefined || snapshot !== seen?.snapshot) seen = snapshot === undefined ? undefined : { at: Date.now(), snapshot }
    else if (Date.now() - seen.at >= OUTAGE_SETTLE_MS) return true
    if (Date.now() >= deadline) return false
  }
}

/** Why the token endpoint refused requests (the first three): the most useful lines of a failing case. */
function tokenRefusals(as: AuthorizationServer): string[] {
  const refused = as.requests.filter((q) => q.status >= 400 && q.error)
  return refused.slice(0, 3).map((q) => `token endpoint refused ${q.clientId ?? 'a client'}: ${q.error}${q.error_description ? `: ${q.error_description}` : ''}`)
}

/** Checks the case's expectations once its steps have run and the channel has stopped; with `verbose`, also returns each message's path. */
async function checkCase(c: CaseRun, cc: CaseChannel, retrying: Map<string, Set<string>>, verbose: boolean): Promise<string[] | undefined> {
  const { tc, failures } = c
  const running = c.running!
  failures.push(...(await check(tc.expect, { api: c.api, as: c.as, store: running.store, channel: cc.channel, logLines: c.logLines, out: c.dirs.out, sandbox: cc.sandbox, recording: cc.recording, clientIds: cc.clientIds, tenants: cc.tenants, retrying })))
  if (tc.expect.mllp) failures.push(...(c.mllp.size ? checkMllp(tc.expect.mllp, c.mllp) : ['expect.mllp: the channel has no mllp destination']))
  const trace = verbose ? formatMessagePaths(await messagePaths(running.store, cc.channel, cc.recording, retrying), cc.channel).map(scrubSecrets) : undefined
  failures.push(...keptUrlHints(failures, c.keptUrls))
  if (failures.length) failures.push(...tokenRefusals(c.as))
  return trace
}

/** Stops the channel (unless the case got that far), closes its store and the case's servers, then removes its work directory. */
async function closeCase(c: CaseRun): Promise<void> {
  if (c.running) await stopRunning(c.running, 2000).catch(() => {})
  c.sender.close()
  await closeMllpReceivers(c.mllp)
  await c.api.close()
  await c.as.close()
  await c.jwks?.close()
  await rm(c.work, { recursive: true, force: true })
}

/** Runs one case on fresh embedded servers, in a sandbox of its own (data, input, output and channel directories). */
async function runCase(file: TestFile, rawChannel: Record<string, any>, tc: TestCase, verbose = false): Promise<{ failures: string[]; trace?: string[] }> {
  const c = await openCase(file, rawChannel, tc)
  let trace: string[] | undefined
  try {
    const cc = await prepareChannel(c)
    c.running = await startRunning(c, cc)
    for (const [i, step] of tc.steps.entries()) await runStep(c, cc, step, i)
    const retrying = await retryingDeliveries(c.running, cc.channel.name)
    // As the case ends, so the channel stops: what its components do in close() (a last log line,
    // a batch flushed to a file or an API) is there to be checked, as it is when `weir run` stops.
    await stopChannelOf(c.running, STOP_TIMEOUT_MS)
    trace = await checkCase(c, cc, retrying, verbose)
  } catch (e) {
    if (isWeirError(e) && e.code === 'ERR_CONFIG_INVALID') c.failures.push(...(e as ConfigError).problems.map(formatProblem))
    else c.failures.push(`harness error: ${isWeirError(e) ? `${e.code}: ` : ''}${(e as Error).message}`)
  } finally {
    await closeCase(c)
  }
  return { failures: c.failures.map(scrubSecrets), ...(trace ? { trace } : {}) }
}

/** The fields of `actual` that `expected` names (for a readable mismatch). */
const pick = (actual: Record<string, unknown>, expected: Record<string, unknown>) => Object.fromEntries(Object.keys(expected).map((k) => [k, actual[k]]))

interface CheckContext {
  api: EmbeddedApi; as: AuthorizationServer; store: MessageStore; channel: LoadedChannel; logLines: string[]; out: string; sandbox: ChannelSandbox; recording: Recording
  /** Each OAuth credential's client id and tenant, by credential name: a token request is a credential's when it came from that client to that tenant. */
  clientIds: Record<string, string>; tenants: Record<string, string>
  /** The deliveries that were waiting for their next attempt when the steps ended (see retryingDeliveries). */
  retrying: Map<string, Set<string>>
}

function checkRequests(exps: RequestExpectation[], reqs: RecordedRequest[]): string[] {
  const f: string[] = []
  for (const [i, e] of exps.entries()) {
    const matching = reqs.filter((r) =>
      (!e.method || r.method === e.method.toUpperCase()) &&
      (!e.path || r.path === e.path) &&
      Object.entries(e.query ?? {}).every(([k, re]) => r.query[k] !== undefined && new RegExp(re).test(r.query[k]!)) &&
      Object.entries(e.headers ?? {}).every(([k, re]) => r.headers[k.toLowerCase()] !== undefined && new RegExp(re).test(r.headers[k.toLowerCase()]!)) &&
      (e.json === undefined || containsSubset(r.json, e.json)))
    const ok = e.count === undefined ? matching.length > 0 : matching.length === e.count
    if (!ok) {
      const seen = reqs.slice(0, 5).map((r) => `${r.method} ${r.path} → ${r.status}${r.json !== undefined ? ` ${short(r.json)}` : ''}`).join('; ')
      f.push(`expect.requests[${i}]: ${e.count === undefined ? 'no' : `${matching.length} instead of ${e.count}`} matching request (${[e.method, e.path].filter(Boolean).join(' ')}${e.json !== undefined ? ` with ${short(e.json)}` : ''}); the API received ${reqs.length}${seen ? `: ${seen}` : ''}`)
    }
  }
  return f
}

async function checkMessages(exps: NonNullable<Expectation['messages']>, ctx: CheckContext): Promise<string[]> {
  const f: string[] = []
  const msgs = await ctx.store.list({ channel: ctx.channel.name, order: 'asc', limit: 10_000 })
  if (msgs.length !== exps.length) f.push(`expect.messages: ${msgs.length} messages stored, expected ${exps.length}`)
  for (const [i, e] of exps.entries()) {
    const m = msgs[i]
    if (!m) continue
    const detail = await ctx.store.get(m.id)
    const why = (d?: { lastError?: string; responseStatus?: number; responseExcerpt?: string }) => d ? [d.responseStatus && `HTTP ${d.responseStatus}`, d.lastError].filter(Boolean).join(': ') : m.error ?? ''
    // Status as the steps left it: the stop at the end of the case queued what was waiting for a retry.
    const waiting = unfinished(m.status) ? ctx.retrying.get(m.id) : undefined
    const status = waiting ? 'retrying' : m.status
    const statusOf = (d: { destination: string; part: number; status: string }) => waiting?.has(`${d.destination} ${d.part}`) ? 'retrying' : d.status
    const error = m.error ?? ((detail?.deliveries ?? []).filter((d) => statusOf(d) === 'retrying').map((d) => `${d.destination}: ${d.lastError ?? ''}`).join(' | ') || undefined)
    if (e.status && status !== e.status) f.push(`message ${i + 1}: status ${status}, expected ${e.status}${error ? ` (${error})` : ''}`)
    for (const [dest, st] of Object.entries(e.destinations ?? {})) {
      // One row per part of a split message: every part must have the status.
      const rows = (detail?.deliveries ?? []).filter((x) => x.destination === dest)
      if (!rows.length) f.push(`message ${i + 1}: no delivery to "${dest}" recorded${m.error ? ` (${m.error})` : ''}`)
      for (const d of rows.sort((a, b) => a.part - b.part)) {
        const part = rows.some((x) => x.part > 0) ? ` part ${d.part}` : '' // numbered as --verbose numbers them
        if (statusOf(d) !== st) f.push(`message ${i + 1}${part}: ${statusOf(d)} at "${dest}", expected ${st}${why(d) ? ` (${why(d)})` : ''}`)
      }
    }
    if (e.filteredBy !== undefined && !new RegExp(e.filteredBy).test(m.filteredBy ?? '')) {
      f.push(`message ${i + 1}: ${m.filteredBy !== undefined ? `filtered by ${m.filteredBy}` : `not filtered (${status})`}, expected filtered by /${e.filteredBy}/`)
    }
    if (e.error !== undefined) {
      const texts = [m.error ?? '', ...(detail?.deliveries ?? []).map((d) => d.lastError ?? '')]
      if (!texts.some((t) => new RegExp(e.error!).test(t))) f.push(`message ${i + 1}: no error matching /${e.error}/ (errors: ${texts.filter(Boolean).join(' | ') || 'none'})`)
    }
  }
  return f
}

/** One tokenRequests expectation (`at` names it in failures) against the token requests the authorization server recorded. */
function checkTokenRequest(t: TokenExpectation, at: string, ctx: CheckContext): string[] {
  const f: string[] = []
  let all = ctx.as.requests
  if (t.credential !== undefined) {
    const id = ctx.clientIds[t.credential]
    if (id === undefined) return [`${at}.credential: the channel has no OAuth credential "${t.credential}"`]
    const tenant = ctx.tenants[t.credential]
    all = all.filter((r) => r.clientId === id && r.tenant === tenant)
  }
  const refused = all.filter((r) => r.status >= 400)
  if (t.count !== undefined && all.length !== t.count) f.push(`${at}.count: ${all.length} token requests, expected ${t.count}`)
  if (t.errors !== undefined && refused.length !== t.errors) f.push(`${at}.errors: ${refused.length} refused, expected ${t.errors}`)
  if (t.error !== undefined && !refused.some((r) => new RegExp(t.error!).test(`${r.error ?? ''}: ${r.error_description ?? ''}`))) {
    f.push(`${at}.error: no refusal matches /${t.error}/ (refusals: ${refused.map((r) => `${r.status} ${r.error ?? ''}${r.error_description ? `: ${r.error_description}` : ''}`).join(' | ') || 'none'})`)
  }
  // A property every request must have proves nothing when there were none: say so, unless the count was given.
  const accepted = all.filter((x) => x.status < 400)
  const whose = t.credential !== undefined ? ` for "${t.credential}"` : ''
  if (t.count === undefined) {
    if (all.length === 0) for (const k of ['grant', 'assertion'] as const) if (t[k]) f.push(`${at}.${k}: no token request${whose} was made, so there is none to check (give "count": 0 to expect none)`)
    if (accepted.length === 0) for (const k of ['authMethod', 'scope'] as const) if (t[k]) f.push(`${at}.${k}: no token request${whose} was accepted, so there is none to check${all.length ? ` (${all.length} refused)` : ' (give "count": 0 to expect none)'}`)
  }
  if (t.grant) for (const r of all) if (r.grant !== t.grant && r.form.grant_type !== t.grant) f.push(`${at}.grant: a request used ${r.form.grant_type ?? r.grant}, expected ${t.grant}`)
  if (t.authMethod) for (const r of accepted) if (r.authMethod !== t.authMethod) f.push(`${at}.authMethod: a request authenticated with ${r.authMethod ?? 'nothing'}, expected ${t.authMethod}`)
  if (t.scope) for (const r of accepted) {
    const s = String(r.form.scope ?? r.assertion?.claims.scope ?? '')
    if (!new RegExp(t.scope).test(s)) f.push(`${at}.scope: a request asked for scope "${s}", expected /${t.scope}/`)
  }
  if (t.assertion) for (const r of all) {
    if (!r.assertion) { f.push(`${at}.assertion: a request carried no assertion`); continue }
    if (t.assertion.header && !containsSubset(r.assertion.header, t.assertion.header)) f.push(`${at}.assertion.header: ${short(pick(r.assertion.header, t.assertion.header))}, expected ${short(t.assertion.header)}`)
    if (t.assertion.claims && !containsSubset(r.assertion.claims, t.assertion.claims)) f.push(`${at}.assertion.claims: ${short(pick(r.assertion.claims, t.assertion.claims))}, expected ${short(t.assertion.claims)}`)
  }
  if (t.spentRefreshTokens !== undefined && ctx.as.spentRefreshTokenUses() !== t.spentRefreshTokens) f.push(`${at}.spentRefreshTokens: a spent refresh token was presented ${ctx.as.spentRefreshTokenUses()} time(s), expected ${t.spentRefreshTokens}`)
  return f
}

function checkTokenRequests(exp: Expectation['tokenRequests'], ctx: CheckContext): string[] {
  const tokenExps = exp === undefined ? [] : Array.isArray(exp) ? exp : [exp]
  return tokenExps.flatMap((t, i) => checkTokenRequest(t, Array.isArray(exp) ? `expect.tokenRequests[${i}]` : 'expect.tokenRequests', ctx))
}

/** What the file destination wrote, then what any component wrote next to (the copy of) the channel. */
async function checkFiles(exps: NonNullable<Expectation['files']>, ctx: CheckContext): Promise<string[]> {
  const f: string[] = []
  const paths = new Map<string, string>()
  for (const n of await listFiles(ctx.out)) paths.set(n, join(ctx.out, n))
  for (const n of await ctx.sandbox.written()) if (!paths.has(n)) paths.set(n, join(ctx.sandbox.dir, n))
  const names = [...paths.keys()]
  for (const [i, e] of exps.entries()) {
    const re = new RegExp(e.path)
    const matching = names.filter((n) => re.test(n))
    let hits = matching
    if (e.json !== undefined) {
      hits = []
      for (const n of matching) {
        try { if (containsSubset(JSON.parse(await readFile(paths.get(n)!, 'utf8')), e.json)) hits.push(n) } catch { /* not JSON */ }
      }
    }
    const ok = e.count === undefined ? hits.length > 0 : hits.length === e.count
    if (!ok) f.push(`expect.files[${i}]: ${hits.length} file(s) match /${e.path}/${e.json !== undefined ? ` with ${short(e.json)}` : ''}${e.count !== undefined ? `, expected ${e.count}` : ''}; written: ${names.slice(0, 5).join(', ') || 'none'}`)
  }
  return f
}

/** The failures of a case's expectations, kind by kind, in the order the test file format lists them. */
async function check(exp: Expectation, ctx: CheckContext): Promise<string[]> {
  const f: string[] = []
  const reqs = ctx.api.requests
  f.push(...checkRequests(exp.requests ?? [], reqs))
  if (exp.requestCount !== undefined && reqs.length !== exp.requestCount) f.push(`expect.requestCount: the API received ${reqs.length} requests, expected ${exp.requestCount}`)
  if (exp.messages) f.push(...(await checkMessages(exp.messages, ctx)))
  f.push(...checkTokenRequests(exp.tokenRequests, ctx))
  if (exp.jwksFetches !== undefined && ctx.as.jwksFetches() !== exp.jwksFetches) f.push(`expect.jwksFetches: the authorization server fetched JWK Sets ${ctx.as.jwksFetches()} time(s), expected ${exp.jwksFetches}`)
  for (const re of exp.logs ?? []) if (!ctx.logLines.some((l) => new RegExp(re).test(l))) f.push(`expect.logs: no log line matches /${re}/`)
  if (exp.deliveries) f.push(...checkDeliveries(exp.deliveries, ctx.recording))
  if (exp.files) f.push(...(await checkFiles(exp.files, ctx)))
  return f
}

/**
 * Runs a channel test file: each case against a fresh embedded authorization server (clients
 * registered from the channel's own credentials and checked strictly) and embedded API, in a
 * sandbox of its own (every component's `ctx.dataDir` and `ctx.channelDir` inside a temporary
 * directory). With `verbose`, each case result carries the path of every message (`trace`).
 *
 * @example
 * const result = await runChannelTest('channels/epic-adt.test.json')
 * expect(result.cases.every((c) => c.passed)).toBe(true)
 */
export async function runChannelTest(path: string, options: { onCase?: (c: CaseResult) => void; verbose?: boolean } = {}): Promise<TestFileResult> {
  const t0 = Date.now()
  const file = await loadTestFile(path)
  let raw: Record<string, any>
  try {
    raw = parseJsonWithLocation(await readFile(file.channel, 'utf8'), displayPath(file.channel)) as Record<string, any>
    // The channel as written, as `weir validate` and `weir run` check it: the cases run a rewritten
    // copy (ports, hosts, directories, endpoints replaced), which would hide what they refuse.
    await loadChannel(file.channel, { env: { ...process.env, ...file.env } })
    raw = await inlineCredentialsFile(raw, file.channel)
  } catch (e) {
    const reason = isWeirError(e) && e.code === 'ERR_CONFIG_INVALID' ? (e as ConfigError).problems.map(formatProblem).join('; ')
      : `cannot read channel ${displayPath(file.channel)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`
    const cases = file.cases.map((c) => ({ name: c.name, passed: false, failures: [reason], durationMs: 0 }))
    cases.forEach((c) => options.onCase?.(c))
    return { file: file.displayName, channel: file.channel, cases, durationMs: Date.now() - t0 }
  }
  const cases: CaseResult[] = []
  for (const tc of file.cases) {
    const c0 = Date.now()
    const { failures, trace } = await runCase(file, raw, tc, options.verbose)
    const result: CaseResult = { name: tc.name, passed: failures.length === 0, failures, durationMs: Date.now() - c0, ...(trace ? { trace } : {}) }
    cases.push(result)
    options.onCase?.(result)
  }
  return { file: file.displayName, channel: file.channel, cases, durationMs: Date.now() - t0 }
}
