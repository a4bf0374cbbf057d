import type {
  ComponentContext, Destination, Emit, EmitResult, Filter, Message, MessageInput, Source,
} from '../../shared/component.ts'
import type { LoadedChannel, LoadedComponent, LoadedDestination, RetryPolicy } from '../../shared/config/types.ts'
import { RetryableError, WeirError, isWeirError } from '../../shared/errors.ts'
import type { HttpClient } from '../../shared/http/types.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { TokenProvider } from '../../shared/oauth/types.ts'
import { redactedExcerpt } from '../../shared/oauth/errors.ts'
import { scrubSecrets } from '../../shared/secret.ts'
import type { ClaimedMessage, DeliveryUpdate, MessageStore, StoredMessage } from '../../shared/store/types.ts'
import { backoffDelay, sleep } from './backoff.ts'
import { CircuitBreaker } from './breaker.ts'

export interface RuntimeDeps {
  /** The store shared by every channel of the process; the caller opens and closes it. */
  store: MessageStore
  log: Logger
  dataDir: string
  /** Builds the token provider of a named credential of `channel`. */
  credential?: (name: string, channel: LoadedChannel) => TokenProvider
  http?: HttpClient
  now?: () => number
  random?: () => number
  /** How often an idle channel looks for messages queued by another process (`weir messages resubmit`). Default 1000 ms. */
  pollIntervalMs?: number
  /** Messages claimed at once per channel (kept in memory, released on stop). Default `max(concurrency, 16)`. */
  prefetch?: number
  /** Retry-After given to a refused sender when the queue is full. Default 1000 ms. */
  backpressureRetryAfterMs?: number
}

export interface ChannelCounters {
  /** Messages accepted from the source since start (duplicates excluded). */
  received: number
  duplicates: number
  /** Messages of the channel not yet finished (queued, in-flight, retrying), in the store. */
  queued: number
  delivered: number
  filtered: number
  errors: number
  /** Deliveries waiting for their next attempt now. */
  retrying: number
  /** Messages refused because the queue was full. */
  refused: number
  /** Token requests made by the channel's credentials. */
  tokensFetched: number
  /** Destinations paused by their circuit breaker now. */
  paused: number
}

export type ChannelState = 'running' | 'stopping' | 'stopped'

export interface ChannelHandle {
  readonly name: string
  /** The source instance: the harness feeds it (address() of a listener, tick() of a schedule). */
  readonly source: Source
  readonly state: ChannelState
  counters(): ChannelCounters
  /** Stops the source, lets in-flight work finish within `timeoutMs` (default `options.shutdownTimeoutMs`), releases the rest to the queue. Does not close the store. */
  stop(options?: { timeoutMs?: number }): Promise<void>
  /** Settles when the channel has stopped, by `stop()` or by itself (`onError: "stop"`). */
  readonly stopped: Promise<{ reason: 'stopped' | 'error'; error?: Error }>
  /** Resolves once nothing is pending: no emit in progress, no message queued or in flight. For tests and `weir test`. */
  whenIdle(options?: { timeoutMs?: number }): Promise<void>
  /** Looks for queued work now (after a resubmit). */
  wake(): void
  /** Circuit breaker state per destination. */
  breakers(): Record<string, { state: string; openings: number }>
}

class ShutdownError extends WeirError {
  override code = 'ERR_SHUTDOWN' as const
}

/** A filter failed retryably: the message goes back to the queue and the channel waits `delayMs` before claiming again. */
class FilterRetry extends WeirError {
  constructor(message: string, readonly delayMs: number) {
    super(message)
  }
}

/** Retry policy of filters when the channel has no destination to borrow it from (the schema defaults). */
const DEFAULT_FILTER_RETRY: RetryPolicy = { maxAttempts: 10, initialDelayMs: 500, maxDelayMs: 60_000, maxElapsedMs: 900_000 }

const EXCERPT_MAX = 500

function describe(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e)
  const code = isWeirError(e) && e.code !== 'ERR_WEIR' ? `${e.code}: ` : ''
  return scrubSecrets(`${code}${msg}`).slice(0, EXCERPT_MAX)
}

