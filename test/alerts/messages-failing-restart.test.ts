import { afterEach, describe, expect, it } from 'vitest'
import { createAlerts, type LoadedAlerts } from '../../engine/alerts/index.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { until } from '../_setup.ts'
import { channel, destination, feedSource, startApi, tempDir } from '../runtime/_helpers.ts'
import { alertsFile, capturingLogger, fastWebhook, webhookReceiver } from './_alerts.ts'

// Finding: `messages-failing` counted only the errors the running engine had seen, so its window
// started empty at every start: errors made just before a restart were forgotten, and an alert
// whose count they would have reached together with the ones after it never fired.

const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})

/** One run of the engine on the data directory `dir`: the channel `adt` (its API answers 400 to everything) and the alerts. */
async function engine(dir: string, loaded: LoadedAlerts, apiUrl: string) {
  const { log } = capturingLogger()
  const http = createHttpClient({ log })
  const store = openSqliteStore({ dataDir: dir })
  const feed = feedSource()
  const alerts = createAlerts(loaded, { store, log, dataDir: dir, http, drainMs: 500 })
  const adt = await startChannel(channel({ name: 'adt', dir, source: feed.definition, destinations: [destination('api', apiUrl, { retry: { maxAttempts: 1, initialDelayMs: 10, maxDelayMs: 10, maxElapsedMs: 1000 } })] }),
    { store, log, dataDir: dir, http, observer: alerts.observer })
  await alerts.start([adt])
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    await alerts.stop()
    await adt.stop({ timeoutMs: 500 })
    await store.close()
    await http.close()
  }
  closing.push(stop)
  return { feed, alerts, adt, stop }
}

describe('messages-failing across a restart', () => {
  it('counts the errors of the window made before the restart: 2 before and 1 after fire an alert of count 3', async () => {
    const dir = await tempDir('weir-alerts-')
    closing.push(dir.remove)
    const hook = await webhookReceiver()
    const api = await startApi(() => ({ status: 400, body: 'bad' }))
    closing.push(hook.close, api.close)
    // Evaluated only when the test says so (and once more at each stop).
    const loaded = await alertsFile(dir.path, {
      checkIntervalMs: 600_000, webhooks: { ops: fastWebhook(hook.url) },
      alerts: [{ name: 'errors', condition: 'messages-failing', webhook: 'ops', count: 3, windowSeconds: 300 }],
    })

    const first = await engine(dir.path, loaded, api.url)
    await first.feed.emit({ n: 1 })
    await first.feed.emit({ n: 2 })
    await first.adt.whenIdle({ timeoutMs: 10_000 })
    expect(first.adt.counters()).toMatchObject({ delivered: 0, errors: 2 })
    await first.alerts.evaluate()
    await first.stop()
    expect(hook.requests).toHaveLength(0)

    const second = await engine(dir.path, loaded, api.url)
    await second.feed.emit({ n: 3 })
    await second.adt.whenIdle({ timeoutMs: 10_000 })
    expect(second.adt.counters()).toMatchObject({ errors: 1 })
    await second.alerts.evaluate()
    await until(() => hook.accepted.length === 1, 5_000, 'firing')
    expect(hook.accepted[0]).toMatchObject({ alert: 'errors', condition: 'messages-failing', state: 'firing', channel: 'adt', summary: '3 messages of channel adt went to error in the last 300 s (at least 3)' })
  })
})
