import { afterEach, describe, expect, it } from 'vitest'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { startAdminServer } from '../../engine/admin/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { until } from '../_setup.ts'
import { sample } from '../admin/_admin.ts'
import { startApi } from '../runtime/_helpers.ts'
import { alertsFile, bed, fastWebhook, webhookReceiver } from './_alerts.ts'

const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})

describe('alert webhook deliveries in /metrics', () => {
  it('a webhook that refuses a notification: weir_alert_notifications_total{outcome="error"} and the attempts of its weir-alerts channel', async () => {
    const b = await bed()
    // The first notification is refused for good (400), the next one is taken.
    const hook = await webhookReceiver((n) => (n === 1 ? 400 : 200))
    const api = await startApi(() => ({ status: 400 }))
    const admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: OPEN_CONFIG, log: silentLogger })
    closing.push(hook.close, api.close, b.close, () => admin.close())
    const orders = await b.channel({ name: 'orders', destinations: [{ name: 'api', type: 'http', config: { url: api.url }, retry: { maxAttempts: 1 } }], options: { onError: 'stop' } })
    const alerts = await b.start([orders], await alertsFile(b.dir, {
      checkIntervalMs: 20, webhooks: { ops: fastWebhook(hook.url) },
      alerts: [{ name: 'stopped', webhook: 'ops', condition: 'channel-stopped', clearAfterMs: 0 }, { name: 'errors', webhook: 'ops', condition: 'messages-failing', clearAfterMs: 0 }],
    }), { observer: admin.observer })
    admin.attach({ store: b.store, handles: b.handles })
    await b.feed.emit({ n: 1 })
    await until(() => hook.requests.length === 2 && alerts.channels.every((h) => h.counters().queued === 0), 10_000, 'both notifications sent')
    const text = await (await fetch(`${admin.url}/metrics`)).text()
    expect(sample(text, 'weir_alert_notifications_total', { webhook: 'ops', outcome: 'error' })).toBe(1)
    expect(sample(text, 'weir_alert_notifications_total', { webhook: 'ops', outcome: 'delivered' })).toBe(1)
    expect(sample(text, 'weir_delivery_attempts_total', { channel: 'weir-alerts.ops', destination: 'webhook', outcome: 'permanent' })).toBe(1)
    expect(sample(text, 'weir_delivery_attempts_total', { channel: 'weir-alerts.ops', destination: 'webhook', outcome: 'delivered' })).toBe(1)
  }, 20_000)
})