/** Retryable unless the error says otherwise: unknown failures (a reset socket) are usually transient. */
function isRetryable(e: unknown): boolean {
  if (typeof e === 'object' && e !== null && 'retryable' in e && typeof (e as { retryable: unknown }).retryable === 'boolean') {
    return (e as { retryable: boolean }).retryable
  }
  return true
}

/**
 * `status` and `excerpt` a destination may attach to the error it throws, directly or on a
 * non-enumerable `response` (shared/http `statusError`).
 */
function responseOf(e: unknown): { status?: number; excerpt?: string } {
  if (typeof e !== 'object' || e === null) return {}
  const o = e as { status?: unknown; excerpt?: unknown; response?: { status?: unknown; excerpt?: unknown } }
  const status = typeof o.status === 'number' ? o.status : o.response?.status
  const excerpt = typeof o.excerpt === 'string' ? o.excerpt : o.response?.excerpt
  return {
    ...(typeof status === 'number' ? { status } : {}),
    ...(typeof excerpt === 'string' ? { excerpt: redactedExcerpt(excerpt, EXCERPT_MAX) } : {}),
  }
}

interface DestinationSlot {
  loaded: LoadedDestination
  instance: Destination
  breaker: CircuitBreaker
}

/**
 * Starts one channel: builds its components, starts the worker(s), then the source.
 *
 * - `emit` resolves once the message is committed; it rejects with a retryable `ERR_BACKPRESSURE`
 *   when the channel has `options.queueLimit` messages pending.
 * - Workers claim messages in arrival order (one worker keeps that order end to end), run the
 *   filters, and deliver to every destination with a stable idempotency key
 *   (`<message id>:<destination>`), retrying per the destination's policy and breaker.
 * - Budget: attempts made while the breaker is closed count against `maxAttempts`, and time
 *   spent paused by the breaker does not count against `maxElapsedMs`, so an outage pauses the
 *   channel instead of sending every message to error.
 * - A filter that throws an error marked `retryable: true` (a script filter whose API call hit an
 *   outage) does not put the message in error: the message (and those claimed after it) goes back
 *   to the queue and the whole channel waits before claiming again, with the backoff of the first
 *   destination's `retry` policy (the schema defaults without one), honouring `retryAfterMs`.
 *   After `maxAttempts` such failures of one message it goes to error. Any other filter error
 *   (including a plain `Error`) is permanent: the message goes to error at once.
 *
 * @example
 * const handle = await startChannel(await loadChannel('channels/adt.json'), { store, log, dataDir })
 * process.on('SIGTERM', () => handle.stop())
 */
