import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { CommandIO } from '../../engine/cli-io.ts'
import { builtinComponents } from '../../components/index.ts'
import { createAlerts, type Alerts, type LoadedAlerts, type Notification } from '../../engine/alerts/index.ts'
import { channelAlerts, loadAlerts } from '../../engine/alerts/load.ts'
import { loadChannelObject } from '../../shared/config/load.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { createLogger, type Logger } from '../../shared/log/index.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { startChannel, type ChannelHandle, type RuntimeDeps } from '../../engine/runtime/index.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { loopbackServer } from '../_setup.ts'
import { feedSource, startApi, tempDir } from '../runtime/_helpers.ts'

/** A webhook receiver on 127.0.0.1: the notifications it accepted (2xx), and every request. */
export async function webhookReceiver(status: (n: number) => number = () => 200) {
  let n = 0
  const accepted: Array<Notification & { idempotencyKey: string }> = []
  const server = await loopbackServer((req, res) => {
    const s = status(++n)
    if (s < 300) accepted.push({ ...(JSON.parse(req.body) as Notification), idempotencyKey: String(req.headers['idempotency-key']) })
    res.writeHead(s).end()
  })
  return { ...server, accepted }
}

/** Writes `content` as alerts.json in `dir` and loads it. */
export async function alertsFile(dir: string, content: unknown, env: NodeJS.ProcessEnv = {}): Promise<LoadedAlerts> {
  const file = join(dir, 'alerts.json')
  await writeFile(file, JSON.stringify(content, null, 2))
  return loadAlerts(file, { env })
}

/** A logger whose JSON lines are kept in `lines`. */
export function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  const log = createLogger({ pretty: false, level: 'debug', destination: new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb() } }) })
  return { log, lines }
}

/** A test bed: a data directory, a store, a log, and the channels and alerts started on them (all stopped by `close`). */
export async function bed() {
  const dir = await tempDir('weir-alerts-')
  const store: MessageStore = openSqliteStore({ dataDir: dir.path, owner: true })
  const { log, lines } = capturingLogger()
  const http = createHttpClient({ log })
  const feed = feedSource()
  const handles: ChannelHandle[] = []
  let alerts: Alerts | undefined
  const deps = (extra: Partial<RuntimeDeps> = {}): RuntimeDeps => ({ store, log, dataDir: dir.path, http, ...extra })
  return {
    dir: dir.path, store, log, lines, feed, handles, http,
    get alerts() { return alerts },
    /** Loads `raw` as a channel file whose source is the test feed (`{ type: "feed" }`), its `alerts` block checked as the engine does. */
    channel: (raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<LoadedChannel> =>
      loadChannelObject({ source: { type: 'feed' }, ...raw }, { file: join(dir.path, 'channel.json'), env, registry: createRegistry([...builtinComponents, feed.definition]), checkAlerts: channelAlerts }),
    async start(channels: LoadedChannel[], loaded: LoadedAlerts, extra: Partial<RuntimeDeps> = {}) {
      alerts = createAlerts(loaded, { ...deps(extra), drainMs: 500 })
      for (const ch of channels) handles.push(await startChannel(ch, deps({ ...extra, observer: alerts.observer })))
      await alerts.start(handles)
      return alerts
    },
    async close() {
      await alerts?.stop()
      await Promise.all(handles.map((h) => h.stop({ timeoutMs: 500 })))
      await store.close()
      await http.close()
      await dir.remove()
    },
  }
}

/** A webhook entry with fast retries, for tests. */
export const fastWebhook = (url: string, extra: Record<string, unknown> = {}) => ({ url, retry: { initialDelayMs: 10, maxDelayMs: 50 }, ...extra })

/** A CommandIO for running a command in-process in `cwd`: what it wrote to stdout and stderr, line by line. */
export function commandIO(cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out: string[] = []
  const err: string[] = []
  const io: CommandIO = { out: (t) => void out.push(t), err: (t) => void err.push(t), env, cwd, isTTY: false }
  return { io, out, err }
}

/**
 * Channel `adt` on a loopback API answering `behaviour`, retrying fast behind a breaker that opens
 * after 3 failures for 100 ms, with `alerts` on webhook `ops`; what it starts is closed by `closing`.
 */
export async function adtOnApi(alerts: unknown[], behaviour: Parameters<typeof startApi>[0], closing: Array<() => Promise<void>>) {
  const b = await bed()
  const hook = await webhookReceiver()
  const api = await startApi(behaviour)
  closing.push(hook.close, api.close, b.close)
  const channel = await b.channel({
    name: 'adt',
    destinations: [{
      name: 'api', type: 'http', config: { url: api.url },
      retry: { maxAttempts: 1000, initialDelayMs: 10, maxDelayMs: 50 },
      circuitBreaker: { failureThreshold: 3, resetAfterMs: 100 },
    }],
  })
  await b.start([channel], await alertsFile(b.dir, { checkIntervalMs: 20, webhooks: { ops: fastWebhook(hook.url) }, alerts }))
  return { b, hook, api, adt: b.handles[0]! }
}
