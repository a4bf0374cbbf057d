import { afterEach, describe, expect, it } from 'vitest'
import { until } from '../_setup.ts'
import type { startApi } from '../runtime/_helpers.ts'
import { adtOnApi } from './_alerts.ts'

// Finding (on call): an API that answered 503 until the breaker opened, then 400 to everything,
// got "destination api of channel adt delivers again" though nothing was delivered (a permanent
// answer closes the breaker); and an API answering 4xx to everything fired no alert at all.

const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))

const setup = (alerts: unknown[], behaviour: Parameters<typeof startApi>[0]) => adtOnApi(alerts, behaviour, closing)

describe('destination-failing', () => {
  it('fired on 503s, stays firing while the API answers 400 to everything, and resolves only after a delivered attempt', async () => {
    let status = 503
    const { b, hook, adt } = await setup([{ name: 'down', condition: 'destination-failing', webhook: 'ops', clearAfterMs: 300 }], () => ({ status, body: 'no' }))
    await b.feed.emit({ n: 0 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    status = 400
    await adt.whenIdle({ timeoutMs: 10_000 })
    for (let n = 1; n <= 8; n++) await b.feed.emit({ n })
    await adt.whenIdle({ timeoutMs: 10_000 })
    expect(adt.counters()).toMatchObject({ delivered: 0, errors: 9 })
    expect(adt.destinations()[0]!.breaker).toBe('closed')
    await sleep(1000) // more than clearAfterMs
    await b.alerts!.evaluate()
    expect(hook.accepted.map((n) => n.state)).toEqual(['firing'])

    status = 200
    await b.feed.emit({ n: 9 })
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    expect(hook.accepted.map((n) => [n.alert, n.state, n.destination])).toEqual([['down', 'firing', 'api'], ['down', 'resolved', 'api']])
    expect(hook.accepted[1]!.summary).toMatch(/^destination api of channel adt delivers again \(a delivered attempt at \d{4}-\d\d-\d\dT/)
  })
})

describe('messages-failing', () => {
  it('fires when messages of the channel go to error (an API answering 400 to everything) and resolves once the window holds no new error', async () => {
    const { b, hook, adt } = await setup([{ name: 'errors', condition: 'messages-failing', webhook: 'ops', windowSeconds: 1, clearAfterMs: 0 }], () => ({ status: 400, body: 'bad' }))
    await b.feed.emit({ n: 1 })
    await b.feed.emit({ n: 2 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    const firedAt = Date.now()
    await adt.whenIdle({ timeoutMs: 10_000 })
    expect(adt.counters()).toMatchObject({ delivered: 0, errors: 2 })
    expect(hook.accepted[0]).toMatchObject({ alert: 'errors', condition: 'messages-failing', state: 'firing', channel: 'adt' })
    expect(hook.accepted[0]!.destination).toBeUndefined()
    expect(hook.accepted[0]!.summary).toMatch(/^[12] messages? of channel adt went to error in the last 1 s \(at least 1\)$/)
    await until(() => hook.accepted.length === 2, 10_000, 'resolved')
    expect(Date.now() - firedAt).toBeGreaterThan(500)
    expect(hook.accepted[1]).toMatchObject({ alert: 'errors', state: 'resolved', channel: 'adt', summary: 'no message of channel adt went to error in the last 1 s', since: hook.accepted[0]!.since })
    await sleep(300)
    expect(hook.requests).toHaveLength(2)
  })

  it('holds only from `count` errors within the window; delivered messages do not count', async () => {
    let status = 400
    const { b, hook, adt } = await setup([{ name: 'errors', condition: 'messages-failing', webhook: 'ops', count: 3, windowSeconds: 60 }], () => ({ status }))
    await b.feed.emit({ n: 1 })
    await b.feed.emit({ n: 2 })
    await adt.whenIdle({ timeoutMs: 10_000 })
    status = 200
    for (let n = 3; n <= 5; n++) await b.feed.emit({ n })
    await adt.whenIdle({ timeoutMs: 10_000 })
    expect(adt.counters()).toMatchObject({ delivered: 3, errors: 2 })
    await sleep(200)
    await b.alerts!.evaluate()
    expect(hook.accepted).toEqual([])
    status = 404
    await b.feed.emit({ n: 6 })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    expect(hook.accepted[0]!.summary).toBe('3 messages of channel adt went to error in the last 60 s (at least 3)')
  })
})
