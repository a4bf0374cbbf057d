import { parseArgs } from 'node:util'
import { resolve } from 'node:path'
import { Writable } from 'node:stream'
import { dataDirOf, type CommandIO } from '../cli-io.ts'
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
import { startRetention } from '../retention.ts'
import { adminOptions, adminUsage, openStoreWhenFree, startAdminFor, type AdminServer } from '../admin/index.ts'
import { JWKS_SETS, channelSigningKeys, jwksDocuments, parseListenAddress, startJwksServer, type JwksServer, type JwksSets } from '../jwks-server.ts'

export const summary = 'run one or more channels until SIGINT/SIGTERM'
export const usage = `usage: weir run <channel.json...> [--data-dir D] [--allow-open-data-dir] [--encrypt-content] [--max-store-bytes N] [--sync full|normal] [--store postgres://…] [--jwks [HOST:]PORT [--jwks-sets per-credential|combined]]
                [--admin HOST:PORT|off] [--admin-config admin.json] [--standby] [--alerts FILE]

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
  --max-store-bytes N   refuse messages (503, MLLP AR) while the store takes N bytes or more on
                  disk, for channels without their own options.maxStoreBytes
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

exit status: 0 after a clean stop, 1 when a channel stopped on error or would not start`

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

export async function run(args: string[], io: CommandIO, deps: RunDeps = {}): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { 'data-dir': { type: 'string' }, 'allow-open-data-dir': { type: 'boolean' }, 'encrypt-content': { type: 'boolean' }, 'max-store-bytes': { type: 'string' }, sync: { type: 'string', default: 'full' }, ...storeOptions, jwks: { type: 'string' }, 'jwks-sets': { type: 'string', default: 'per-credential' }, ...adminOptions, alerts: { type: 'string' } },
  })
  if (positionals.length === 0) {
    io.err(usage)
    return 2
  }
  const sync = String(values.sync).toUpperCase()
  if (sync !== 'FULL' && sync !== 'NORMAL') {
    throw new errorCodes.ERR_USAGE(`--sync must be "full" or "normal", not "${values.sync}"`)
  }
  const jwksSets = values['jwks-sets'] as JwksSets
  if (!JWKS_SETS.includes(jwksSets)) throw new errorCodes.ERR_USAGE(`--jwks-sets must be ${JWKS_SETS.join(' or ')}, not "${jwksSets}"`)
  const jwksAddress = values.jwks === undefined ? undefined : parseListenAddress(values.jwks)
  const maxStoreBytes = values['max-store-bytes'] === undefined ? undefined : Number(values['max-store-bytes'])
  if (maxStoreBytes !== undefined && !(Number.isSafeInteger(maxStoreBytes) && maxStoreBytes >= 1_048_576)) {
    throw new errorCodes.ERR_USAGE(`--max-store-bytes must be a whole number of bytes, at least 1048576; not "${values['max-store-bytes']}"`)
  }
  const dataDir = dataDirOf(values['data-dir'], io)
  const load = deps.loadChannel ?? ((file, o) => defaultLoadChannel(file, o))

  const channels: LoadedChannel[] = []
  const problems: string[] = []
  for (const file of positionals) {
    try {
      const ch = await load(resolve(io.cwd, file), { env: io.env })
      for (const w of ch.warnings) io.err(`warning: ${w}`)
      channels.push(maxStoreBytes === undefined || ch.options.maxStoreBytes !== undefined ? ch : { ...ch, options: { ...ch.options, maxStoreBytes } })
    } catch (e) {
      if (!isWeirError(e) || !e.userError) throw e
      problems.push(...(e.code === 'ERR_CONFIG_INVALID' ? (e as ConfigError).problems.map(formatProblem) : [`${file}: ${e.message}`]))
    }
  }
  const seen = new Set<string>()
  for (const ch of channels) {
    if (seen.has(ch.name)) problems.push(`${ch.file}: channel name "${ch.name}" is used by another channel file; names must be unique`)
    if (ch.name.startsWith(ALERTS_CHANNEL_PREFIX)) problems.push(`${ch.file}#/name: channel names starting with "${ALERTS_CHANNEL_PREFIX}" are the engine's own (alert notifications)`)
    seen.add(ch.name)
  }
  let alertsConfig: LoadedAlerts | undefined
  try {
    const file = values.alerts === undefined ? undefined : await loadAlerts(resolve(io.cwd, values.alerts), { env: io.env })
    for (const w of file?.warnings ?? []) io.err(`warning: ${w}`)
    // A channel's own alerts (its `alerts` block) run in the same notifier as the file's.
    alertsConfig = await mergeAlerts(file, channels, io.env)
  } catch (e) {
    if (!isWeirError(e) || e.code !== 'ERR_CONFIG_INVALID') throw e
    problems.push(...(e as ConfigError).problems.map(formatProblem))
  }
  const withCredentials = channels.some((ch) => Object.keys(ch.credentials).length > 0)
  const encrypting = values['encrypt-content'] || channels.some((c) => c.options.encryptContent)
  if ((withCredentials || encrypting) && storeUrlOf(values, io) && !io.env.WEIR_SECRET_KEY) problems.push(missingClusterKey)
  if (problems.length) {
    for (const p of problems) io.err(p)
    return 1
  }

  // On a terminal the live lines own stdout; log lines (warnings and worse) go to stderr.
  const logStream = new Writable({ write(chunk, _enc, cb) { (io.isTTY ? io.err : io.out)(String(chunk).replace(/\n$/, '')); cb() } })
  const log: Logger = createLogger({ destination: logStream, pretty: io.isTTY, ...(io.isTTY ? { level: io.env.WEIR_LOG_LEVEL ?? 'warn' } : {}) })

  // Listening before the channels start: the provider may fetch the keys for the first token request.
  const jwks = jwksAddress && await startJwksServer({ ...jwksAddress, documents: await jwksDocuments(channelSigningKeys(channels), jwksSets) })
  if (jwks) {
    log.info({ jwks: jwks.paths().map((p) => jwks.url + p) }, 'serving JWK Sets')
    deps.onJwksServer?.(jwks)
  }
  const encrypt = values['encrypt-content'] ? true as const : new Set(channels.filter((c) => c.options.encryptContent).map((c) => c.name))
  const admin = await startAdminFor(values, io, { log }).catch(async (e) => { await jwks?.close(); throw e })
  if (admin) deps.onAdminServer?.(admin)
  const open = () => openStoreFor(values, io, { dataDir, owner: true, synchronous: sync, log, encrypt, ...(values['allow-open-data-dir'] ? { allowOpenDataDir: true } : {}) })
  const store = await (values.standby ? openStoreWhenFree(open, { log, ...(admin ? { admin } : {}), ...(deps.signal ? { signal: deps.signal } : {}) }) : open()).catch(async (e) => {
    await admin?.close()
    await jwks?.close()
    throw e
  })
  // A cluster shares its OAuth state in the store's database: one token request per lifetime for all engines.
  const shared = withCredentials
    ? clusterTokenState(store, { secretKey: io.env.WEIR_SECRET_KEY, ...(values['lease-ms'] ? { leaseMs: Number(values['lease-ms']) } : {}) })
    : undefined
  const http = deps.http ?? createHttpClient({ log })
  const credential = deps.credential ?? ((name: string, ch: LoadedChannel) =>
    createTokenProvider(name, ch.credentials[name] as unknown as Parameters<typeof createTokenProvider>[1], { log: log.child({ channel: ch.name, credential: name }), dataDir, ...(shared ? { shared } : {}) }))
  const closeAll = async () => {
    await admin?.close()
    await jwks?.close()
    await store.close()
    if (!deps.http) await http.close()
  }
  const handles: ChannelHandle[] = []
  const alerts = alertsConfig && createAlerts(alertsConfig, { store, log, dataDir, http, credential })
  try {
    for (const ch of channels) handles.push(await startChannel(ch, { store, log, dataDir, http, credential, observer: composeObservers(admin?.observer, alerts?.observer) }))
    await alerts?.start(handles)
  } catch (e) {
    await Promise.all(handles.map((h) => h.stop({ timeoutMs: 2000 })))
    await closeAll()
    throw e
  }
  const retained = channels.flatMap((ch) => (ch.options.retention ? [{ name: ch.name, retention: ch.options.retention }] : []))
  const retention = startRetention(store, retained, { log })
  admin?.attach({ store, handles })
  log.info({ dataDir, channels: handles.map((h) => h.name) }, 'weir running')
  deps.onStarted?.(handles)

  // Live display (TTY) or periodic counters in the log.
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
  const timer = setInterval(tick, io.isTTY ? (deps.refreshMs ?? 500) : 10_000)

  // Wait for a signal, or for every channel to have stopped on its own.
  let signals = 0
  const cleanup: Array<() => void> = []
  const stopRequested = new Promise<string>((resolveStop) => {
    const onSignal = (sig: NodeJS.Signals) => {
      signals++
      if (signals === 1) {
        log.warn({ signal: sig }, 'stopping: finishing in-flight work (signal again to exit at once)')
        resolveStop(sig)
      } else {
        // A second signal: leave now. Unfinished claims are released when the store next opens.
        process.exit(130)
      }
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    cleanup.push(() => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    })
    if (deps.signal) {
      if (deps.signal.aborted) resolveStop('abort')
      deps.signal.addEventListener('abort', () => resolveStop('abort'), { once: true })
    }
  })
  const allStopped = Promise.all(handles.map((h) => h.stopped)).then(() => 'channels stopped')
  await Promise.race([stopRequested, allStopped])

  await retention.stop()
  await alerts?.stop()
  await Promise.all(handles.map((h) => h.stop()))
  clearInterval(timer)
  if (io.isTTY) render()
  else tick()
  const outcomes = await Promise.all(handles.map((h) => h.stopped))
  await closeAll()
  for (const f of cleanup) f()
  log.info('weir stopped; message store closed')
  return outcomes.some((o) => o.reason === 'error') ? 1 : 0
}
