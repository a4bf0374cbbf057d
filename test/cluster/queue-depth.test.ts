import { afterEach, describe, expect, it } from 'vitest'
import { alertsLeadership, createAlerts, type LoadedAlerts } from '../../engine/alerts/index.ts'
import { startChannel, type ChannelHandle } from '../../engine/runtime/index.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { openPostgresStore, type PostgresMessageStore } from '../../shared/store/index.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'
import { alertsFile, fastWebhook, webhookReceiver } from '../alerts/_alerts.ts'
import { channel, destination, feedSource, startApi, tempDir, until, type Behaviour } from '../runtime/_helpers.ts'

// Finding: with three engines on one PostgreSQL store, each engine's queue depth (and the queueLimit
// it refuses at) counted only what it had seen itself while its channel was busy or paused: the
// count of the other engines' messages was re-read only by an idle channel. 600 messages unfinished
// in the database, each engine showed 200 and refused; a paused channel with 90 sent showed 30 on
// each engine. Pauses also reached the other engines only after up to 5 s.

const pg = useEmbeddedPostgres()

const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})

interface Engine { store: PostgresMessageStore; feed: ReturnType<typeof feedSource>; ch: ChannelHandle; alerts?: ReturnType<typeof createAlerts> }

/** A fresh database, a temporary directory and the partner's API (answering per `behaviour`). */
async function cluster(name: string, behaviour: Behaviour) {
  const url = await pg.server.createDatabase(name)
  const dir = await tempDir('weir-cluster-depth-')
  const api = await startApi(behaviour)
  closing.push(dir.remove, api.close)
  return { url, dir: dir.path, api }
}

/** An engine of the cluster in this process: its own store and channel `adt` (the runtime's defaults: poll and pause sync), and the alerts if given. */
async function engine(c: { url: string; dir: string; api: { url: string } }, options: { queueLimit?: number; concurrency?: number } = {}, loaded?: LoadedAlerts): Promise<Engine> {
  const log = silentLogger
  const http = createHttpClient({ log })
  const store = await openPostgresStore({ url: c.url, leaseMs: 3_000 })
  const feed = feedSource()
  const ch = await startChannel(channel({
    name: 'adt', dir: c.dir, source: feed.definition, options,
    destinations: [destination('api', c.api.url, { retry: { maxAttempts: 1000, initialDelayMs: 10, maxDelayMs: 20, maxElapsedMs: 600_000 } })],
  }), { store, log, dataDir: c.dir, http })
  const alerts = loaded && createAlerts(loaded, { store, log, dataDir: c.dir, http, drainMs: 500 })
  await alerts?.start([ch])
  closing.push(async () => {
    await alerts?.stop()
    await ch.stop({ timeoutMs: 500 })
    await store.close()
    await http.close()
  })
  return { store, feed, ch, ...(alerts ? { alerts } : {}) }
}

/** Waits until `cond` holds, for at most `ms` (the cluster's figures must follow within about a second). */
const within = (ms: number, what: string, cond: () => boolean) => until(cond, ms, what)

