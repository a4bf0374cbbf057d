import { resolve } from 'node:path'
import { Writable } from 'node:stream'
import { dataDirOf, parseFlags, type CommandIO } from '../cli-io.ts'
import { loadChannel as defaultLoadChannel } from '../load.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { ConfigError, formatProblem, isWeirError, errorCodes } from '../../shared/errors.ts'
import type { HttpClient } from '../../shared/http/types.ts'
import { createLogger, type Logger } from '../../shared/log/index.ts'
import type { TokenProvider } from '../../shared/oauth/types.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { createTokenProvider } from '../../shared/oauth/index.ts'
import { startChannel, type ChannelCounters, type ChannelHandle } from '../runtime/index.ts'
import { ALERTS_CHANNEL_PREFIX, composeObservers, createAlerts, loadAlerts, mergeAlerts, type LoadedAlerts } from '../alerts/index.ts'
import { clusterTokenState, missingClusterKey } from '../../shared/store/postgres/oauth-state.ts'
import { openStoreFor, storeOptions, storeUrlOf, storeUsage } from '../store.ts'
import type { StoreError } from '../../shared/store/errors.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import { contentWarnings } from './validate.ts'
import { wrongCommandHint } from './file-kind.ts'
import { alertsFileDefinitions, channelDefinitions } from '../definition-fingerprint.ts'
import { startRetention } from '../retention.ts'
import { adminOptions, adminUsage, openStoreWhenFree, startAdminFor, type AdminServer } from '../admin/index.ts'
import { startRehearsal, type ChannelLoader, type Rehearsal } from '../embedded/rehearsal.ts'
import { JWKS_SETS, channelSigningKeys, jwksDocuments, parseListenAddress, startJwksServer, type JwksServer, type JwksSets } from '../jwks-server.ts'

export const summary = 'run one or more channels until SIGINT/SIGTERM'
export const usage = `usage: weir run <channel.json...> [--data-dir D] [--allow-open-data-dir] [--encrypt-content] [--max-store-bytes N] [--sync full|normal] [--store postgres://…] [--jwks [HOST:]PORT [--jwks-sets per-credential|combined]]
                [--admin HOST:PORT|off] [--admin-config admin.json] [--standby] [--alerts FILE] [--embedded]

Runs every given channel in this process. Messages are stored in the data directory
(default ./data, or $WEIR_DATA_DIR) before the source acknowledges them, and delivered
at least once. On a terminal a live line per channel shows its counters; otherwise
JSON log lines go to stdout. SIGINT/SIGTERM stop the sources, let in-flight work finish
within each channel's shutdownTimeoutMs, and close the store.

  --data-dir D    where the message store lives (created mode 0700, its files 0600)
  --allow-open-data-dir   start although group or others may read the data directory
                  (refused otherwise; also $WEIR_DATA_DIR_ALLOW_OPEN_MODE=1)
  --encrypt-content   store every channel's message content encrypted, as options.encryptContent
                  does for one (key: $WEIR_SECRET_KEY or <data-dir>/oauth/secret.key)
  --max-store-bytes N   refuse messages (503, MLLP AE) while the store's data takes N bytes or
                  more (at least 1048576), for channels without their own options.maxStoreBytes
  --sync LEVEL    full (default: a commit survives power loss) or normal (survives a crash)
${storeUsage}
                  With --store the engines share their OAuth state (one token request per token
                  lifetime for the cluster), encrypted with $WEIR_SECRET_KEY: the same on every engine.
  --jwks ADDR     serve the public JWK Set of the channels' signing keys on this address
                  (host default 127.0.0.1), for providers that take a jwks_uri
  --jwks-sets S   per-credential (default: /jwks/<credential>.json) or combined (/jwks.json)
${adminUsage}
  --alerts FILE   send webhook notifications when a destination fails, a queue grows old, a
                  credential fails fast or a channel stops (see README "Alerts"); a channel's
                  own "alerts" block runs too, with or without this file
  --embedded      a rehearsal: run the channels against an embedded authorization server and API
                  on 127.0.0.1 (free ports), as weir test does, until stopped. Each credential's
                  token endpoint is pointed at the authorization server, its client registered there
                  with the channel's own secret or public key (a refresh_token credential gets a
                  refresh token issued there); every http destination's URL at the API (path and
                  query kept), which checks each token and answers 200 {}; every mllp destination
                  at an embedded receiver answering AA. In memory only: the channel files are not
                  changed. Where each was pointed is printed to stderr. The messages are stored in
                  the data directory as usual (refused while it holds unfinished messages of the
                  channels: they would go to the embedded API); the tokens in a temporary store.
                  Not with --store or --alerts

exit status: 0 after a clean stop, 1 when a channel stopped on error or would not start, or when (in a cluster) its lease
             ran out and the cluster refused it back (another engine runs a channel of it differently), 2 on bad usage`

