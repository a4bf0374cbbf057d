import { describe, it, expect } from 'vitest'
import { feedSource, destination, until, turns, useRuntimeFixture } from './_helpers.ts'
import type { RuntimeObserver } from '../../engine/runtime/observer.ts'
import { readPauses } from '../../engine/runtime/pause.ts'

const rt = useRuntimeFixture({ pollIntervalMs: 50 })

describe('operator pauses', () => {
  it('a paused channel accepts messages but starts none until resumed, and the pause survives a restart', async () => {
    const src = feedSource()
    const parts = { source: src.definition, destinations: [destination('api', rt.api.url)] }
    let h = await rt.start(parts)
    await h.pause()
    expect(h.status()).toBe('paused')
    for (let i = 0; i < 5; i++) await src.emit({ n: i })
    await turns(500)
    expect(rt.api.received).toHaveLength(0)
    expect(h.counters().queued).toBe(5)

    await h.stop()
    h = await rt.start(parts)
    expect(h.status()).toBe('paused')
    await turns(500)
    expect(rt.api.received).toHaveLength(0)

    await h.resume()
    expect(h.status()).toBe('running')
    await h.whenIdle()
    expect(rt.api.received.map((r) => (r.body as { n: number }).n)).toEqual([0, 1, 2, 3, 4])
  })

  it('a paused destination holds its deliveries while the others go on', async () => {
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('a', rt.api.url + '?a'), destination('b', rt.api.url + '?b')], options: { concurrency: 4 } })
    await h.pause('b')
    expect(h.destinations().map((d) => [d.name, d.paused])).toEqual([['a', false], ['b', true]])
    await src.emit({ n: 1 })
    await until(() => rt.api.received.length === 1)
    await turns(500)
    expect(rt.api.keys()).toEqual([expect.stringMatching(/:a$/)])
    await h.resume('b')
    await h.whenIdle()
    expect(rt.api.keys().map((k) => k.split(':')[1]).sort()).toEqual(['a', 'b'])
    await expect(h.pause('nope')).rejects.toMatchObject({ code: 'ERR_USAGE' })
  })

  it('two destinations paused at the same moment are both paused, in memory and in the store, until both are resumed', async () => {
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('a', rt.api.url + '?a'), destination('b', rt.api.url + '?b')], options: { concurrency: 4 } })
    await Promise.all([h.pause('a'), h.pause('b')])
    expect(h.destinations().map((d) => [d.name, d.paused])).toEqual([['a', true], ['b', true]])
    expect(await readPauses(rt.store, 'test')).toEqual({ channel: false, destinations: ['a', 'b'] })
    await src.emit({ n: 1 })
    await turns(500)
    expect(rt.api.received).toHaveLength(0)

    await Promise.all([h.resume('a'), h.resume('b')])
    expect(await readPauses(rt.store, 'test')).toEqual({ channel: false, destinations: [] })
    await h.whenIdle()
    expect(rt.api.keys().map((k) => k.split(':')[1]).sort()).toEqual(['a', 'b'])
  })

  it('tells the observer of every receipt, attempt and ending', async () => {
    const seen: string[] = []
    const observer: RuntimeObserver = {
      received: (c, dup) => seen.push(`received ${c} ${dup}`),
      stored: (c, ms) => seen.push(`stored ${c} ${ms > 0}`),
      attempt: (c, d, outcome, ms) => seen.push(`attempt ${c} ${d} ${outcome} ${ms >= 0}`),
      finished: (c, status) => seen.push(`finished ${c} ${status}`),
    }
    let n = 0
    rt.api.behaviour = () => (++n === 1 ? { status: 503 } : { status: 400 })
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] }, { observer })
    await src.emit({ a: 1 }, { dedupeKey: 'k' })
    await src.emit({ a: 1 }, { dedupeKey: 'k' })
    await h.whenIdle()
    expect(seen.filter((e) => e.startsWith('received'))).toEqual(['received test false', 'received test true'])
    expect(seen.filter((e) => e.startsWith('stored'))).toEqual(['stored test true', 'stored test true'])
    expect(seen.filter((e) => !e.startsWith('received') && !e.startsWith('stored'))).toEqual(['attempt test api retryable true', 'attempt test api permanent true', 'finished test error'])
  })

  const boom = () => { throw new Error('observer bug') }
  it.each<[string, RuntimeObserver]>([
    ['finished() (told of each ending) throws', { finished: boom }],
    ['received(), stored() and attempt() throw', { received: boom, stored: boom, attempt: boom }],
  ])('an observer whose %s changes nothing: emits resolve, each message is delivered once, in order, and counted; onError "stop" still stops', async (_, observer) => {
    rt.api.behaviour = ({ body }) => ((body as { n: number }).n === 3 ? { status: 400, body: 'bad' } : undefined)
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)], options: { onError: 'stop' } }, { observer })
    await h.pause()
    const ids: string[] = []
    for (let n = 0; n < 5; n++) ids.push((await src.emit({ n })).id)
    await h.resume()
    await until(() => h.state === 'stopped', 5000, 'the channel stopped by onError "stop"')
    expect(await h.stopped).toMatchObject({ reason: 'error', error: { code: 'ERR_CHANNEL_STOPPED' } })
    expect(h.counters()).toMatchObject({ received: 5, delivered: 3, errors: 1 })
    const statuses = await Promise.all(ids.map(async (id) => (await rt.store.get(id))!.message.status))
    expect(statuses).toEqual(['delivered', 'delivered', 'delivered', 'error', 'queued'])
    expect(rt.api.received.map((r) => (r.body as { n: number }).n)).toEqual([0, 1, 2, 3])
  })
})