describe('a cluster\'s queue depth and queueLimit', () => {
  it('counts the messages another engine queued while this engine\'s channel is paused', async () => {
    const c = await cluster('depth_paused', () => undefined)
    const one = await engine(c)
    const two = await engine(c)
    await one.ch.pause()
    await within(6_000, 'engine 2 paused', () => two.ch.status() === 'paused')
    for (let n = 0; n < 30; n++) await one.feed.emit({ n })
    expect(one.ch.counters().queued).toBe(30)
    await within(1_800, 'engine 2 counting engine 1\'s 30 messages', () => two.ch.counters().queued === 30)
    expect(two.store.pending('adt')).toBe(30) // what /api/channels shows as queueDepth and weir_queue_depth exports
    await two.feed.emit({ n: 30 })
    await within(1_800, 'engine 1 counting engine 2\'s message', () => one.ch.counters().queued === 31)
  })

  it('counts the messages another engine queued while this engine\'s channel is busy retrying', async () => {
    const c = await cluster('depth_busy', () => ({ status: 503, body: 'down' }))
    const one = await engine(c, { concurrency: 4 })
    const two = await engine(c, { concurrency: 4 })
    for (let n = 0; n < 8; n++) await two.feed.emit({ n })
    await within(5_000, 'engine 2 retrying', () => two.ch.counters().retrying > 0)
    for (let n = 8; n < 48; n++) await one.feed.emit({ n })
    await within(1_800, 'engine 2 counting all 48', () => two.ch.counters().queued === 48)
    await within(1_800, 'engine 1 counting all 48', () => one.ch.counters().queued === 48)
  })

  it('refuses at queueLimit counting the other engines\' messages, and says it refuses before its own source is refused', async () => {
    const c = await cluster('depth_limit', () => undefined)
    const one = await engine(c, { queueLimit: 5 })
    const two = await engine(c, { queueLimit: 5 })
    await one.ch.pause()
    await within(6_000, 'engine 2 paused', () => two.ch.status() === 'paused')
    for (let n = 0; n < 5; n++) await one.feed.emit({ n })
    await expect(one.feed.emit({ n: 5 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    const before = Date.now()
    // The alerts leader may be engine 2: its `channel-refusing` must see engine 1's senders refused.
    await within(1_800, 'engine 2 refusing', () => two.ch.refusing() !== undefined)
    const r = two.ch.refusing()!
    expect(r.limit).toBe('queueLimit')
    expect(r.since).toBeGreaterThanOrEqual(before - 5)
    expect(r.since).toBeLessThanOrEqual(Date.now())
    expect(two.ch.counters().refused).toBe(0)
    await expect(two.feed.emit({ n: 6 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    expect(two.ch.refusing()).toEqual(r)
    expect(two.ch.counters().refused).toBe(1)

    await one.ch.resume()
    await within(10_000, 'all 5 delivered', () => new Set(c.api.keys()).size === 5)
    await within(1_800, 'engine 2 accepting', () => two.ch.refusing() === undefined)
    await within(1_800, 'engine 1 accepting', () => one.ch.refusing() === undefined)
    await two.feed.emit({ n: 7 })
  })

  it('fires channel-refusing on the engine leading the alerts when another engine\'s senders are refused', async () => {
    const c = await cluster('depth_alert', () => undefined)
    const hook = await webhookReceiver()
    closing.push(hook.close)
    // Evaluated only when the test says so (and once more at each stop).
    const loaded = await alertsFile(c.dir, {
      checkIntervalMs: 600_000, webhooks: { ops: fastWebhook(hook.url) },
      alerts: [{ name: 'full', condition: 'channel-refusing', webhook: 'ops' }],
    })
    const leader = await engine(c, { queueLimit: 3 }, loaded)
    await leader.alerts!.evaluate()
    expect(await leader.store.leadership!.lead(alertsLeadership(loaded.alerts[0]!))).toBe(true)
    const other = await engine(c, { queueLimit: 3 }, loaded)
    await leader.ch.pause()
    await within(6_000, 'other engine paused', () => other.ch.status() === 'paused')
    for (let n = 0; n < 3; n++) await other.feed.emit({ n })
    await expect(other.feed.emit({ n: 3 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    await within(1_800, 'the leader counting the other engine\'s messages', () => leader.ch.counters().queued === 3)
    await other.alerts!.evaluate() // not the leader: evaluates nothing
    await leader.alerts!.evaluate()
    await until(() => hook.accepted.length === 1, 5_000, 'firing')
    expect(hook.accepted[0]).toMatchObject({ alert: 'full', state: 'firing', channel: 'adt' })
    expect(leader.ch.counters().refused).toBe(0)
  })
})

describe('an operator\'s pause in a cluster', () => {
  it('stops the other engines within about a second', async () => {
    const c = await cluster('pause_sync', () => undefined)
    const one = await engine(c)
    const two = await engine(c)
    await two.feed.emit({ n: 0 })
    await within(5_000, 'first message delivered', () => c.api.received.length === 1)
    // Let engine 2's pause sync tick pass, so the pause lands at a random point of its period.
    await new Promise((ok) => setTimeout(ok, 300))
    const t0 = Date.now()
    await one.ch.pause()
    await within(1_500, 'engine 2 paused', () => two.ch.status() === 'paused')
    expect(Date.now() - t0).toBeLessThan(1_500)
    await two.feed.emit({ n: 1 })
    await new Promise((ok) => setTimeout(ok, 500))
    expect(c.api.received).toHaveLength(1)
    await one.ch.resume()
    await within(1_500, 'engine 2 resumed', () => two.ch.status() === 'running')
    await within(3_000, 'second message delivered', () => c.api.received.length === 2)
  })
})