export interface RunDeps {
  loadChannel?: (file: string, options: { env: NodeJS.ProcessEnv }) => Promise<LoadedChannel>
  /** Stops the run like SIGTERM does (tests). */
  signal?: AbortSignal
  http?: HttpClient
  credential?: (name: string, channel: LoadedChannel) => TokenProvider
  /** Called once every channel has started. */
  onStarted?: (handles: ChannelHandle[]) => void
  /** Live display refresh (ms); default 500. */
  refreshMs?: number
  /** Called with the JWK Set server once it listens (with --jwks). */
  onJwksServer?: (server: JwksServer) => void
  /** Called with the admin server once it listens. */
  onAdminServer?: (server: AdminServer) => void
}

function lineFor(name: string, c: ChannelCounters, width: number, state: string): string {
  const f = (label: string, n: number) => `${label} ${String(n).padStart(6)}`
  return [
    name.padEnd(width),
    f('received', c.received), f('queued', c.queued), f('delivered', c.delivered), f('filtered', c.filtered),
    f('errors', c.errors), f('retrying', c.retrying), f('tokens', c.tokensFetched),
    c.paused ? `paused ${c.paused}` : '', state !== 'running' ? state : '',
  ].filter(Boolean).join('  ')
}

const runOptions = { 'data-dir': { type: 'string' }, 'allow-open-data-dir': { type: 'boolean' }, 'encrypt-content': { type: 'boolean' }, 'max-store-bytes': { type: 'string' }, sync: { type: 'string', default: 'full' }, ...storeOptions, jwks: { type: 'string' }, 'jwks-sets': { type: 'string', default: 'per-credential' }, ...adminOptions, alerts: { type: 'string' }, embedded: { type: 'boolean' } } as const
type RunValues = ReturnType<typeof parseFlags<typeof runOptions>>['values']

/** The flags that need more than parseArgs: checked, with a usage error naming the flag. */
function checkedFlags(values: RunValues, io: CommandIO) {
  if (values.embedded) {
    // A cluster's engines share the channels' messages and OAuth state: a rehearsal is one engine's own.
    if (storeUrlOf(values, io)) throw new errorCodes.ERR_USAGE(`--embedded rehearses the channels in this process alone and cannot join a cluster: leave out ${values.store !== undefined ? '--store' : '$WEIR_STORE'}`)
    // An alerts file's credentials would ask their real token endpoints for tokens.
    if (values.alerts !== undefined) throw new errorCodes.ERR_USAGE('--embedded does not rehearse an alerts file (its credentials would reach their real token endpoints): leave out --alerts; a channel\'s own "alerts" block runs against the embedded servers')
  }
  const sync = String(values.sync).toUpperCase()
  if (sync !== 'FULL' && sync !== 'NORMAL') throw new errorCodes.ERR_USAGE(`--sync must be "full" or "normal", not "${values.sync}"`)
  const jwksSets = values['jwks-sets'] as JwksSets
  if (!JWKS_SETS.includes(jwksSets)) throw new errorCodes.ERR_USAGE(`--jwks-sets must be ${JWKS_SETS.join(' or ')}, not "${jwksSets}"`)
  const jwksAddress = values.jwks === undefined ? undefined : parseListenAddress(values.jwks)
  const maxStoreBytes = values['max-store-bytes'] === undefined ? undefined : Number(values['max-store-bytes'])
  if (maxStoreBytes !== undefined && !(Number.isSafeInteger(maxStoreBytes) && maxStoreBytes >= 1_048_576)) {
    throw new errorCodes.ERR_USAGE(`--max-store-bytes must be a whole number of bytes, at least 1048576; not "${values['max-store-bytes']}"`)
  }
  return { sync: sync as 'FULL' | 'NORMAL', jwksSets, jwksAddress, maxStoreBytes }
}

