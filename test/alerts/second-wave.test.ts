import { afterEach, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { createTokenProvider, type CredentialConfig } from '../../shared/oauth/index.ts'
import { until } from '../_setup.ts'
import { startApi } from '../runtime/_helpers.ts'
import { adtOnApi, alertsFile, bed, fastWebhook, webhookReceiver } from './_alerts.ts'

// Finding (on call): after "resolved", a second wave of failures got no notification for
// minIntervalMs (5 min): 20 messages went to error 14 s after `errors` resolved and nobody was told.
// And `credential-fail-fast` resolved when the fail-fast window ended, not when a token came back.

const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))

/** Channel `adt` on an API whose answer the test sets, with `alerts` (default minIntervalMs: 5 min) on webhook `ops`. */
const setup = (alerts: unknown[], status: { now: number }) => adtOnApi(alerts, () => ({ status: status.now, body: 'no' }), closing)

describe('a second wave after "resolved"', () => {
  it('messages-failing: errors resolved by a resubmit, then new errors right after, fire again at once', async () => {
    const status = { now: 400 }
    const { b, hook, adt } = await setup([{ name: 'errors', condition: 'messages-failing', webhook: 'ops', clearAfterMs: 0 }], status)
    for (let n = 1; n <= 3; n++) await b.feed.emit({ n })
    await adt.whenIdle({ timeoutMs: 10_000 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')

    status.now = 200
    expect(await b.store.resubmit({ channel: 'adt', status: 'error' })).toHaveLength(3)
    adt.wake()
    await adt.whenIdle({ timeoutMs: 10_000 })
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')

    status.now = 400
    for (let n = 4; n <= 6; n++) await b.feed.emit({ n })
    await adt.whenIdle({ timeoutMs: 10_000 })
    await until(() => hook.accepted.length === 3, 5_000, 'the second firing')
    expect(hook.accepted.map((n) => [n.alert, n.state])).toEqual([['errors', 'firing'], ['errors', 'resolved'], ['errors', 'firing']])
    expect(hook.accepted[2]!.since).not.toBe(hook.accepted[0]!.since)
    expect(hook.accepted[2]!.summary).toMatch(/^[123] messages? of channel adt went to error in the last 300 s \(at least 1\)$/)
    expect(hook.accepted[2]!.flapping).toBe(true)
    expect(b.lines.filter((l) => l.includes('"alert firing"'))).toHaveLength(2)
  })

  it('destination-failing: a breaker that opens again after "resolved" fires again at once; its resolved then waits until the destination has delivered for minIntervalMs', async () => {
    const status = { now: 503 }
    const { b, hook, adt } = await setup([{ name: 'api-down', condition: 'destination-failing', webhook: 'ops', clearAfterMs: 0, minIntervalMs: 1500 }], status)
    await b.feed.emit({ n: 1 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    status.now = 200
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    const resolvedAt = Date.now()

    status.now = 503
    await b.feed.emit({ n: 2 })
    await until(() => hook.accepted.length === 3, 10_000, 'the second firing')
    expect(Date.now() - resolvedAt).toBeLessThan(1000)
    expect(hook.accepted.map((n) => [n.alert, n.state, n.flapping])).toEqual([['api-down', 'firing', undefined], ['api-down', 'resolved', undefined], ['api-down', 'firing', true]])

    // Flapping: clear for less than minIntervalMs is not yet "resolved".
    status.now = 200
    await adt.whenIdle({ timeoutMs: 10_000 })
    const clearAt = Date.now()
    await sleep(500)
    await b.alerts!.evaluate()
    expect(hook.accepted).toHaveLength(3)
    await until(() => hook.accepted.length === 4, 10_000, 'the second resolved')
    expect(Date.now() - clearAt).toBeGreaterThanOrEqual(1400)
    expect(hook.accepted[3]).toMatchObject({ state: 'resolved', since: hook.accepted[2]!.since, flapping: true })
  })
})

describe('credential-fail-fast resolves on a token, not on a timer', () => {
  let as: AuthorizationServer
  afterEach(() => as?.close())

  it('stays firing after failFastMs ends; resolves when a token is obtained; a new invalid_client after that fires again', async () => {
    const b = await bed()
    const hook = await webhookReceiver()
    const api = await startApi()
    closing.push(hook.close, api.close, b.close)
    as = await startAuthorizationServer()
    as.registerClient({ clientId: 'adt-client', authMethod: 'client_secret_basic', secret: 'right-secret-value' })
    const env = { ADT_SECRET: 'wrong-secret-value' }
    const channel = await b.channel({
      name: 'adt',
      credentials: { partner: { grant: 'client_credentials', tokenUrl: `${as.issuer}/token`, clientId: 'adt-client', clientAuth: { method: 'client_secret_basic', secret: { $env: 'ADT_SECRET' } }, failFastMs: 300 } },
      destinations: [{ name: 'api', type: 'http', config: { url: api.url, credential: 'partner' }, retry: { maxAttempts: 1000, initialDelayMs: 10, maxDelayMs: 200 } }],
    }, env)
    const loaded = await alertsFile(b.dir, {
      checkIntervalMs: 20, webhooks: { ops: fastWebhook(hook.url) },
      alerts: [{ name: 'token', condition: 'credential-fail-fast', credential: 'partner', webhook: 'ops', clearAfterMs: 0 }],
    }, env)
    const credential = (name: string, ch: LoadedChannel) => createTokenProvider(name, ch.credentials[name] as unknown as CredentialConfig, { log: b.log, dataDir: b.dir })
    await b.start([channel], loaded, { credential })
    const adt = b.handles[0]!
    await adt.checkCredential('partner').catch(() => {})
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    expect(hook.accepted[0]!.summary).toMatch(/^credential partner of channel adt fails fast until .*invalid_client/)

    // The fail-fast window (300 ms) ends; no token was obtained: still firing, nothing sent.
    await sleep(800)
    expect(adt.credentials().partner!.failingFastUntil).toBeUndefined()
    await b.alerts!.evaluate()
    expect(hook.accepted.map((n) => n.state)).toEqual(['firing'])

    as.registerClient({ clientId: 'adt-client', authMethod: 'client_secret_basic', secret: 'wrong-secret-value' })
    await adt.checkCredential('partner')
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    expect(hook.accepted[1]).toMatchObject({ state: 'resolved', credential: 'partner' })
    expect(hook.accepted[1]!.summary).toMatch(/^credential partner of channel adt obtained a token again at \d{4}-\d\d-\d\dT[\d:.]+Z$/)

    as.registerClient({ clientId: 'adt-client', authMethod: 'client_secret_basic', secret: 'another-secret-value' })
    await adt.checkCredential('partner').catch(() => {})
    await until(() => hook.accepted.length === 3, 10_000, 'the second firing')
    expect(hook.accepted.map((n) => n.state)).toEqual(['firing', 'resolved', 'firing'])
    expect(b.lines.filter((l) => l.includes('"alert firing"'))).toHaveLength(2)
    const seen = JSON.stringify(hook.requests.map((r) => r.body)) + b.lines.join('')
    for (const secret of [...Object.values(env), ...as.secretsSeen()]) expect(seen).not.toContain(secret)
  })
})
