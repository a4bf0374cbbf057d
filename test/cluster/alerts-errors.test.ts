import { afterEach, describe, expect, it } from 'vitest'
import { createAlerts, alertsLeadership, type LoadedAlerts } from '../../engine/alerts/index.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { openPostgresStore } from '../../shared/store/index.ts'
import { until } from '../_setup.ts'
import { alertsFile, capturingLogger, fastWebhook, webhookReceiver } from '../alerts/_alerts.ts'
import { channel, destination, feedSource, startApi, tempDir } from '../runtime/_helpers.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

// Finding: in a cluster only the engine holding the `alerts` leadership evaluates, and
// `messages-failing` counted the errors that engine had seen itself: 6 messages sent to another
// engine went to error there, and the alert never fired.

const pg = useEmbeddedPostgres()

const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})

/** An engine of the cluster, in this process: its store, the channel `adt` (its API answers 400 to everything) and the alerts. */
async function engine(url: string, dir: string, loaded: LoadedAlerts, apiUrl: string) {
  const { log } = capturingLogger()
  const http = createHttpClient({ log })
  const store = await openPostgresStore({ url, leaseMs: 3_000 })
  const feed = feedSource()
  const alerts = createAlerts(loaded, { store, log, dataDir: dir, http, drainMs: 500 })
  const adt = await startChannel(channel({ name: 'adt', dir, source: feed.definition, destinations: [destination('api', apiUrl, { retry: { maxAttempts: 1, initialDelayMs: 10, maxDelayMs: 10, maxElapsedMs: 1000 } })] }),
    { store, log, dataDir: dir, http, observer: alerts.observer })
  await alerts.start([adt])
  closing.push(async () => {
    await alerts.stop()
    await adt.stop({ timeoutMs: 500 })
    await store.close()
    await http.close()
  })
  return { store, feed, alerts, adt }
}

describe('messages-failing in a cluster', () => {
  it('messages that went to error on an engine that does not lead fire the alert on the one that does', async () => {
    const url = await pg.server.createDatabase('alerts_errors')
    const dir = await tempDir('weir-cluster-alerts-')
    closing.push(dir.remove)
    const hook = await webhookReceiver()
    const api = await startApi(() => ({ status: 400, body: 'bad' }))
    closing.push(hook.close, api.close)
    // Evaluated only when the test says so (and once more at each stop).
    const loaded = await alertsFile(dir.path, {
      checkIntervalMs: 600_000, webhooks: { ops: fastWebhook(hook.url) },
      alerts: [{ name: 'errors', condition: 'messages-failing', webhook: 'ops', count: 6, windowSeconds: 300 }],
    })

    const leader = await engine(url, dir.path, loaded, api.url)
    await leader.alerts.evaluate()
    expect(await leader.store.leadership!.lead(alertsLeadership(loaded.alerts[0]!))).toBe(true)
    const other = await engine(url, dir.path, loaded, api.url)
    for (let n = 1; n <= 6; n++) await other.feed.emit({ n })
    await other.adt.whenIdle({ timeoutMs: 10_000 })
    expect(other.adt.counters()).toMatchObject({ delivered: 0, errors: 6 })
    expect(leader.adt.counters().errors).toBe(0)

    await other.alerts.evaluate() // not the leader: evaluates nothing
    await leader.alerts.evaluate()
    await until(() => hook.accepted.length === 1, 5_000, 'firing')
    expect(hook.accepted[0]).toMatchObject({ alert: 'errors', state: 'firing', channel: 'adt', summary: '6 messages of channel adt went to error in the last 300 s (at least 6)' })
    await leader.alerts.evaluate()
    await other.alerts.evaluate()
    await new Promise((ok) => setTimeout(ok, 300))
    expect(hook.requests).toHaveLength(1)
  })

  it('each rule is evaluated by an engine that has it, also where the engines\' rules differ', async () => {
    // Before: one leadership for all of the alerts, so the engine holding it evaluated its own rules
    // only, and a rule that only another engine had was never evaluated.
    const url = await pg.server.createDatabase('alerts_rules_differ')
    const dir = await tempDir('weir-cluster-alerts-')
    closing.push(dir.remove)
    const hook = await webhookReceiver()
    const api = await startApi(() => ({ status: 400, body: 'bad' }))
    closing.push(hook.close, api.close)
    const rule = (name: string, count: number) => ({ name, condition: 'messages-failing', webhook: 'ops', count, windowSeconds: 300 })
    const file = (alerts: unknown[]) => alertsFile(dir.path, { checkIntervalMs: 600_000, webhooks: { ops: fastWebhook(hook.url) }, alerts })
    const first = await engine(url, dir.path, await file([rule('errors', 2)]), api.url)
    await first.alerts.evaluate()
    const second = await engine(url, dir.path, await file([rule('errors', 2), rule('many-errors', 3)]), api.url)
    for (let n = 1; n <= 3; n++) await second.feed.emit({ n })
    await second.adt.whenIdle({ timeoutMs: 10_000 })

    await first.alerts.evaluate()
    await second.alerts.evaluate()
    await until(() => hook.accepted.length === 2, 5_000, 'both rules firing')
    expect(hook.accepted.map((n) => `${n.alert} ${n.state}`).sort()).toEqual(['errors firing', 'many-errors firing'])
    // `errors` stays the first engine's: the second, which has it too, does not notify it again.
    await second.alerts.evaluate()
    await first.alerts.evaluate()
    await new Promise((ok) => setTimeout(ok, 300))
    expect(hook.requests).toHaveLength(2)
    expect(await first.store.leadership!.lead('alerts:errors')).toBe(true)
    expect(await first.store.leadership!.lead('alerts:many-errors')).toBe(false)
  })
})