/** What the run needs from its files: the channels and the alerts (the file's and the channels' own), or every problem found. */
async function loadInputs(files: string[], values: RunValues, io: CommandIO, load: ChannelLoader, maxStoreBytes: number | undefined) {
  const channels: LoadedChannel[] = []
  const problems: string[] = []
  for (const file of files) {
    const path = resolve(io.cwd, file)
    try {
      const ch = await load(path, { env: io.env })
      for (const w of [...ch.warnings, ...contentWarnings(ch)]) io.err(`warning: ${w}`)
      channels.push(maxStoreBytes === undefined || ch.options.maxStoreBytes !== undefined ? ch : { ...ch, options: { ...ch.options, maxStoreBytes } })
    } catch (e) {
      if (!isWeirError(e) || !e.userError) throw e
      problems.push(...(e.code === 'ERR_CONFIG_INVALID' ? (e as ConfigError).problems.map(formatProblem) : [`${file}: ${e.message}`]))
      const hint = e.code === 'ERR_CONFIG_INVALID' ? await wrongCommandHint(path, file, 'run') : undefined
      if (hint) problems.push(hint)
    }
  }
  const seen = new Set<string>()
  for (const ch of channels) {
    if (seen.has(ch.name)) problems.push(`${ch.file}: channel name "${ch.name}" is used by another channel file; names must be unique`)
    if (ch.name.startsWith(ALERTS_CHANNEL_PREFIX)) problems.push(`${ch.file}#/name: channel names starting with "${ALERTS_CHANNEL_PREFIX}" are the engine's own (alert notifications)`)
    seen.add(ch.name)
  }
  let alerts: LoadedAlerts | undefined
  try {
    const file = values.alerts === undefined ? undefined : await loadAlerts(resolve(io.cwd, values.alerts), { env: io.env })
    for (const w of file?.warnings ?? []) io.err(`warning: ${w}`)
    // A channel's own alerts (its `alerts` block) run in the same notifier as the file's.
    alerts = await mergeAlerts(file, channels, io.env)
  } catch (e) {
    if (!isWeirError(e) || e.code !== 'ERR_CONFIG_INVALID') throw e
    problems.push(...(e as ConfigError).problems.map(formatProblem))
  }
  // Message content encrypted for every channel (--encrypt-content) or for those that ask.
  const encrypt = values['encrypt-content'] ? true as const : new Set(channels.filter((c) => c.options.encryptContent).map((c) => c.name))
  const withCredentials = channels.some((ch) => Object.keys(ch.credentials).length > 0)
  if ((withCredentials || encrypt === true || encrypt.size > 0) && storeUrlOf(values, io) && !io.env.WEIR_SECRET_KEY) problems.push(missingClusterKey)
  return { channels, alerts, encrypt, withCredentials, problems }
}

type Inputs = Awaited<ReturnType<typeof loadInputs>>

/** What an engine of a cluster records of its definitions: its channels' and its alerts file's webhook channels' (see alertsFileDefinitions). */
async function clusterDefinitions(inputs: Inputs): Promise<Awaited<ReturnType<typeof channelDefinitions>>> {
  const channels = await channelDefinitions(inputs.channels)
  const alerts = await alertsFileDefinitions(inputs.alerts)
  return { fingerprints: { ...channels.fingerprints, ...alerts.fingerprints }, outlines: { ...channels.outlines, ...alerts.outlines } }
}

/**
 * The services the channels run on, in order: the JWK Set server (listening before the first token
 * request, which may make the provider fetch the keys), the admin server, the store (in standby:
 * once another engine lets go of it), the HTTP client and the credentials (shared through the
 * store in a cluster). What started is closed again when a later one fails. In a rehearsal
 * (--embedded) the HTTP client sends every request to the embedded servers, and the credentials
 * keep their tokens in the rehearsal's own token store.
 */
