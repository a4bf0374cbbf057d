import { afterEach, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { createTokenProvider, type CredentialConfig } from '../../shared/oauth/index.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { until } from '../_setup.ts'
import { startApi } from '../runtime/_helpers.ts'
import { createAlerts } from '../../engine/alerts/index.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { alertsFile, bed, fastWebhook, webhookReceiver } from './_alerts.ts'

type Bed = Awaited<ReturnType<typeof bed>>
const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})
async function setUp() {
  const b = await bed()
  const hook = await webhookReceiver()
  const api = await startApi()
  closing.push(hook.close, api.close, b.close)
  return { b, hook, api }
}
const ordersChannel = (b: Bed, url: string, extra: Record<string, unknown> = {}) => b.channel({
  name: 'orders',
  destinations: [{ name: 'api', type: 'http', config: { url }, retry: { maxAttempts: 1000, initialDelayMs: 10, maxDelayMs: 50 }, circuitBreaker: { failureThreshold: 1000 } }],
  ...extra,
})
const file = (hook: string, alert: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  ({ checkIntervalMs: 20, webhooks: { ops: fastWebhook(hook) }, alerts: [{ name: 'a', webhook: 'ops', clearAfterMs: 0, ...alert }], ...extra })

describe('alerts', () => {
  it('queue-age fires when the oldest message is older than maxAgeSeconds and resolves once the queue drains', async () => {
    const { b, hook, api } = await setUp()
    api.behaviour = () => ({ status: 503 })
    await b.start([await ordersChannel(b, api.url)], await alertsFile(b.dir, file(hook.url, { condition: 'queue-age', maxAgeSeconds: 1 })))
    await b.feed.emit({ n: 1 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    expect(hook.accepted[0]).toMatchObject({ alert: 'a', condition: 'queue-age', state: 'firing', channel: 'orders', engine: { pid: process.pid } })
    expect(hook.accepted[0]!.summary).toMatch(/^the oldest unfinished message of channel orders is [12] s old \(limit 1 s\)$/)
    api.behaviour = () => undefined
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    expect(hook.accepted[1]).toMatchObject({ state: 'resolved', since: hook.accepted[0]!.since, summary: 'the oldest unfinished message of channel orders is within 1 s' })
  })

  it('channel-stopped fires when a channel stops on error (onError "stop")', async () => {
    const { b, hook, api } = await setUp()
    api.behaviour = () => ({ status: 400 })
    await b.start([await ordersChannel(b, api.url, { options: { onError: 'stop' } })], await alertsFile(b.dir, file(hook.url, { condition: 'channel-stopped', channels: ['orders'] })))
    await b.feed.emit({ n: 1 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    expect(hook.accepted[0]).toMatchObject({ condition: 'channel-stopped', state: 'firing', channel: 'orders', summary: 'channel orders is stopped' })
  })

  it('channel-refusing fires while the queue is full and resolves once it has room, with no message sent meanwhile', async () => {
    const { b, hook, api } = await setUp()
    api.behaviour = () => ({ status: 503 })
    await b.start([await ordersChannel(b, api.url, { options: { queueLimit: 2 } })], await alertsFile(b.dir, file(hook.url, { condition: 'channel-refusing', channels: ['orders'] })))
    await b.feed.emit({ n: 1 })
    await b.feed.emit({ n: 2 })
    await expect(b.feed.emit({ n: 3 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    expect(hook.accepted[0]).toMatchObject({ condition: 'channel-refusing', state: 'firing', channel: 'orders' })
    expect(hook.accepted[0]!.summary).toMatch(/^channel orders refuses its input since \S+ \(\d+ s\): its queue is full \(queueLimit\)$/)
    api.behaviour = () => undefined
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    expect(hook.accepted[1]).toMatchObject({ state: 'resolved', summary: 'channel orders accepts its input' })
  })

  it('a webhook that fails twice then succeeds gets the notification once, retried with the same Idempotency-Key', async () => {
    const b = await bed()
    const hook = await webhookReceiver((n) => (n <= 2 ? 503 : 200))
    const api = await startApi(() => ({ status: 400 }))
    closing.push(hook.close, api.close, b.close)
    await b.start([await ordersChannel(b, api.url, { options: { onError: 'stop' } })], await alertsFile(b.dir, file(hook.url, { condition: 'channel-stopped' })))
    await b.feed.emit({ n: 1 })
    await until(() => hook.accepted.length === 1, 10_000, 'delivery')
    expect(hook.requests).toHaveLength(3)
    expect(new Set(hook.requests.map((r) => r.headers['idempotency-key'])).size).toBe(1)
    expect(hook.accepted[0]!.state).toBe('firing')
  })

  it('destination-failing with consecutiveFailures: one firing, one resolved, and a second wave within minIntervalMs fires again at once, marked flapping', async () => {
    const { b, hook, api } = await setUp()
    api.behaviour = () => ({ status: 503 })
    await b.start([await ordersChannel(b, api.url)], await alertsFile(b.dir, file(hook.url, { condition: 'destination-failing', destination: 'api', consecutiveFailures: 3, minIntervalMs: 60_000 })))
    await b.feed.emit({ n: 1 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    expect(hook.accepted[0]).toMatchObject({ condition: 'destination-failing', state: 'firing', channel: 'orders', destination: 'api' })
    expect(hook.accepted[0]!.summary).toMatch(/^destination api of channel orders is failing: \d+ failed attempts in a row, last failure: HTTP 503 \(ERR_HTTP_STATUS\)$/)
    api.behaviour = () => undefined
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    expect(hook.accepted[1]!.state).toBe('resolved')
    expect(hook.accepted[1]!.summary).toMatch(/^destination api of channel orders delivers again \(a delivered attempt at \d{4}-\d\d-\d\dT[\d:.]+Z\)$/)
    // Failing again within minIntervalMs of the resolved: sent all the same (the operator was told it cleared).
    api.behaviour = () => ({ status: 503 })
    await b.feed.emit({ n: 2 })
    await until(() => hook.accepted.length === 3, 10_000, 'the second firing')
    expect(hook.accepted.map((n) => [n.state, n.flapping])).toEqual([['firing', undefined], ['resolved', undefined], ['firing', true]])
    expect(hook.accepted[2]!.summary).toMatch(/^destination api of channel orders is failing: \d+ failed attempts in a row, last failure: HTTP 503 \(ERR_HTTP_STATUS\)$/)
  })
})

describe('credential-fail-fast', () => {
  let as: AuthorizationServer
  afterEach(() => as?.close())

  it('fires while a credential fails fast after a wrong secret and resolves once it obtains a token; no secret in notifications or logs', async () => {
    const { b, hook, api } = await setUp()
    as = await startAuthorizationServer()
    as.registerClient({ clientId: 'orders-client', authMethod: 'client_secret_basic', secret: 'right-secret-value' })
    const env = { ORDERS_SECRET: 'wrong-secret-value', OPS_KEY: 'ops-key-value-42' }
    const channel = await b.channel({ name: 'orders',
      credentials: { partner: { grant: 'client_credentials', tokenUrl: `${as.issuer}/token`, clientId: 'orders-client', clientAuth: { method: 'client_secret_basic', secret: { $env: 'ORDERS_SECRET' } }, failFastMs: 1500 } },
      destinations: [{ name: 'api', type: 'http', config: { url: api.url, credential: 'partner' }, retry: { maxAttempts: 1000, initialDelayMs: 10, maxDelayMs: 200 } }],
    }, env)
    const loaded = await alertsFile(b.dir, {
      checkIntervalMs: 20,
      webhooks: { ops: fastWebhook(hook.url, { secretHeaders: { 'x-api-key': { $env: 'OPS_KEY' } } }) },
      alerts: [{ name: 'token', condition: 'credential-fail-fast', credential: 'partner', webhook: 'ops', clearAfterMs: 0 }],
    }, env)
    const credential = (name: string, ch: LoadedChannel) => createTokenProvider(name, ch.credentials[name] as unknown as CredentialConfig, { log: b.log, dataDir: b.dir })
    await b.start([channel], loaded, { credential })
    await b.feed.emit({ n: 1 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    expect(hook.accepted[0]).toMatchObject({ condition: 'credential-fail-fast', state: 'firing', channel: 'orders', credential: 'partner' })
    expect(hook.accepted[0]!.summary).toMatch(/^credential partner of channel orders fails fast until .*: ERR_OAUTH_RESPONSE .*invalid_client/)
    expect(hook.requests[0]!.headers['x-api-key']).toBe('ops-key-value-42')
    as.registerClient({ clientId: 'orders-client', authMethod: 'client_secret_basic', secret: 'wrong-secret-value' })
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    expect(hook.accepted[1]).toMatchObject({ state: 'resolved', credential: 'partner' })
    expect(hook.accepted[1]!.summary).toMatch(/^credential partner of channel orders obtained a token again at \d{4}-\d\d-\d\dT[\d:.]+Z$/)
    await b.feed.emit({ n: 2 })
    await until(() => api.received.length === 1, 10_000, 'delivery with a token')
    expect(hook.accepted).toHaveLength(2)
    const seen = JSON.stringify(hook.requests.map((r) => r.body)) + b.lines.join('')
    for (const secret of [...Object.values(env), ...as.secretsSeen()]) expect(seen).not.toContain(secret)
    expect(b.lines.join('')).toMatch(/alert firing/)
  })
})

describe('alert state kept in the store', () => {
  const breaking = (b: Bed, url: string) => b.channel({
    name: 'orders',
    destinations: [{ name: 'api', type: 'http', config: { url }, retry: { maxAttempts: 1000, initialDelayMs: 10, maxDelayMs: 50 }, circuitBreaker: { failureThreshold: 2, resetAfterMs: 200 } }],
  })

  it('a firing alert survives a restart (notifier and channel): the next one sends only the resolved, once the destination delivers', async () => {
    const { b, hook, api } = await setUp()
    api.behaviour = () => ({ status: 503 })
    const loaded = await alertsFile(b.dir, file(hook.url, { condition: 'destination-failing' }))
    const first = await b.start([await breaking(b, api.url)], loaded)
    await b.feed.emit({ n: 1 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    await first.stop()
    await b.handles.pop()!.stop({ timeoutMs: 500 })
    const second = createAlerts(loaded, { store: b.store, log: b.log, dataDir: b.dir, http: b.http, drainMs: 500 })
    closing.push(() => second.stop())
    const orders = await startChannel(await breaking(b, api.url), { store: b.store, log: b.log, dataDir: b.dir, http: b.http, observer: second.observer })
    closing.push(() => orders.stop({ timeoutMs: 500 }))
    await second.start([orders])
    // The breaker of the new run is closed, but nothing was delivered yet: still firing.
    await second.evaluate()
    await new Promise((ok) => setTimeout(ok, 100))
    await second.evaluate()
    expect(hook.accepted.map((n) => n.state)).toEqual(['firing'])
    api.behaviour = () => undefined
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    expect(hook.accepted.map((n) => n.state)).toEqual(['firing', 'resolved'])
    expect(hook.accepted[1]!.since).toBe(hook.accepted[0]!.since)
  })

  it('in a cluster only the holder of an alert\'s leadership ("alerts:<name>") notifies; a new holder goes on from the kept state', async () => {
    const { b, hook, api } = await setUp()
    api.behaviour = () => ({ status: 400 })
    let holder = 'one'
    const engine = (name: string) => new Proxy(b.store, {
      get(target, key) {
        if (key === 'leadership') return { leaseMs: 1000, lead: async (what: string) => what === 'alerts:a' && holder === name, resign: async () => {} }
        const v = Reflect.get(target, key) as unknown
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
    const loaded = await alertsFile(b.dir, file(hook.url, { condition: 'channel-stopped' }))
    const [one, two] = [createAlerts(loaded, { store: engine('one'), log: b.log, dataDir: b.dir, http: b.http, drainMs: 500 }), createAlerts(loaded, { store: engine('two'), log: b.log, dataDir: b.dir, http: b.http, drainMs: 500 })]
    await b.start([await ordersChannel(b, api.url, { options: { onError: 'stop' } })], await alertsFile(b.dir, { webhooks: { ops: fastWebhook(hook.url) }, alerts: [] }))
    await one.start(b.handles)
    await two.start(b.handles)
    closing.push(() => one.stop(), () => two.stop())
    await b.feed.emit({ n: 1 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    holder = 'two'
    await two.evaluate()
    await one.evaluate()
    await b.alerts!.channels[0]!.whenIdle()
    expect(hook.accepted.map((n) => [n.alert, n.state])).toEqual([['a', 'firing']])
  })
})
