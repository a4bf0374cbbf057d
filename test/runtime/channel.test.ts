import { describe, it, expect } from 'vitest'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { createLogger, silentLogger } from '../../shared/log/index.ts'
import { defineComponent, type Message, type MessageInput } from '../../shared/component.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { loadChannelObject } from '../../engine/load.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { startApi, feedSource, destination, channel, filter, until, useRuntimeFixture } from './_helpers.ts'

const rt = useRuntimeFixture({ pollIntervalMs: 50 })

describe('startChannel', () => {
  it('delivers in arrival order with a stable idempotency key and records the outcome', async () => {
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] })
    const ids: string[] = []
    for (let i = 0; i < 20; i++) ids.push((await src.emit({ n: i })).id)
    await h.whenIdle()
    expect(rt.api.received.map((r) => (r.body as { n: number }).n)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    expect(rt.api.keys()).toEqual(ids.map((id) => `${id}:api`))
    const d = (await rt.store.get(ids[0]!))!
    expect(d.message.status).toBe('delivered')
    expect(d.deliveries).toEqual([expect.objectContaining({ destination: 'api', status: 'delivered', attempts: 1, responseStatus: 200, responseExcerpt: 'ok' })])
    expect(h.counters()).toMatchObject({ received: 20, delivered: 20, queued: 0, errors: 0, retrying: 0 })
  })

  it('a message that finishes while a claim waits on the store makes room for the next one already claimed, without waiting for that claim', async () => {
    const src = feedSource()
    // The first claim answers at once; every later one waits at a gate (a store a group commit away).
    let open!: () => void
    const gate = new Promise<void>((ok) => (open = ok))
    let claims = 0
    const store: MessageStore = Object.assign(Object.create(rt.store) as MessageStore, {
      claim: async (...args: Parameters<MessageStore['claim']>) => {
        if (++claims > 1) await gate
        return rt.store.claim(...args)
      },
    })
    for (let i = 0; i < 4; i++) await rt.store.enqueue('test', { body: { n: i } })
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)], options: { concurrency: 1 } }, { store, prefetch: 2 })
    // Claim 1 took messages 0 and 1; message 0 started, and claim 2 waits for room behind message 1.
    // Messages 0 and 1 are both delivered while claim 2 is still held.
    await until(() => rt.api.received.length === 2)
    expect([claims, rt.api.received.map((r) => (r.body as { n: number }).n)]).toEqual([2, [0, 1]])
    open()
    await h.whenIdle()
    expect(rt.api.received.map((r) => (r.body as { n: number }).n)).toEqual([0, 1, 2, 3])
  })

  it('emit resolves only after the message is in the store', async () => {
    const src = feedSource()
    rt.api.behaviour = () => ({ status: 200, hang: true })
    await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] })
    const { id } = await src.emit({ a: 1 })
    const reader = openSqliteStore({ dataDir: rt.dir.path, owner: false })
    expect((await reader.get(id))!.message.body).toEqual({ a: 1 })
    await reader.close()
    rt.api.releaseHanging()
  })

  it('counts duplicates by dedupe key without storing them twice', async () => {
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] })
    const a = await src.emit({ a: 1 }, { dedupeKey: 'k1' })
    const b = await src.emit({ a: 1 }, { dedupeKey: 'k1' })
    expect(b).toEqual({ id: a.id, duplicate: true })
    await h.whenIdle()
    expect(rt.api.received).toHaveLength(1)
    expect(h.counters()).toMatchObject({ received: 1, duplicates: 1 })
  })

  it('runs filters: null filters the message, an array splits it into parts with their own ids', async () => {
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      filters: [filter((m) => ((m.body as { drop?: boolean }).drop ? null : m)), filter((m) => (Array.isArray(m.body.items) ? m.body.items.map((x: unknown) => ({ ...m, body: x })) : { ...m, body: { ...m.body, seen: true } }))],
      destinations: [destination('api', rt.api.url)],
    })
    const dropped = await src.emit({ drop: true })
    const split = await src.emit({ items: ['a', 'b', 'c'] })
    const one = await src.emit({ x: 1 })
    await h.whenIdle()
    expect((await rt.store.get(dropped.id))!.message.status).toBe('filtered')
    expect((await rt.store.get(dropped.id))!.deliveries.map((d) => d.status)).toEqual(['filtered'])
    expect(rt.api.received.map((r) => [r.key, r.body])).toEqual([
      [`${split.id}.0:api`, 'a'], [`${split.id}.1:api`, 'b'], [`${split.id}.2:api`, 'c'], [`${one.id}:api`, { x: 1, seen: true }],
    ])
    expect((await rt.store.get(split.id))!.deliveries.map((d) => [d.part, d.status])).toEqual([[0, 'delivered'], [1, 'delivered'], [2, 'delivered']])
    expect(h.counters()).toMatchObject({ filtered: 1, delivered: 2 })
  })

  it('a filter that throws puts the message in error and the channel moves on', async () => {
    const src = feedSource()
    const h = await rt.start({ source: src.definition, filters: [filter((m) => { if (m.body.bad) throw new Error('cannot map'); return m })], destinations: [destination('api', rt.api.url)] })
    const bad = await src.emit({ bad: true })
    await src.emit({ good: true })
    await h.whenIdle()
    const d = (await rt.store.get(bad.id))!
    expect(d.message.status).toBe('error')
    expect(d.message.error).toBe('filters/0: cannot map')
    expect(rt.api.received).toHaveLength(1)
  })

  it('a permanent 400 goes to error at once with the excerpt; resubmit redelivers once the API is fixed', async () => {
    const src = feedSource()
    rt.api.behaviour = () => ({ status: 400, body: '{"error":"mrn missing"}' })
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] })
    const { id } = await src.emit({ n: 1 })
    await src.emit({ n: 2 })
    await h.whenIdle()
    const d = (await rt.store.get(id))!
    expect(d.message.status).toBe('error')
    expect(d.message.error).toBe(`api: ERR_HTTP_STATUS: POST ${rt.api.url} answered 400`)
    expect(d.deliveries).toEqual([expect.objectContaining({ status: 'error', attempts: 1, responseStatus: 400, responseExcerpt: '{"error":"mrn missing"}' })])
    expect(rt.api.received.filter((r) => r.key === `${id}:api`)).toHaveLength(1)
    expect(h.counters().errors).toBe(2)

    rt.api.behaviour = () => undefined
    expect(await rt.store.resubmit({ ids: [id] })).toEqual([id])
    h.wake()
    await h.whenIdle()
    const after = (await rt.store.get(id))!
    expect(after.message.status).toBe('delivered')
    expect(after.attempts.map((a) => [a.outcome, a.responseStatus])).toEqual([['permanent', 400], ['delivered', 200]])
    expect(rt.api.received.filter((r) => r.key === `${id}:api`)).toHaveLength(2)
  })

  it('with two destinations, resubmit resends only to the one that failed', async () => {
    const other = await startApi()
    try {
      const src = feedSource()
      other.behaviour = () => ({ status: 422, body: 'nope' })
      const h = await rt.start({ source: src.definition, destinations: [destination('a', rt.api.url), destination('b', other.url)] })
      const { id } = await src.emit({ n: 1 })
      await h.whenIdle()
      expect((await rt.store.get(id))!.deliveries.map((d) => [d.destination, d.status])).toEqual([['a', 'delivered'], ['b', 'error']])
      other.behaviour = () => undefined
      await rt.store.resubmit({ status: 'error' })
      h.wake()
      await h.whenIdle()
      expect((await rt.store.get(id))!.message.status).toBe('delivered')
      expect(rt.api.received).toHaveLength(1)
      expect(other.received).toHaveLength(2)
    } finally {
      await other.close()
    }
  })

  it('onError "stop" stops the channel after a message in error and leaves the rest queued', async () => {
    const src = feedSource()
    rt.api.behaviour = ({ n }) => (n === 1 ? { status: 400, body: 'bad' } : undefined)
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)], options: { onError: 'stop' } })
    await src.emit({ n: 1 })
    const second = await src.emit({ n: 2 })
    const outcome = await h.stopped
    expect(outcome.reason).toBe('error')
    expect(outcome.error!.message).toMatch(/^channel test stopped: message \w+ in error: api: ERR_HTTP_STATUS: POST .* answered 400$/)
    expect(h.state).toBe('stopped')
    expect(src.stopped).toBe(1)
    expect((await rt.store.get(second.id))!.message.status).toBe('queued')
    expect(rt.api.received).toHaveLength(1)
  })

  it('refuses emits with a retryable ERR_BACKPRESSURE when the queue is at its limit', async () => {
    const src = feedSource()
    rt.api.behaviour = () => ({ status: 200, hang: true })
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)], options: { queueLimit: 3 } })
    for (let i = 0; i < 3; i++) await src.emit({ i })
    const err = await src.emit({ i: 3 }).catch((e) => e)
    expect(err.code).toBe('ERR_BACKPRESSURE')
    expect(err.retryable).toBe(true)
    expect(err.retryAfterMs).toBe(1000)
    expect(err.message).toBe('channel test: queue is full (3 messages pending)')
    expect(h.counters().refused).toBe(1)
    rt.api.behaviour = () => undefined
    rt.api.releaseHanging()
    await h.whenIdle()
    await src.emit({ i: 4 })
    await h.whenIdle()
    expect(h.counters().delivered).toBe(4)
  })

  it('concurrency 1 sends one at a time; concurrency 4 sends up to four at once', async () => {
    rt.api.behaviour = () => ({ status: 200, delayMs: 40 })
    const src = feedSource()
    const h1 = await rt.start({ name: 'one', source: src.definition, destinations: [destination('api', rt.api.url)] })
    for (let i = 0; i < 6; i++) await src.emit({ i })
    await h1.whenIdle()
    expect(rt.api.maxActive).toBe(1)
    const src4 = feedSource()
    const h4 = await rt.start({ name: 'four', source: src4.definition, destinations: [destination('api', rt.api.url)], options: { concurrency: 4 } })
    await Promise.all(Array.from({ length: 12 }, (_, i) => src4.emit({ i })))
    await h4.whenIdle()
    expect(rt.api.maxActive).toBe(4)
    expect(h4.counters().delivered).toBe(12)
  })

  it('a message backing off at one destination while another destination still delivers it counts as under way (concurrency 1, orderBy)', async () => {
    // Message a: its first attempt at A fails (a retry in 1 s), its delivery to B takes 300 ms.
    rt.api.behaviour = ({ key, body }) => {
      const k = (body as { k: string }).k
      if (key.endsWith(':A') && k === 'a' && rt.api.received.filter((r) => r.key === key).length === 1) return { status: 503 }
      return key.endsWith(':B') && k === 'a' ? { status: 200, delayMs: 300 } : undefined
    }
    const retry = { retry: { maxAttempts: 5, initialDelayMs: 1000, maxDelayMs: 1000, maxElapsedMs: 60_000 } }
    const src = feedSource()
    const h = await rt.start({
      source: src.definition, destinations: [destination('A', `${rt.api.url}?A`, retry), destination('B', `${rt.api.url}?B`, retry)],
      options: { orderBy: 'k', concurrency: 1 },
    }, { random: () => 1 })
    await src.emit({ k: 'a' })
    await src.emit({ k: 'b' })
    await until(() => h.counters().delivered === 2)
    const at = (k: string, d: string) => rt.api.received.find((r) => (r.body as { k: string }).k === k && r.key.endsWith(`:${d}`))!.at
    // b starts once a is only waiting (its delivery to B answered), not while a is still being delivered.
    expect(Math.min(at('b', 'A'), at('b', 'B')) - at('a', 'B')).toBeGreaterThanOrEqual(300)
    expect(rt.api.received.map((r) => `${(r.body as { k: string }).k}${r.key.slice(-1)}`).sort()).toEqual(['aA', 'aA', 'aB', 'bA', 'bB'])
  })

  it('gives components a context: state in the store, channel dir, data dir, signal', async () => {
    let seen: { channelDir: string; dataDir: string; name: string; aborted: boolean } | undefined
    let ctxSignal: AbortSignal | undefined
    const source = defineComponent({
      type: 'stateful', kind: 'source', description: 's', configSchema: { type: 'object' },
      create: (_c, ctx) => ({
        async start() {
          ctxSignal = ctx.signal
          const before = await ctx.state.get<number>('cursor')
          await ctx.state.set('cursor', (before ?? 0) + 1)
          seen = { channelDir: ctx.channelDir, dataDir: ctx.dataDir, name: ctx.name, aborted: ctx.signal.aborted }
        },
        stop() {},
      }),
    })
    const h = await rt.start({ source, destinations: [destination('api', rt.api.url)] })
    expect(seen).toEqual({ channelDir: rt.dir.path, dataDir: rt.dir.path, name: 'source', aborted: false })
    expect(await rt.store.getState('test', 'source', 'cursor')).toBe(1)
    await h.stop()
    expect(ctxSignal!.aborted).toBe(true)
  })

  it('gives components the credentials and HTTP client from deps; counts tokens; closes providers on stop', async () => {
    let closed = 0
    const provider = { name: 'epic', stats: () => ({ tokenRequests: 4, tokensFetched: 3, tokenRequestsFailed: 1, tokenErrors: 0 }), close: async () => { closed++ } } as unknown as import('../../shared/oauth/types.ts').TokenProvider
    const http = { request: async () => ({ status: 201, headers: {}, body: 'created' }) } as unknown as import('../../shared/http/types.ts').HttpClient
    const asked: string[] = []
    const dest = defineComponent({
      type: 'uses-ctx', kind: 'destination', description: 'd', configSchema: { type: 'object' },
      create: (_c, ctx) => {
        const cred = ctx.credential('epic')
        expect(() => ctx.credential('other')).toThrow('channel test has no credential "other"')
        return { async deliver() { const r = await ctx.http.request({ url: 'http://127.0.0.1:1/', credential: cred }); return { status: r.status, excerpt: r.body } } }
      },
    })
    const src = feedSource()
    const ch = channel({ dir: rt.dir.path, source: src.definition, destinations: [destination('d', '', { definition: dest, config: {} })] })
    ch.credentials = { epic: { preset: 'epic-backend' } }
    const h = await startChannel(ch, { store: rt.store, log: silentLogger, dataDir: rt.dir.path, http, credential: (name, c) => { asked.push(`${c.name}/${name}`); return provider } })
    rt.handles.push(h)
    const { id } = await src.emit({ n: 1 })
    await h.whenIdle()
    expect(asked).toEqual(['test/epic'])
    expect(h.counters()).toMatchObject({ tokensFetched: 3, tokenRequestsFailed: 1 })
    expect((await rt.store.get(id))!.deliveries[0]).toMatchObject({ status: 'delivered', responseStatus: 201, responseExcerpt: 'created' })
    await h.stop()
    expect(closed).toBe(1)
  })

  it('a store write that fails after delivery puts the message back in the queue ahead of the rest (at least once, order kept)', async () => {
    let failures = 1
    const flaky: MessageStore = Object.create(rt.store)
    flaky.complete = (...a) => (failures-- > 0 ? Promise.reject(Object.assign(new Error('disk I/O error'), { code: 'ERR_STORE' })) : rt.store.complete(...a))
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] }, { store: flaky, pollIntervalMs: 20 })
    for (let i = 0; i < 3; i++) await src.emit({ i })
    await h.whenIdle()
    expect(rt.api.received.map((r) => (r.body as { i: number }).i)).toEqual([0, 0, 1, 2])
    expect(h.counters()).toMatchObject({ delivered: 3, errors: 0 })
  })

  it('stop lets an in-flight delivery finish within the timeout', async () => {
    rt.api.behaviour = () => ({ status: 200, delayMs: 300 })
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] })
    const { id } = await src.emit({ n: 1 })
    await until(() => rt.api.received.length === 1)
    await h.stop({ timeoutMs: 3000 })
    expect((await rt.store.get(id))!.message.status).toBe('delivered')
    const err = await src.emit({ n: 2 }).catch((e) => e)
    expect(err.code).toBe('ERR_SHUTDOWN')
  })

  it('stop releases a delivery that outlives the timeout; a restart delivers it', async () => {
    rt.api.behaviour = () => ({ status: 200, hang: true })
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] })
    const { id } = await src.emit({ n: 1 })
    const { id: id2 } = await src.emit({ n: 2 })
    await until(() => rt.api.received.length === 1)
    const t0 = Date.now()
    await h.stop({ timeoutMs: 200 })
    expect(Date.now() - t0).toBeLessThan(2000)
    expect((await rt.store.get(id))!.message.status).toBe('queued')
    expect((await rt.store.get(id2))!.message.status).toBe('queued')
    // The attempt the stop cut off is in the history: the API may have taken it (here it did).
    expect((await rt.store.get(id))!.attempts.map((a) => [a.attempt, a.outcome, a.error])).toEqual([[1, 'retryable', expect.stringContaining('cut off by the engine stopping')]])
    expect((await rt.store.get(id2))!.attempts).toEqual([])
    rt.api.behaviour = () => undefined
    const src2 = feedSource()
    const h2 = await rt.start({ source: src2.definition, destinations: [destination('api', rt.api.url)] })
    await h2.whenIdle()
    expect((await rt.store.get(id))!.message.status).toBe('delivered')
    expect(rt.api.keys()).toEqual([`${id}:api`, `${id}:api`, `${id2}:api`])
    expect((await rt.store.get(id))!.attempts.map((a) => [a.attempt, a.outcome])).toEqual([[1, 'retryable'], [2, 'delivered']])
  })
})