async function startServices(values: RunValues, io: CommandIO, deps: RunDeps, flags: ReturnType<typeof checkedFlags>, inputs: Inputs, log: Logger, onRefused: (e: StoreError) => void, rehearsal: Rehearsal | undefined) {
  const dataDir = dataDirOf(values['data-dir'], io)
  // In a cluster, the engines compare their channels' definitions as they join (see EngineLease),
  // the alerts file's webhook channels among them.
  const definitions = storeUrlOf(values, io) === undefined ? undefined : await clusterDefinitions(inputs)
  const jwks = flags.jwksAddress && await startJwksServer({ ...flags.jwksAddress, documents: await jwksDocuments(channelSigningKeys(inputs.channels), flags.jwksSets) })
  if (jwks) {
    log.info({ jwks: jwks.paths().map((p) => jwks.url + p) }, 'serving JWK Sets')
    deps.onJwksServer?.(jwks)
  }
  const admin = await startAdminFor(values, io, { log }).catch(async (e) => { await jwks?.close(); throw e })
  if (admin) deps.onAdminServer?.(admin)
  const open = () => openStoreFor(values, io, {
    dataDir, owner: true, synchronous: flags.sync, log, encrypt: inputs.encrypt, acceptOpenDataDirFlag: '--allow-open-data-dir',
    ...(values['allow-open-data-dir'] ? { allowOpenDataDir: true } : {}), ...(definitions ? { definitions: definitions.fingerprints, outlines: definitions.outlines } : {}), onRefused,
  })
  const store = await (values.standby ? openStoreWhenFree(open, { log, ...(admin ? { admin } : {}), ...(deps.signal ? { signal: deps.signal } : {}) }) : open()).catch(async (e) => {
    await admin?.close()
    await jwks?.close()
    throw e
  })
  // A cluster shares its OAuth state in the store's database: one token request per lifetime for all engines.
  const shared = inputs.withCredentials
    ? clusterTokenState(store, { secretKey: io.env.WEIR_SECRET_KEY, ...(values['lease-ms'] ? { leaseMs: Number(values['lease-ms']) } : {}) })
    : undefined
  const client = deps.http ?? createHttpClient({ log })
  const http = rehearsal ? rehearsal.redirect(client) : client
  const tokenDataDir = rehearsal?.tokenDir ?? dataDir
  const credential = deps.credential ?? ((name: string, ch: LoadedChannel) =>
    createTokenProvider(name, ch.credentials[name] as unknown as Parameters<typeof createTokenProvider>[1], { log: log.child({ channel: ch.name, credential: name }), dataDir: tokenDataDir, ...(shared ? { shared } : {}) }))
  const close = async () => {
    await admin?.close()
    await jwks?.close()
    try {
      await store.close()
    } finally {
      if (!deps.http) await http.close()
    }
  }
  return { dataDir, admin, store, http, credential, close }
}

/** Counters while the engine runs: a live line per channel on a terminal, a log line when they change otherwise. `stop` shows the last. */
function showCounters(handles: readonly ChannelHandle[], io: CommandIO, log: Logger, refreshMs = 500): { stop(): void } {
  const width = Math.max(...handles.map((h) => h.name.length))
  let drawn = 0
  const render = () => {
    const lines = handles.map((h) => lineFor(h.name, h.counters(), width, h.state))
    const up = drawn ? `\x1b[${drawn}A` : ''
    io.out(up + lines.map((l) => `\x1b[2K${l}`).join('\n'))
    drawn = lines.length
  }
  let lastLogged = ''
  const tick = () => {
    if (io.isTTY) return render()
    for (const h of handles) {
      const c = JSON.stringify(h.counters())
      if (c !== lastLogged) log.info({ channel: h.name, counters: h.counters() }, 'counters')
      lastLogged = c
    }
  }
  if (io.isTTY) render()
  const timer = setInterval(tick, io.isTTY ? refreshMs : 10_000)
  return { stop() { clearInterval(timer); tick() } }
}

/**
 * Installed before anything starts: the first SIGINT or SIGTERM (or `signal`) aborts `signal`, so
 * that a start-up still waiting (the store in --standby) gives up, and resolves `requested`; a second
 * signal exits at once (unfinished claims are released when the store next opens). `dispose` removes
 * the signal handlers. Channels that stop on their own (`onError: "stop"`) do not end the process,
 * even all of them: a restart (a service manager's `Restart=on-failure`) would start them again with
 * nobody having looked, so the engine stays up, not ready, its admin server and alerts saying why.
 * `fail` stops it for a reason that makes the run fail (exit status 1): the cluster refused it back.
 */
