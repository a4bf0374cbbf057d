// A channel refusing input (queue at queueLimit, store at maxStoreBytes) says so in its handle until
// it accepts a message again or its periodic review finds it would accept one (see
// intake-review.test.ts: reading the flag changes nothing); counters.paused counts every destination held (breaker or operator) and destinations[]
// tell which.
import { describe, expect, it } from 'vitest'
import { textCollector } from '../reliability/_helpers.ts'
import { destination, feedSource, until, useRuntimeFixture } from './_helpers.ts'

describe('refusing input', () => {
  const rt = useRuntimeFixture()

  it('is flagged with the limit and since when, and clears once the queue has room again, with no message sent', async () => {
    const feed = feedSource()
    const h = await rt.start({ source: feed.definition, destinations: [destination('api', rt.api.url)], options: { queueLimit: 1 } })
    expect(h.refusing()).toBeUndefined()
    await h.pause()
    await feed.emit({ n: 1 })
    const before = Date.now()
    await expect(feed.emit({ n: 2 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    const r = h.refusing()
    expect(r).toMatchObject({ limit: 'queueLimit' })
    expect(r!.since).toBeGreaterThanOrEqual(before - 5)
    await expect(feed.emit({ n: 3 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    expect(h.refusing()!.since).toBe(r!.since)
    expect(h.counters().refused).toBe(2)
    await h.resume()
    await h.whenIdle()
    // Cleared by the channel's review, within pollIntervalMs (1 s by default).
    await until(() => h.refusing() === undefined, 3_000, 'refusal cleared')
  })

  it('clears once a message is accepted', async () => {
    const feed = feedSource()
    // No review within the test (pollIntervalMs): only the acceptance can clear the flag.
    const h = await rt.start({ source: feed.definition, destinations: [destination('api', rt.api.url)], options: { queueLimit: 1 } }, { pollIntervalMs: 60_000 })
    await h.pause()
    await feed.emit({ n: 1 })
    await expect(feed.emit({ n: 2 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    await h.resume()
    await h.whenIdle()
    // Held again before the message is accepted: the queue is back at queueLimit when the flag is read,
    // so only the acceptance can have cleared it.
    await h.pause()
    expect(h.refusing()).toMatchObject({ limit: 'queueLimit' })
    await feed.emit({ n: 3 })
    expect(h.refusing()).toBeUndefined()
  })

  it('logs the queue refusing once as it begins and once as it ends, not a line per refused message', async () => {
    const collector = textCollector()
    const feed = feedSource()
    const h = await rt.start({ source: feed.definition, destinations: [destination('api', rt.api.url)], options: { queueLimit: 1 } }, { log: collector.log })
    await h.pause()
    await feed.emit({ n: 1 })
    for (let i = 0; i < 5; i++) await expect(feed.emit({ n: 2 + i })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    const lines = () => collector.texts.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string })
    expect(lines().filter((l) => l.msg.startsWith('refusing messages'))).toEqual([expect.objectContaining({ msg: 'refusing messages: the queue is full (1 messages pending)' })])
    await h.resume()
    await h.whenIdle()
    await feed.emit({ n: 9 })
    expect(lines().filter((l) => l.msg === 'accepting messages again')).toHaveLength(1)
  })

  it('is flagged with maxStoreBytes while the store is full', async () => {
    const feed = feedSource()
    const h = await rt.start({ source: feed.definition, destinations: [destination('api', rt.api.url)], options: { maxStoreBytes: 1024 * 1024 } })
    await h.pause()
    const filler = 'x'.repeat(100_000)
    let refused: unknown
    for (let i = 0; i < 100 && !refused; i++) {
      await feed.emit({ n: i, filler }).catch((e: unknown) => { refused = e })
      await new Promise((ok) => setTimeout(ok, 30))
    }
    expect(refused).toMatchObject({ code: 'ERR_BACKPRESSURE', limit: 'maxStoreBytes' })
    expect(h.refusing()).toMatchObject({ limit: 'maxStoreBytes' })
    // Delivered and purged, the store has room again: the flag clears at a later reading, with no message sent.
    await h.resume()
    await h.whenIdle()
    expect(await rt.store.purge({ statuses: ['delivered'] })).toBeGreaterThan(0)
    await until(() => h.refusing() === undefined, 5000)
  })
})

describe('destination pauses in counters and destinations', () => {
  const rt = useRuntimeFixture()

  it('counts an operator-paused destination in counters.paused, with destinations[].paused true', async () => {
    const feed = feedSource()
    const h = await rt.start({ source: feed.definition, destinations: [destination('api', rt.api.url), destination('audit', rt.api.url)] })
    await h.pause('api')
    expect(h.destinations().find((d) => d.name === 'api')).toMatchObject({ paused: true, breaker: 'closed' })
    expect(h.counters().paused).toBe(1)
    await h.resume('api')
    expect(h.counters().paused).toBe(0)
  })

  it('counts a destination held by its open breaker, with destinations[].paused false and breaker open', async () => {
    rt.api.behaviour = () => ({ status: 503 })
    const feed = feedSource()
    const h = await rt.start({ source: feed.definition, destinations: [destination('api', rt.api.url, { circuitBreaker: { failureThreshold: 1, resetAfterMs: 60_000 } })] })
    await feed.emit({ n: 1 })
    await until(() => h.destinations()[0]!.breaker === 'open')
    expect(h.destinations()[0]).toMatchObject({ paused: false, breaker: 'open' })
    expect(h.counters().paused).toBe(1)
  })
})