describe('stopping with components whose stop() or close() throws at once', () => {
  /** A destination whose close() throws before returning a promise (`close() { this.pool.end() }` on an ended pool). */
  const throwingClose = (deliverOk = true) => defineComponent({
    type: 'throwing-close', kind: 'destination', description: 'close throws synchronously', configSchema: { type: 'object' },
    create: () => ({
      async deliver() {
        if (!deliverOk) throw new Error('rejected by the partner system')
        return {}
      },
      close() { throw new Error('pool already ended') },
    }),
  })

  it('logs each failure, still closes the other components and the credentials, and ends stopped', async () => {
    const closed: string[] = []
    const lines: string[] = []
    const log = createLogger({ destination: new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb() } }), pretty: false })
    const source = defineComponent({
      type: 'throwing-stop', kind: 'source', description: 'stop throws synchronously', configSchema: { type: 'object' },
      create: () => ({ start() {}, stop() { throw new Error('watcher already closed') } }),
    })
    const closes = defineComponent({
      type: 'closes', kind: 'destination', description: 'records its close', configSchema: { type: 'object' },
      create: (_c, ctx) => {
        ctx.credential('epic')
        return { async deliver() { return {} }, async close() { closed.push('destination ok') } }
      },
    })
    const provider = { name: 'epic', stats: () => ({ tokenRequests: 0, tokensFetched: 0, tokenRequestsFailed: 0, tokenErrors: 0 }), close: async () => { closed.push('credential epic') } } as unknown as import('../../shared/oauth/types.ts').TokenProvider
    const ch = channel({
      dir: rt.dir.path, source,
      filters: [defineComponent({ type: 'f', kind: 'filter', description: 'close throws', configSchema: { type: 'object' }, create: () => ({ process: (m: Message) => m, close() { throw new Error('cache already closed') } }) })],
      destinations: [destination('broken', '', { definition: throwingClose() as never, config: {} }), destination('ok', '', { definition: closes, config: {} })],
    })
    ch.credentials = { epic: { preset: 'epic-backend' } }
    const h = await startChannel(ch, { store: rt.store, log, dataDir: rt.dir.path, credential: () => provider })
    const stop = await h.stop().then(() => 'resolved', (e: Error) => `rejected: ${e.message}`)
    const stopped = await Promise.race([h.stopped.then((o) => o.reason), new Promise((r) => setTimeout(() => r('never settled'), 500))])
    expect({ stop, state: h.state, stopped, closed }).toEqual({ stop: 'resolved', state: 'stopped', stopped: 'stopped', closed: ['destination ok', 'credential epic'] })
    const failures = lines.map((l) => JSON.parse(l) as { msg: string; err?: { message: string } }).filter((l) => l.msg.endsWith(' failed'))
    expect(failures.map((l) => `${l.msg}: ${l.err?.message}`)).toEqual([
      'source stop failed: watcher already closed',
      'filter close failed: cache already closed',
      'destination broken close failed: pool already ended',
    ])
  })

  it('onError "stop": the channel stops itself, with no unhandled rejection', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (e: unknown) => unhandled.push(e)
    process.on('unhandledRejection', onUnhandled)
    try {
      const src = feedSource()
      const h = await rt.start({ source: src.definition, options: { onError: 'stop' }, destinations: [destination('d', '', { definition: throwingClose(false) as never, config: {} })] })
      await src.emit({ n: 1 })
      const stopped = await Promise.race([h.stopped.then((o) => o.reason), new Promise((r) => setTimeout(() => r('never settled'), 2000))])
      await new Promise((r) => setImmediate(r))
      expect({ stopped, state: h.state, unhandled: unhandled.map((e) => (e as Error).message) }).toEqual({ stopped: 'error', state: 'stopped', unhandled: [] })
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})