function untilStopRequested(log: Logger, signal?: AbortSignal): { signal: AbortSignal; requested: Promise<string>; readonly failed: Error | undefined; fail(e: Error): void; dispose(): void } {
  const stopping = new AbortController()
  let signals = 0
  let reason = 'abort'
  let failed: Error | undefined
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) {
      // Said before exiting (the log is synchronous): the messages under way come back at the next
      // start as interrupted by an unclean stop, and count toward putting them in error.
      log.error({ signal: sig }, 'second signal: exiting at once, without waiting for in-flight work; the messages under way are delivered again at the next start, which counts this as an unclean stop')
      process.exit(130)
    }
    log.warn({ signal: sig }, 'stopping: finishing in-flight work (signal again to exit at once)')
    reason = sig
    stopping.abort()
  }
  const onAbort = () => stopping.abort()
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  if (signal?.aborted) onAbort()
  else signal?.addEventListener('abort', onAbort, { once: true })
  const stopRequested = new Promise<string>((resolveStop) => {
    if (stopping.signal.aborted) resolveStop(reason)
    else stopping.signal.addEventListener('abort', () => resolveStop(reason), { once: true })
  })
  return {
    signal: stopping.signal,
    requested: stopRequested,
    get failed() { return failed },
    fail(e) {
      failed ??= e
      reason = 'failed'
      stopping.abort()
    },
    dispose() {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      signal?.removeEventListener('abort', onAbort)
    },
  }
}

/**
 * The channels a rehearsal (--embedded) would send messages of an earlier run to the embedded API,
 * which the destinations should have had: those with unfinished messages in the store, each with
 * when its oldest unfinished message was received.
 */
async function unfinishedOf(store: MessageStore, inputs: Pick<Inputs, 'channels' | 'alerts'>): Promise<Array<[channel: string, oldest: number]>> {
  const oldest = await store.oldestPending()
  // The internal channels of the channels' own alerts deliver to the embedded API too.
  const channels = [...inputs.channels, ...Object.values(inputs.alerts?.webhooks ?? {})]
  return channels.flatMap((ch) => (oldest[ch.name] === undefined ? [] : [[ch.name, oldest[ch.name]!]]))
}

export async function run(args: string[], io: CommandIO, deps: RunDeps = {}): Promise<number> {
  const { values, positionals } = parseFlags(args, runOptions, 'run')
  if (positionals.length === 0) {
    io.err(usage)
    return 2
  }
  const flags = checkedFlags(values, io)
  // On a terminal the live lines own stdout; log lines (warnings and worse) go to stderr.
  const logStream = new Writable({ write(chunk, _enc, cb) { (io.isTTY ? io.err : io.out)(String(chunk).replace(/\n$/, '')); cb() } })
  const log: Logger = createLogger({ destination: logStream, pretty: io.isTTY, ...(io.isTTY ? { level: io.env.WEIR_LOG_LEVEL ?? 'warn' } : {}) })
  // A rehearsal's embedded servers listen before the channels load: the channels are pointed at them as they do.
  const rehearsal = values.embedded ? await startRehearsal({ log, channels: positionals.length }) : undefined
  try {
    return await runChannels(positionals, values, io, deps, flags, log, rehearsal)
  } finally {
    await rehearsal?.close()
  }
}

/**
 * Whether a rehearsal may run on this data directory: not while it holds unfinished messages of the
 * channels, which the rehearsal would deliver to the embedded API instead of their destinations.
 */
async function rehearsalMayUse(store: MessageStore, inputs: Inputs, dataDir: string, io: CommandIO): Promise<boolean> {
  const earlier = await unfinishedOf(store, inputs)
  for (const [name, oldest] of earlier) io.err(`${dataDir} holds unfinished messages of channel "${name}" (the oldest received ${new Date(oldest).toISOString()}): a rehearsal would deliver them to the embedded API, not to their destinations. Rehearse with a data directory of its own (--data-dir), or let weir run deliver them first`)
  return earlier.length === 0
}

