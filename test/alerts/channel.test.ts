import { afterEach, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { mergeAlerts } from '../../engine/alerts/index.ts'
import { until } from '../_setup.ts'
import { startApi } from '../runtime/_helpers.ts'
import { alertsFile, bed, fastWebhook, webhookReceiver } from './_alerts.ts'

const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})

const hook = { url: 'https://ops.example.com/hook' }
const down = { name: 'down', condition: 'destination-failing', webhook: 'ops' }
const ordersFile = (alerts: unknown, extra: Record<string, unknown> = {}) => ({
  name: 'orders',
  destinations: [{ name: 'api', type: 'http', config: { url: 'https://api.example.com/in' } }],
  alerts, ...extra,
})

describe('alerts in a channel file', () => {
  it('fires once when its destination goes down and resolves once when it delivers again', async () => {
    const b = await bed()
    const receiver = await webhookReceiver()
    let failing = true
    const api = await startApi(() => (failing ? { status: 503 } : undefined))
    closing.push(receiver.close, api.close, b.close)
    const channel = await b.channel({
      name: 'orders',
      destinations: [{ name: 'api', type: 'http', config: { url: api.url }, retry: { maxAttempts: 1000, initialDelayMs: 10, maxDelayMs: 50 }, circuitBreaker: { failureThreshold: 3, resetAfterMs: 100 } }],
      alerts: { webhooks: { ops: fastWebhook(receiver.url) }, alerts: [{ ...down, clearAfterMs: 300 }] },
    })
    const loaded = (await mergeAlerts(undefined, [channel], {}))!
    expect(loaded.checkIntervalMs).toBe(5000)
    expect(loaded.webhooks['orders/ops']!.name).toBe('weir-alerts.orders.ops')
    expect(loaded.alerts).toEqual([{ ...down, channels: ['orders'], scope: 'orders', minIntervalMs: 300_000, clearAfterMs: 300 }])
    await b.start([channel], { ...loaded, checkIntervalMs: 20 })
    await b.feed.emit({ n: 1 })
    await until(() => receiver.accepted.length === 1, 10_000, 'firing')
    failing = false
    await b.handles[0]!.whenIdle({ timeoutMs: 10_000 })
    await until(() => receiver.accepted.length === 2, 10_000, 'resolved')
    await b.alerts!.evaluate()
    expect(receiver.accepted.map((n) => [n.alert, n.state, n.channel, n.destination])).toEqual([['down', 'firing', 'orders', 'api'], ['down', 'resolved', 'orders', 'api']])
    expect(receiver.requests).toHaveLength(2)
  })

  it('two channels and the alerts file may each have an alert of the same name: each is its own', async () => {
    const b = await bed()
    const receiver = await webhookReceiver()
    const api = await startApi(() => ({ status: 400 }))
    closing.push(receiver.close, api.close, b.close)
    const block = { webhooks: { ops: fastWebhook(receiver.url) }, alerts: [{ name: 'stopped', condition: 'channel-stopped', webhook: 'ops', clearAfterMs: 0 }] }
    // The test feed reaches the last channel started (b): a is stopped by hand.
    const channel = (name: string) => b.channel({ name, destinations: [{ name: 'api', type: 'http', config: { url: api.url }, retry: { maxAttempts: 1 } }], options: { onError: 'stop' }, alerts: block })
    const file = await alertsFile(b.dir, { checkIntervalMs: 20, ...block, alerts: [{ ...block.alerts[0], channels: ['a'] }] })
    const loaded = (await mergeAlerts(file, [await channel('a'), await channel('b')], {}))!
    expect(Object.values(loaded.webhooks).map((c) => c.name)).toEqual(['weir-alerts.ops', 'weir-alerts.a.ops', 'weir-alerts.b.ops'])
    await b.start([await channel('a'), await channel('b')], loaded)
    await b.handles[0]!.stop()
    await b.feed.emit({ n: 1 })
    await until(() => receiver.accepted.length === 3, 10_000, 'three firings')
    await b.alerts!.evaluate()
    expect(receiver.accepted.map((n) => `${n.alert} ${n.state} ${n.channel}`).sort()).toEqual(['stopped firing a', 'stopped firing a', 'stopped firing b'])
  })

  it('refuses a webhook that would run as the internal channel of another', async () => {
    const b = await bed()
    closing.push(b.close)
    const file = await alertsFile(b.dir, { webhooks: { 'orders.ops': hook }, alerts: [{ ...down, webhook: 'orders.ops' }] })
    const err = await mergeAlerts(file, [await b.channel(ordersFile({ webhooks: { ops: hook }, alerts: [down] }))], {}).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.message).toBe(`${join(b.dir, 'channel.json')}#/alerts/webhooks/ops: runs as the internal channel "weir-alerts.orders.ops", as ${join(b.dir, 'alerts.json')}#/webhooks/orders.ops does; rename one`)
  })

  it('lets a webhook use a credential of the channel', async () => {
    const b = await bed()
    closing.push(b.close)
    const credentials = { pager: { tokenUrl: 'https://auth.example.com/token', clientId: 'weir', clientAuth: { method: 'client_secret_basic', secret: { $env: 'PAGER_SECRET' } } } }
    const channel = await b.channel(ordersFile({ webhooks: { ops: { ...hook, credential: 'pager' } }, alerts: [down] }, { credentials }), { PAGER_SECRET: 's' })
    const webhook = (await mergeAlerts(undefined, [channel], {}))!.webhooks['orders/ops']!
    expect(Object.keys(webhook.credentials)).toEqual(['pager'])
    expect(webhook.destinations[0]!.config.credential).toBe('pager')
  })

  it.each([
    ['an unknown webhook', { webhooks: { ops: hook }, alerts: [{ ...down, webhook: 'opz' }] }, ['/alerts/alerts/0/webhook: unknown webhook "opz"; did you mean "ops"?; defined: ops']],
    ['another channel', { webhooks: { ops: hook }, alerts: [{ ...down, channels: ['orders', 'billing'] }] }, ['/alerts/alerts/0/channels/1: an alert in a channel file watches only its own channel "orders", not "billing"; put alerts on other channels in their files or in the --alerts file']],
    ['every problem at once', {
      webhooks: { ops: { url: 'ftp://x' }, pager: { ...hook, credential: 'pagr' } },
      alerts: [{ ...down, condition: 'queue-age', destination: 'api' }, { ...down, name: 'paged', webhook: 'pager' }, down],
    }, [
      '/alerts/alerts/0/destination: applies only to the "destination-failing" condition',
      '/alerts/alerts/0: must have required property "maxAgeSeconds" (condition "queue-age")',
      '/alerts/alerts/2/name: duplicate alert name "down" (also /alerts/alerts/0/name)',
      '/alerts/webhooks/ops/url: must start with http://, https:// or /',
      '/alerts/webhooks/pager/credential: unknown credential "pagr"; defined: (none)',
    ]],
    ['a messages-failing option on another condition', { webhooks: { ops: hook }, alerts: [{ ...down, count: 2 }] }, ['/alerts/alerts/0/count: applies only to the "messages-failing" condition']],
    ['an empty messages-failing window', { webhooks: { ops: hook }, alerts: [{ ...down, condition: 'messages-failing', windowSeconds: 0 }] }, ['/alerts/alerts/0/windowSeconds: must be >= 1']],
    ['a schema problem', { webhooks: {}, alerts: [{ ...down, chanels: ['orders'] }] }, [
      '/alerts/webhooks: must NOT have fewer than 1 properties',
      '/alerts/alerts/0/chanels: unknown property "chanels" (did you mean "channels"?)',
    ]],
  ])('reports %s with JSON pointers into the channel file', async (_what, alerts, expected) => {
    const b = await bed()
    closing.push(b.close)
    const err = await b.channel(ordersFile(alerts)).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.message.split('\n').sort()).toEqual(expected.map((p) => `${join(b.dir, 'channel.json')}#${p}`).sort())
  })
})