describe('the built-in http-listener in the runtime', () => {
  it('answers 202 only after the durable write, and 503 with Retry-After once queueLimit is reached', async () => {
    rt.api.behaviour = () => ({ status: 200, hang: true }) // the destination holds the first message
    const ch = await loadChannelObject({
      name: 'listener',
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'api', type: 'http', config: { url: rt.api.url } }],
      options: { queueLimit: 1 },
    }, { file: join(rt.dir.path, 'listener.json'), env: {} })
    // Enqueues wait at a gate, so the test sees what the listener answers before the write.
    let open!: () => void
    const gate = new Promise<void>((ok) => (open = ok))
    let enqueues = 0
    // Every operation goes to the real store; only enqueue waits at the gate.
    const store: MessageStore = Object.assign(Object.create(rt.store) as MessageStore, { enqueue: async (c: string, input: MessageInput) => { enqueues++; await gate; return rt.store.enqueue(c, input) } })
    const http = createHttpClient()
    try {
      const h = await startChannel(ch, { store, log: silentLogger, dataDir: rt.dir.path, http })
      rt.handles.push(h)
      const url = `http://127.0.0.1:${h.source.address!()!.port}/`
      const post = (body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      let answered = false
      const first = post({ n: 1 }).then(async (r) => { answered = true; return { status: r.status, body: (await r.json()) as { id: string } } })
      await until(() => enqueues === 1)
      for (let i = 0; i < 200; i++) await new Promise((ok) => setImmediate(ok))
      expect(answered).toBe(false) // not acknowledged while the write has not happened
      open()
      const res = await first
      expect(res.status).toBe(202)
      // Durable: another connection to the data directory sees it, as a restarted engine would.
      const reader = openSqliteStore({ dataDir: rt.dir.path, owner: false })
      expect((await reader.get(res.body.id))!.message).toMatchObject({ channel: 'listener', body: { n: 1 } })
      await reader.close()

      await until(() => rt.api.received.length === 1) // held by the API: the queue (limit 1) is full
      const refused = await post({ n: 2 })
      expect(refused.status).toBe(503)
      expect(refused.headers.get('retry-after')).toBe('1')
      expect(await refused.json()).toEqual({ error: 'queue full, retry later' })
      expect(h.counters()).toMatchObject({ received: 1, refused: 1, queued: 1 })
      expect(enqueues).toBe(1)
      rt.api.releaseHanging()
      await until(() => h.counters().delivered === 1)
      expect((await post({ n: 3 })).status).toBe(202)
      await h.stop({ timeoutMs: 500 })
    } finally {
      await http.close()
    }
  })

  it('answers 503 "store full" (not "queue full") once the store reaches maxStoreBytes', async () => {
    rt.api.behaviour = () => ({ status: 200, hang: true }) // nothing is delivered, so the store only grows
    const ch = await loadChannelObject({
      name: 'listener',
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'api', type: 'http', config: { url: rt.api.url } }],
      options: { maxStoreBytes: 1_048_576 },
    }, { file: join(rt.dir.path, 'listener.json'), env: {} })
    const h = await startChannel(ch, { store: rt.store, log: silentLogger, dataDir: rt.dir.path })
    rt.handles.push(h)
    const url = `http://127.0.0.1:${h.source.address!()!.port}/`
    const post = () => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ note: 'x'.repeat(700_000) }) })
    let res = await post()
    // The size is read at most once a second: post until the store says it is full (bounded).
    for (let n = 0; n < 30 && res.status === 202; n++) {
      await new Promise((ok) => setTimeout(ok, 200))
      res = await post()
    }
    expect(res.status).toBe(503)
    expect(await res.json()).toEqual({ error: 'store full, retry later' })
    rt.api.releaseHanging()
  }, 60_000)
})