/** Runs the channels of `files` until a signal (or `deps.signal`) stops them: `weir run` once its flags are read. */
async function runChannels(files: string[], values: RunValues, io: CommandIO, deps: RunDeps, flags: ReturnType<typeof checkedFlags>, log: Logger, rehearsal: Rehearsal | undefined): Promise<number> {
  const load: ChannelLoader = deps.loadChannel ?? ((file, o) => defaultLoadChannel(file, o))
  const inputs = await loadInputs(files, values, io, rehearsal ? rehearsal.loader(load) : load, flags.maxStoreBytes)
  if (inputs.problems.length) {
    for (const p of inputs.problems) io.err(p)
    return 1
  }
  if (rehearsal) {
    for (const line of rehearsal.describe()) io.err(line)
    io.err(`  messages: stored in ${dataDirOf(values['data-dir'], io)} as by weir run; tokens: in a temporary token store, removed at the end`)
  }

  // A signal while starting (in --standby: while waiting for the store) stops the engine too, with status 0.
  const stop = untilStopRequested(log, deps.signal)
  // Final, unlike a failed heartbeat: its lease lost, this engine may not rejoin the cluster while another runs a channel of it differently.
  const onRefused = (e: StoreError) => {
    log.error({ code: e.code }, `stopping: ${e.message}`)
    stop.fail(e)
  }
  const svc = await startServices(values, io, { ...deps, signal: stop.signal }, flags, inputs, log, onRefused, rehearsal).catch((e) => {
    stop.dispose()
    if (!stop.signal.aborted) throw e
    return undefined
  })
  if (!svc) {
    log.info('weir stopped before it started')
    return stop.failed ? 1 : 0
  }
  const { store, http, credential, dataDir, admin } = svc
  if (rehearsal && !(await rehearsalMayUse(store, inputs, dataDir, io))) {
    await svc.close()
    stop.dispose()
    return 1
  }
  const handles: ChannelHandle[] = []
  const alerts = inputs.alerts && createAlerts(inputs.alerts, { store, log, dataDir, http, credential, ...(admin ? { observer: admin.observer } : {}) })
  try {
    for (const ch of inputs.channels) {
      if (stop.signal.aborted) break
      handles.push(await startChannel(ch, { store, log, dataDir, http, credential, observer: composeObservers(admin?.observer, alerts?.observer), encrypt: inputs.encrypt }))
    }
    await alerts?.start(handles)
  } catch (e) {
    await Promise.all(handles.map((h) => h.stop({ timeoutMs: 2000 })))
    await svc.close()
    stop.dispose()
    throw e
  }
  const retained = inputs.channels.flatMap((ch) => (ch.options.retention ? [{ name: ch.name, retention: ch.options.retention }] : []))
  const retention = startRetention(store, retained, { log })
  admin?.attach({ store, handles })
  log.info({ dataDir, channels: handles.map((h) => h.name) }, 'weir running')
  deps.onStarted?.(handles)

  const counters = showCounters(handles, io, log, deps.refreshMs)
  void Promise.all(handles.map((h) => h.stopped)).then((outcomes) => {
    if (stop.signal.aborted || !outcomes.length) return
    log.error({ channels: handles.map((h) => h.name) }, 'every channel has stopped; weir stays up (not ready) so that they stay stopped until it is restarted: see why in the log above, the admin server or the alerts, then restart it')
  })
  await stop.requested
  await retention.stop()
  await alerts?.stop()
  await Promise.all(handles.map((h) => h.stop()))
  counters.stop()
  const outcomes = await Promise.all(handles.map((h) => h.stopped))
  for (const [name] of rehearsal ? await unfinishedOf(store, inputs).catch(() => []) : []) {
    log.warn({ channel: name, dataDir }, 'the rehearsal leaves unfinished messages of this channel in the data directory: the next weir run on it delivers them, to the real destinations when it runs without --embedded')
  }
  const closed = await svc.close().then(() => true, (e: unknown) => {
    log.error({ err: e }, 'weir stopped, but the message store did not close cleanly')
    return false
  })
  stop.dispose()
  if (!closed) return 1
  log.info('weir stopped; message store closed')
  if (stop.failed) return 1
  return outcomes.some((o) => o.reason === 'error') ? 1 : 0
}