export async function startChannel(channel: LoadedChannel, deps: RuntimeDeps): Promise<ChannelHandle> {
  const { store } = deps
  const name = channel.name
  const now = deps.now ?? Date.now
  const random = deps.random ?? Math.random
  const opts = channel.options
  const prefetch = deps.prefetch ?? Math.max(opts.concurrency, 16)
  const pollMs = deps.pollIntervalMs ?? 1000
  const log = deps.log.child({ channel: name })

  const soft = new AbortController() // stopping: sources stop, waits end, nothing new is claimed
  const hard = new AbortController() // shutdown timeout passed: in-flight deliveries are aborted
  const shutdownReason = () => new ShutdownError(`channel ${name} is stopping`)

  const counters = { received: 0, duplicates: 0, delivered: 0, filtered: 0, errors: 0, refused: 0 }
  const retrying = new Set<string>()
  const filterRetry = channel.destinations[0]?.retry ?? DEFAULT_FILTER_RETRY
  const filterAttempts = new Map<string, number>()
  let claimPausedUntil = 0
  const providers = new Map<string, TokenProvider>()
  let state: ChannelState = 'running'

  const contextFor = (componentName: string): ComponentContext => ({
    channel: name,
    channelDir: channel.dir,
    name: componentName,
    log: log.child({ component: componentName }),
    credential(credName: string): TokenProvider {
      const existing = providers.get(credName)
      if (existing) return existing
      if (!(credName in channel.credentials)) throw new WeirError(`channel ${name} has no credential "${credName}"`)
      if (!deps.credential) throw new WeirError(`no credential support configured for channel ${name}`)
      const p = deps.credential(credName, channel)
      providers.set(credName, p)
      return p
    },
    get http(): HttpClient {
      if (!deps.http) throw new WeirError(`no HTTP client configured for channel ${name}`)
      return deps.http
    },
    dataDir: deps.dataDir,
    signal: soft.signal,
    state: {
      get: <T>(key: string) => store.getState<T>(name, componentName, key),
      set: (key: string, value: unknown) => store.setState(name, componentName, key, value),
    },
  })

  const create = async <K extends 'source' | 'filter' | 'destination'>(c: LoadedComponent<K>, componentName: string) =>
    c.definition.create(c.config, contextFor(componentName))

  const filters: Filter[] = []
  for (const [i, f] of channel.filters.entries()) filters.push((await create(f, `filters/${i}`)) as Filter)
  const destinations: DestinationSlot[] = []
  for (const d of channel.destinations) {
    const breaker = new CircuitBreaker(d.circuitBreaker, now, (s) => {
      if (s === 'open') log.warn({ destination: d.name, resetAfterMs: d.circuitBreaker.resetAfterMs }, 'destination paused: circuit breaker open')
      else if (s === 'closed') log.info({ destination: d.name }, 'destination resumed: circuit breaker closed')
    })
    destinations.push({ loaded: d, instance: (await create(d, d.name)) as Destination, breaker })
  }
  const source = (await create(channel.source, 'source')) as Source

  // Wake-ups: a flag so that a wake between a claim and the wait is not lost.
  let workHint = true
  let wakers: Array<() => void> = []
  const wake = () => {
    workHint = true
    const w = wakers
    wakers = []
    for (const f of w) f()
  }
  const waitForWork = () =>
    new Promise<void>((resolve) => {
      if (workHint || soft.signal.aborted) return resolve()
      const waker = () => {
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        wakers = wakers.filter((w) => w !== waker)
        void store.refreshPending(name).catch(() => {})
        workHint = true
        resolve()
      }, pollMs)
      wakers.push(waker)
    })
  soft.signal.addEventListener('abort', wake, { once: true })

  // Idle watchers.
  let idleWatchers: Array<() => void> = []
  const notify = () => {
    const w = idleWatchers
    idleWatchers = []
    for (const f of w) f()
  }

  let emitsInFlight = 0
  const emit: Emit = async (input: MessageInput): Promise<EmitResult> => {
    if (soft.signal.aborted) throw new RetryableError(`channel ${name} is stopping`, { code: 'ERR_SHUTDOWN', retryAfterMs: deps.backpressureRetryAfterMs ?? 1000 })
    if (store.pending(name) >= opts.queueLimit) {
      counters.refused++
      throw new RetryableError(`channel ${name}: queue is full (${opts.queueLimit} messages pending)`, { code: 'ERR_BACKPRESSURE', retryAfterMs: deps.backpressureRetryAfterMs ?? 1000 })
    }
    emitsInFlight++
    try {
      const r = await store.enqueue(name, input)
      if (r.duplicate) counters.duplicates++
      else {
        counters.received++
        wake()
      }
      return r
    } finally {
      emitsInFlight--
      notify()
    }
  }

  // Claiming.
  const buffer: ClaimedMessage[] = []
  const active = new Set<string>()
  const toRelease = new Set<string>()
  let claiming: Promise<void> | undefined
  let halted = false
  const next = async (): Promise<ClaimedMessage | undefined> => {
    while (!soft.signal.aborted && !halted) {
      const m = buffer.shift()
      if (m) return m
      claiming ??= (async () => {
        try {
          await waitForWork()
          const pause = claimPausedUntil - now()
          if (pause > 0) await sleep(pause, soft.signal).catch(() => {})
          if (soft.signal.aborted || halted) return
          workHint = false
          const got = await store.claim(name, prefetch)
          if (soft.signal.aborted || halted) {
            for (const g of got) toRelease.add(g.id)
            return
          }
          buffer.push(...got)
          if (got.length === prefetch) workHint = true
        } catch (e) {
          log.error({ err: e }, 'claiming messages failed; retrying')
          await sleep(pollMs, soft.signal).catch(() => {})
        }
      })().finally(() => {
        claiming = undefined
      })
      await claiming
    }
    return undefined
  }

  /** `notBefore`: the next attempt persisted by an earlier run (a retry scheduled before a stop or crash waits its turn). */
  const deliverWithRetry = async (stored: StoredMessage, part: Message, partIndex: number, slot: DestinationSlot, notBefore?: number): Promise<DeliveryUpdate & { error?: string }> => {
    const d = slot.loaded
    const policy = d.retry
    const idempotencyKey = `${part.id}:${d.name}`
    const retryKey = `${part.id}:${d.name}`
    let charged = 0
    const started = now()
    let paused = 0
    try {
      if (notBefore !== undefined && notBefore > now()) {
        retrying.add(retryKey)
        log.debug({ message: stored.id, destination: d.name, delayMs: notBefore - now() }, 'waiting for the retry scheduled before the restart')
        const waitStart = now()
        await sleep(notBefore - waitStart, soft.signal)
        paused += now() - waitStart // the wait carried over from the earlier run is not this run's elapsed budget
      }
      for (;;) {
        const waitStart = now()
        const { probe } = await slot.breaker.acquire(soft.signal)
        paused += now() - waitStart
        const startedAt = now()
        const attemptSignal = hard.signal
        let result
        try {
          result = await slot.instance.deliver(part, { signal: attemptSignal, idempotencyKey })
        } catch (e) {
          if (hard.signal.aborted) {
            slot.breaker.abandon(probe)
            throw shutdownReason()
          }
          const endedAt = now()
          const resp = responseOf(e)
          const error = describe(e)
          const attempt = { startedAt, endedAt, responseStatus: resp.status, error, excerpt: resp.excerpt }
          if (!isRetryable(e)) {
            slot.breaker.success() // the API answered; it is the message that is wrong
            return { destination: d.name, part: partIndex, status: 'error', attempt: { ...attempt, outcome: 'permanent' }, error: `${d.name}: ${error}` }
          }
          slot.breaker.failure(probe)
          if (!probe) charged++
          const retryAfterMs = typeof (e as { retryAfterMs?: unknown }).retryAfterMs === 'number' ? (e as { retryAfterMs: number }).retryAfterMs : undefined
          const delay = backoffDelay(Math.max(1, charged), policy, random, retryAfterMs)
          const elapsed = now() - started - paused
          if (charged >= policy.maxAttempts || elapsed + delay > policy.maxElapsedMs) {
            const why = charged >= policy.maxAttempts ? `${charged} attempts` : `${elapsed} ms`
            return { destination: d.name, part: partIndex, status: 'error', attempt: { ...attempt, outcome: 'retryable' }, error: `${d.name}: gave up after ${why}: ${error}` }
          }
          retrying.add(retryKey)
          await store.recordDelivery(stored.id, { destination: d.name, part: partIndex, status: 'retrying', nextAttemptAt: endedAt + delay, attempt: { ...attempt, outcome: 'retryable' } })
          log.debug({ message: stored.id, destination: d.name, attempt: charged, delayMs: delay, err: error }, 'delivery failed; retrying')
          if (slot.breaker.state !== 'closed') continue // the breaker's pause replaces the backoff
          await sleep(delay, soft.signal)
          continue
        }
        slot.breaker.success()
        return {
          destination: d.name, part: partIndex, status: 'delivered',
          attempt: { startedAt, endedAt: now(), outcome: 'delivered', ...(result?.status !== undefined ? { responseStatus: result.status } : {}), ...(result?.excerpt !== undefined ? { excerpt: redactedExcerpt(result.excerpt, EXCERPT_MAX) } : {}) },
        }
      }
    } catch (e) {
      if (soft.signal.aborted) throw shutdownReason()
      throw e
    } finally {
      retrying.delete(retryKey)
    }
  }

  const toMessage = (m: StoredMessage): Message => ({ id: m.id, channel: m.channel, body: m.body, contentType: m.contentType, attributes: m.attributes, receivedAt: m.receivedAt })

  const onMessageError = (id: string, error: string) => {
    counters.errors++
    log.error({ message: id, err: error }, 'message in error')
    if (opts.onError === 'stop' && !halted) {
      halted = true
      log.error({ message: id }, 'channel stopping: onError is "stop"')
      void stopInternal(opts.shutdownTimeoutMs, { reason: 'error', error: new WeirError(`channel ${name} stopped: message ${id} in error: ${error}`) })
    }
  }

  const processMessage = async (stored: ClaimedMessage) => {
    // The claim carries the outcomes so far (none for a message never attempted); another store may need a read.
    const prior = stored.deliveries ?? (await store.get(stored.id))?.deliveries ?? []
    const done = new Set(prior.filter((x) => x.status === 'delivered').map((x) => `${x.destination}/${x.part}`))
    const scheduled = new Map(prior.filter((x) => x.status !== 'delivered' && x.nextAttemptAt !== undefined).map((x) => [`${x.destination}/${x.part}`, x.nextAttemptAt!]))
    let parts: Message[] = [toMessage(stored)]
    for (const [i, f] of filters.entries()) {
      const out: Message[] = []
      for (const p of parts) {
        let r
        try {
          r = await f.process(p)
        } catch (e) {
          let error = `filters/${i}: ${describe(e)}`
          if (isWeirError(e) && e.retryable) {
            const n = (filterAttempts.get(stored.id) ?? 0) + 1
            if (n < filterRetry.maxAttempts) {
              filterAttempts.set(stored.id, n)
              throw new FilterRetry(error, backoffDelay(n, filterRetry, random, e.retryAfterMs))
            }
            error = `filters/${i}: gave up after ${n} attempts: ${describe(e)}`
          }
          filterAttempts.delete(stored.id)
          await store.fail(stored.id, error)
          onMessageError(stored.id, error)
          return
        }
        if (r === null || r === undefined) continue
        if (Array.isArray(r)) out.push(...r)
        else out.push(r)
      }
      parts = out
    }
    filterAttempts.delete(stored.id)
    if (parts.length === 0) {
      await store.complete(stored.id, 'filtered', destinations.map((s) => ({ destination: s.loaded.name, part: 0, status: 'filtered' })))
      counters.filtered++
      return
    }
    // A split message's parts get ids of their own, stable as long as the filters are deterministic.
    parts = parts.map((p, i) => ({ ...p, id: parts.length > 1 ? `${stored.id}.${i}` : stored.id, channel: name }))
    const recordEach = parts.length * destinations.length > 1
    const settled = await Promise.allSettled(destinations.map(async (slot) => {
      const finals: Array<DeliveryUpdate & { error?: string }> = []
      for (const [i, part] of parts.entries()) {
        if (done.has(`${slot.loaded.name}/${i}`)) continue
        const r = await deliverWithRetry(stored, part, i, slot, scheduled.get(`${slot.loaded.name}/${i}`))
        // With several deliveries per message, each success is recorded at once so a crash does not resend it.
        if (recordEach && r.status === 'delivered') await store.recordDelivery(stored.id, r)
        else finals.push(r)
      }
      return finals
    }))
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) {
      // Keep what did get through (so a restart does not resend it), then let the message be released.
      const got = settled.flatMap((r) => (r.status === 'fulfilled' ? r.value : [])).filter((u) => u.status === 'delivered')
      for (const { error: _e, ...u } of got) await store.recordDelivery(stored.id, u).catch(() => {})
      throw failed.reason
    }
    const finals = settled.flatMap((r) => (r.status === 'fulfilled' ? r.value : []))
    const errors = finals.filter((f) => f.status === 'error').map((f) => f.error!)
    await store.complete(stored.id, errors.length ? 'error' : 'delivered', finals.map(({ error: _e, ...u }) => u), errors.length ? errors.join('; ') : undefined)
    if (errors.length) onMessageError(stored.id, errors.join('; '))
    else counters.delivered++
  }

  const worker = async () => {
    for (;;) {
      const m = await next()
      if (!m) return
      active.add(m.id)
      try {
        await processMessage(m)
      } catch (e) {
        const filterRetrying = e instanceof FilterRetry
        if (filterRetrying) {
          claimPausedUntil = Math.max(claimPausedUntil, now() + e.delayMs)
          log.warn({ message: m.id, attempt: filterAttempts.get(m.id), delayMs: e.delayMs, err: e.message }, 'filter failed; retrying')
        } else if (!(isWeirError(e) && e.code === 'ERR_SHUTDOWN')) log.error({ err: e, message: m.id }, 'processing failed; the message goes back to the queue')
        toRelease.add(m.id)
        if (!soft.signal.aborted) {
          // The prefetched messages go back too, so the failed one is retried before them (order).
          const ids = [m.id, ...buffer.splice(0).map((b) => b.id)]
          await store.release(ids).catch(() => {})
          toRelease.delete(m.id)
          workHint = true
          // After a filter's retryable failure, claiming waits for the backoff (claimPausedUntil).
          if (!filterRetrying) await sleep(pollMs, soft.signal).catch(() => {})
        }
      } finally {
        active.delete(m.id)
        notify()
      }
    }
  }

  const workers = Promise.all(Array.from({ length: opts.concurrency }, () => worker()))

  let resolveStopped!: (v: { reason: 'stopped' | 'error'; error?: Error }) => void
  const stopped = new Promise<{ reason: 'stopped' | 'error'; error?: Error }>((r) => (resolveStopped = r))
  let stopping: Promise<void> | undefined

  const withTimeout = async <T>(p: Promise<T> | T, ms: number, what: string): Promise<void> => {
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([Promise.resolve(p).then(() => {}), new Promise<void>((resolve) => { timer = setTimeout(() => { log.warn(`${what} did not finish within ${ms} ms`); resolve() }, ms) })])
    } catch (e) {
      log.error({ err: e }, `${what} failed`)
    } finally {
      clearTimeout(timer)
    }
  }

  const stopInternal = (timeoutMs: number, outcome: { reason: 'stopped' | 'error'; error?: Error }): Promise<void> => {
    stopping ??= (async () => {
      state = 'stopping'
      const deadline = now() + timeoutMs
      soft.abort(shutdownReason())
      await withTimeout(source.stop(), timeoutMs, 'source stop')
      const left = () => Math.max(0, deadline - now())
      // In-flight deliveries may finish until the deadline; then they are aborted.
      let finished = false
      const all = workers.then(() => { finished = true })
      await withTimeout(all, left(), 'in-flight work')
      if (!finished) {
        hard.abort(shutdownReason())
        await withTimeout(all, 1000, 'aborted deliveries')
      }
      for (const m of buffer.splice(0)) toRelease.add(m.id)
      for (const id of active) toRelease.add(id)
      if (claiming) await withTimeout(claiming, 1000, 'claim')
      await withTimeout(store.release([...toRelease]), 5000, 'releasing messages')
      toRelease.clear()
      // Emits that were already writing complete (and are acknowledged) before the store may close.
      for (let i = 0; i < 100 && emitsInFlight > 0; i++) await sleep(10)
      for (const f of filters) await withTimeout(f.close?.(), 1000, 'filter close')
      for (const d of destinations) await withTimeout(d.instance.close?.(), 1000, `destination ${d.loaded.name} close`)
      for (const [credName, p] of providers) await withTimeout(p.close(), 1000, `credential ${credName} close`)
      state = 'stopped'
      log.info({ ...counters }, outcome.reason === 'error' ? 'channel stopped on error' : 'channel stopped')
      resolveStopped(outcome)
      notify()
    })()
    return stopping
  }

  try {
    await source.start(emit)
  } catch (e) {
    halted = true
    await stopInternal(0, { reason: 'error', error: e as Error })
    throw e
  }
  log.info({ destinations: destinations.map((d) => d.loaded.name), concurrency: opts.concurrency }, 'channel started')

  const handle: ChannelHandle = {
    name,
    source,
    get state() {
      return state
    },
    counters: () => {
      let tokensFetched = 0
      for (const p of providers.values()) tokensFetched += p.stats().tokenRequests
      return {
        ...counters,
        queued: store.pending(name),
        retrying: retrying.size,
        tokensFetched,
        paused: destinations.filter((d) => d.breaker.state !== 'closed').length,
      }
    },
    stop: (o) => stopInternal(o?.timeoutMs ?? opts.shutdownTimeoutMs, { reason: 'stopped' }),
    stopped,
    wake,
    breakers: () => Object.fromEntries(destinations.map((d) => [d.loaded.name, { state: d.breaker.state, openings: d.breaker.openings }])),
    async whenIdle(o) {
      const limit = now() + (o?.timeoutMs ?? 10_000)
      for (;;) {
        if (state === 'stopped') return
        if (emitsInFlight === 0 && buffer.length === 0 && active.size === 0 && store.pending(name) === 0) return
        if (now() > limit) throw new WeirError(`channel ${name} not idle: ${JSON.stringify(handle.counters())}`)
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 20)
          idleWatchers.push(() => { clearTimeout(t); resolve() })
        })
      }
    },
  }
  return handle
}
