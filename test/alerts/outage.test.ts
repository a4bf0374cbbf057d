import { afterAll, expect, it } from 'vitest'
import { until } from '../_setup.ts'
import { startApi } from '../runtime/_helpers.ts'
import { alertsFile, bed, fastWebhook, webhookReceiver } from './_alerts.ts'

const closing: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of closing.reverse()) await c()
})

// The acceptance case in real time: the one long test of the alerts.
it('a 60 s destination outage with 1,000 failing messages gives exactly 2 notifications: firing, then resolved', async () => {
  const b = await bed()
  const hook = await webhookReceiver()
  let down = true
  const api = await startApi(() => (down ? { status: 503, body: 'maintenance' } : undefined))
  closing.push(hook.close, api.close, b.close)
  const channel = await b.channel({
    name: 'orders',
    destinations: [{
      name: 'api', type: 'http', config: { url: api.url },
      retry: { maxAttempts: 1000, initialDelayMs: 100, maxDelayMs: 2000, maxElapsedMs: 600_000 },
      circuitBreaker: { failureThreshold: 5, resetAfterMs: 3000 },
    }],
    options: { concurrency: 8 },
  })
  const loaded = await alertsFile(b.dir, {
    checkIntervalMs: 100,
    webhooks: { ops: fastWebhook(hook.url) },
    alerts: [{ name: 'orders-api-down', condition: 'destination-failing', channels: ['orders'], webhook: 'ops', clearAfterMs: 5000 }],
  })
  await b.start([channel], loaded)
  const [orders] = b.handles
  for (let i = 0; i < 1000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => b.feed.emit({ n: i + j })))

  await new Promise((ok) => setTimeout(ok, 60_000))
  const openings = orders!.destinations()[0]!.openings
  expect(openings).toBeGreaterThanOrEqual(5)
  expect(hook.accepted.map((n) => n.state)).toEqual(['firing'])
  down = false

  await orders!.whenIdle({ timeoutMs: 60_000 })
  expect(orders!.counters()).toMatchObject({ delivered: 1000, errors: 0 })
  expect(new Set(api.keys()).size).toBe(1000)
  await until(() => hook.accepted.length === 2, 15_000, 'resolved')
  await new Promise((ok) => setTimeout(ok, 1000))
  expect(hook.accepted.map((n) => [n.alert, n.state, n.destination])).toEqual([['orders-api-down', 'firing', 'api'], ['orders-api-down', 'resolved', 'api']])
  expect(hook.accepted[1]!.since).toBe(hook.accepted[0]!.since)
  expect(hook.requests).toHaveLength(2)
}, 180_000)
