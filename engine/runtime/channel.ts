import { setMaxListeners } from 'node:events'
import { REJECT_REASONS, type RejectReason, type Source } from '../../shared/component.ts'
import type { ChannelOptions, LoadedChannel, RetryPolicy } from '../../shared/config/types.ts'
import { errorCodes } from '../../shared/errors.ts'
import type { HttpClient } from '../../shared/http/types.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { CredentialStatus, TokenProvider } from '../../shared/oauth/types.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import { createComponents, type ChannelComponents } from './components.ts'
import { Backoffs, encryptedDetails, logFailure, shutdownError, type RunContext } from './context.ts'
import { Dispatcher, type DispatchOptions } from './dispatch.ts'
import { createEmit, type IntakeCounters, type Refusing } from './intake.ts'
import { stopChannel } from './lifecycle.ts'
import { KeyedQueue } from './order.ts'
import { guardedObserver, type RuntimeObserver } from './observer.ts'
import { OperatorPauses } from './pause.ts'
import type { Ending } from './process.ts'
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
  /**
   * How often an idle channel looks for messages queued by another process (`weir messages
   * resubmit`) or, with a store shared by a cluster, by another engine; how often, in a cluster,
   * every channel re-reads the cluster's count of its unfinished messages (whatever it is doing);
   * and how often a channel checks whether the limit that refuses its input would accept again.
   * Default 1000 ms.
   */
  pollIntervalMs?: number
  /** Claimed messages kept waiting to start per channel (released on stop): the look-ahead that finds free order keys. Default `max(2 × concurrency, 16)`. */
  prefetch?: number
  /** Retry-After given to a refused sender when the queue is full. Default 1000 ms. */
  backpressureRetryAfterMs?: number
  /** Told what every channel does (metrics, alerts). */
  observer?: RuntimeObserver
  /**
   * How often a channel re-reads its operator pauses from a store shared by a cluster (another
   * engine may have set them), in the same tick as the count (`pollIntervalMs`). Default 1000 ms.
   */
  pauseSyncMs?: number
  /**
   * Channels whose content the store encrypts, as given to the store (`weir run`: those with
   * `options.encryptContent`, or true for every one with `--encrypt-content`). A channel with
   * `options.encryptContent` counts as encrypted without it. Their log lines about a failed message
   * carry no free text that could quote the content.
   */
  encrypt?: ReadonlySet<string> | true
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
  /** Messages refused for now: the queue at `queueLimit` or the store at `maxStoreBytes` (see `refusing()`). */
  refused: number
  /** Input the source rejected before it became a message (malformed, too large, unauthorized…; see `rejections()`). */
  rejected: number
  /** Access tokens the token endpoint issued to the channel's credentials (failed requests excluded). */
  tokensFetched: number
  /** Token requests of the channel's credentials that got no token (error response, network error, timeout). */
  tokenRequestsFailed: number
  /**
   * Destinations holding their deliveries now: paused by an operator or by their circuit breaker
   * (open or half-open). `destinations()` tells which, and why (`paused`, `breaker`).
   */
  paused: number
}

export type ChannelState = 'running' | 'stopping' | 'stopped'

/** What an operator sees: `paused` by an operator, `failing` while a destination's breaker is open or a credential fails fast. */
export type ChannelStatus = 'running' | 'paused' | 'failing' | 'stopping' | 'stopped'

export interface DestinationStatus {
  name: string
  type: string
  /** Paused by an operator (a channel-wide pause is the channel's `status`, not this). */
  paused: boolean
  /** Circuit breaker state: `closed`, `open` or `half-open` (not `closed`: the destination holds its deliveries, `status()` is `failing`). */
  breaker: string
  openings: number
}

export interface ChannelHandle {
  readonly name: string
  /** The source instance: the harness feeds it (address() of a listener, tick() of a schedule). */
  readonly source: Source
  /** The names of the channel's `options.searchKeys` (its messages are found by them). */
  readonly searchKeys: readonly string[]
  readonly state: ChannelState
  counters(): ChannelCounters
  /** `counters().rejected` by reason (every reason present, 0 when none). */
  rejections(): Readonly<Record<RejectReason, number>>
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
  status(): ChannelStatus
  /**
   * The limit the channel refuses its source's input at, and since when; undefined while it accepts
   * (cleared by the next message accepted, or by the channel's periodic review once the limit would
   * accept one). A pure read.
   */
  refusing(): Refusing | undefined
  destinations(): DestinationStatus[]
  /** The channel's credentials in use (those a component asked for), by name. */
  credentials(): Record<string, CredentialStatus>
  /** Requests a token of credential `name` now, past the cache and fail-fast (an operator's check); rejects as the token endpoint refused. */
  checkCredential(name: string): Promise<{ expiresAt: number; scope?: string }>
  /**
   * Pauses the channel (no message starts; the source still accepts into the queue up to
   * `queueLimit`) or one destination (its deliveries wait; other destinations go on). Kept in the
   * store: a restart, and every engine of a cluster, keeps the pause until `resume`.
   */
  pause(destination?: string): Promise<void>
  resume(destination?: string): Promise<void>
}

/** Retry policy of filters when the channel has no destination to borrow it from (the schema defaults). */
const DEFAULT_FILTER_RETRY: RetryPolicy = { maxAttempts: 10, initialDelayMs: 500, maxDelayMs: 60_000, maxElapsedMs: 900_000 }

type Outcome = { reason: 'stopped' | 'error'; error?: Error }

/**
 * Starts one channel: builds its components, starts the claim loop, then the source.
 *
 * - `emit` resolves once the message is committed; it rejects with a retryable `ERR_BACKPRESSURE`
 *   when the channel has `options.queueLimit` messages pending.
 * - Messages are claimed in arrival order and start as soon as their order key is free
 *   (`options.orderBy`; at `concurrency: 1` the whole channel is one key); at most `concurrency`
 *   messages are under way at once, not counting those waiting out a retry backoff: such a
 *   message holds its key, nothing else. Every delivery carries a stable idempotency key
 *   (`<message id>:<destination>`) and is retried per the destination's policy and breaker.
 * - A failure is retried or not by one rule for filters and destinations (shared/failure.ts).
 *
 * @example
 * const handle = await startChannel(await loadChannel('channels/adt.json'), { store, log, dataDir })
 * process.on('SIGTERM', () => handle.stop())
 */
export async function startChannel(channel: LoadedChannel, deps: RuntimeDeps): Promise<ChannelHandle> {
  const opts = channel.options
  const { rc, stopStarting, abortInFlight } = runContext(channel, deps, () => dispatcher.wake(false))
  const rejections = rejectionCounter()
  const components = await createComponents(channel, { ...deps, log: rc.log, now: rc.now, signal: rc.stopping, rejected: rejections.count })
  const counters = { delivered: 0, filtered: 0, errors: 0 }
  const intake: IntakeCounters = { received: 0, duplicates: 0, refused: 0, errors: 0 }
  const idle = new IdleWatch()
  const life = new ChannelLife(idle, (outcome) => {
    rc.log.info({ ...counters, ...intake, errors: counters.errors + intake.errors, rejected: rejections.total() }, outcome.reason === 'error' ? 'channel stopped on error' : 'channel stopped')
  })

  const stopOnError = (m: { id: string }, error: string) => {
    if (opts.onError !== 'stop' || life.state !== 'running') return
    rc.log.error({ message: m.id }, 'channel stopping: onError is "stop"')
    dispatcher.halt()
    // Nobody awaits this stop: a failure is logged here, never left to end the process.
    stop(opts.shutdownTimeoutMs, { reason: 'error', error: new errorCodes.ERR_CHANNEL_STOPPED(rc.name, m.id, error) })
      .catch((e) => rc.log.error({ err: e }, 'stopping the channel failed'))
  }
  const onEnding = endingCounter(rc, counters, stopOnError)
  const dispatcher = new Dispatcher(rc, {
    filters: components.filters, destinations: components.destinations,
    filterRetry: channel.destinations[0]?.retry ?? DEFAULT_FILTER_RETRY,
  }, KeyedQueue.forChannel(opts), dispatchOptions(opts, deps, (m, e) => { onEnding(m, e); idle.notify() }))
  const emit = createEmit(rc, opts, { retryAfterMs: deps.backpressureRetryAfterMs ?? 1000, counters: intake, stored: () => dispatcher.wake(), settled: () => idle.notify() })
  const pauses = await loadPauses(rc, components, dispatcher)
  const stopFollowing = followStore(rc, { pauses, review: () => emit.review(), pollMs: deps.pollIntervalMs ?? 1000, pauseSyncMs: deps.pauseSyncMs ?? 1000 })
  const unwatchFailures = countStoreFailures(rc, counters, () => idle.notify())
  const work = dispatcher.run()

  const stop = (timeoutMs: number, outcome: Outcome): Promise<void> => life.stop(outcome, async () => {
    stopFollowing()
    unwatchFailures()
    await stopChannel({
      log: rc.log, now: rc.now, timeoutMs, components, work, stopStarting, abortInFlight,
      releaseLeftOver: () => rc.store.release(dispatcher.leftOver()),
      underWay: () => dispatcher.underWay(),
      emitsInFlight: () => emit.inFlight,
    })
  })

  try {
    await components.source.start(emit)
  } catch (e) {
    dispatcher.halt()
    await stop(0, { reason: 'error', error: e as Error })
    throw e
  }
  rc.log.info({ destinations: components.destinations.map((d) => d.loaded.name), concurrency: opts.concurrency, ...(opts.orderBy !== undefined ? { orderBy: opts.orderBy } : {}) }, 'channel started')
  return channelHandle({ rc, searchKeys: Object.keys(opts.searchKeys ?? {}), components, counters, intake, rejections, idle, dispatcher, emit, stopped: life.stopped, pauses, state: () => life.state, stop: (o) => stop(o?.timeoutMs ?? opts.shutdownTimeoutMs, { reason: 'stopped' }) })
}

/** The channel's shared context, with the two aborts of its stop: no new work (`stopping`), then no attempt under way (`aborting`). */
function runContext(channel: LoadedChannel, deps: RuntimeDeps, onBackoff: () => void): { rc: RunContext; stopStarting(): void; abortInFlight(): void } {
  const stopping = new AbortController()
  const aborting = new AbortController()
  // Every delivery waiting on a breaker, a pause or a backoff listens to these (and stops listening when done): no leak to warn about.
  setMaxListeners(0, stopping.signal, aborting.signal)
  const log = deps.log.child({ channel: channel.name })
  const rc: RunContext = {
    name: channel.name, store: deps.store, log,
    now: deps.now ?? Date.now, random: deps.random ?? Math.random,
    stopping: stopping.signal, aborting: aborting.signal, retrying: new Set(),
    backingOff: new Backoffs(onBackoff), observer: deps.observer ? guardedObserver(deps.observer, log) : {},
    encrypted: channel.options.encryptContent === true || deps.encrypt === true || (deps.encrypt?.has(channel.name) ?? false),
  }
  return {
    rc,
    stopStarting: () => stopping.abort(shutdownError(rc.name)),
    abortInFlight: () => aborting.abort(shutdownError(rc.name)),
  }
}

/**
 * Counts how messages end and tells the observer; a message in error is logged and handed to
 * `onError` (an encrypted channel's with where to read the reason, not the reason).
 */
function endingCounter(rc: RunContext, counters: { delivered: number; filtered: number; errors: number }, onError: (m: { id: string }, error: string) => void) {
  return (m: { id: string }, ending: Ending): void => {
    rc.observer.finished?.(rc.name, ending.status)
    if (ending.status !== 'error') counters[ending.status]++
    else {
      counters.errors++
      logFailure(rc, 'error', 'message in error', { message: m.id }, ending.error, ending.facts)
      onError(m, rc.encrypted ? encryptedDetails(m.id) : ending.error)
    }
  }
}

/** Counts input the source rejected (`ctx.rejected`), by reason; a reason outside the fixed set counts as `other`, so the metric's labels stay bounded. */
function rejectionCounter() {
  const byReason = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>
  return {
    byReason,
    count: (reason: RejectReason) => { byReason[REJECT_REASONS.includes(reason) ? reason : 'other']++ },
    total: () => REJECT_REASONS.reduce((n, r) => n + byReason[r], 0),
  }
}

/**
 * Counts the channel's messages the store puts in error on its own (recovery gave up on them, or no
 * key opens them), as errors and to the observer (alerts, metrics): the store logs each itself and
 * tells it to one channel once. Returns the unsubscribe.
 */
function countStoreFailures(rc: RunContext, counters: { errors: number }, notify: () => void): () => void {
  return rc.store.watchFailures?.(rc.name, () => {
    counters.errors++
    rc.observer.finished?.(rc.name, 'error')
    notify()
  }) ?? (() => {})
}

/** Loads the operator pauses into the dispatcher and the destinations (`followStore` keeps following them in a cluster). */
async function loadPauses(rc: RunContext, components: ChannelComponents, dispatcher: Dispatcher): Promise<OperatorPauses> {
  const pauses = new OperatorPauses(rc.store, rc.name, (p) => {
    dispatcher.setPaused(p.channel)
    for (const d of components.destinations) d.hold.set(p.destinations.includes(d.loaded.name))
  })
  await pauses.load()
  return pauses
}

/**
 * The channel's one periodic look at the store, a tick at a time: each is timed from the end of the
 * one before, so a slow store never piles them up. With a store shared by a cluster, a tick re-reads
 * the operator pauses (every `pauseSyncMs`: another engine may have set them) and the count of the
 * channel's unfinished messages, every engine's (every `pollMs`), whatever the channel is doing:
 * busy, paused, backing off, its breaker open; the queue depth shown and the `queueLimit` refused
 * at must be the cluster's. Then it reviews the refusal of input (`review`). Alone on its store the
 * count is kept in memory, so a tick only reviews. Returns the stop.
 */
function followStore(rc: RunContext, o: { pauses: OperatorPauses; review(): Promise<void>; pollMs: number; pauseSyncMs: number }): () => void {
  const shared = rc.store.leadership !== undefined
  const everyMs = shared ? Math.min(o.pollMs, o.pauseSyncMs) : o.pollMs
  const ticksOf = (ms: number) => Math.max(1, Math.round(ms / everyMs))
  const [pausesEvery, countEvery] = [ticksOf(o.pauseSyncMs), ticksOf(o.pollMs)]
  let ticks = 0
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const tick = async () => {
    ticks++
    if (shared) {
      await Promise.all([
        ticks % pausesEvery === 0 && o.pauses.load().catch(() => {}),
        ticks % countEvery === 0 && rc.store.refreshPending(rc.name).catch(() => {}),
      ])
    }
    await o.review().catch(() => {})
  }
  const next = () => {
    if (stopped) return
    timer = setTimeout(() => void tick().finally(next), everyMs)
    timer.unref()
  }
  next()
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}

/**
 * The channel's state and its one stop. Whatever fails while stopping, the channel ends 'stopped'
 * and `stopped` settles: a caller waiting on either would otherwise wait forever.
 */
class ChannelLife {
  state: ChannelState = 'running'
  readonly stopped: Promise<Outcome>
  private resolveStopped!: (v: Outcome) => void
  private stopping: Promise<void> | undefined

  constructor(private readonly idle: IdleWatch, private readonly onStopped: (outcome: Outcome) => void) {
    this.stopped = new Promise<Outcome>((r) => (this.resolveStopped = r))
  }

  /** Runs `sequence` on the first call; every call returns that one stop. */
  stop(outcome: Outcome, sequence: () => Promise<void>): Promise<void> {
    return (this.stopping ??= (async () => {
      this.state = 'stopping'
      try {
        await sequence()
      } finally {
        this.state = 'stopped'
        this.onStopped(outcome)
        this.resolveStopped(outcome)
        this.idle.notify()
      }
    })())
  }
}

/** How the channel's claim loop runs: look-ahead, concurrency, memory bound, polling, and the order claims keep among engines. */
function dispatchOptions(opts: ChannelOptions, deps: RuntimeDeps, onEnding: DispatchOptions['onEnding']): DispatchOptions {
  return {
    prefetch: deps.prefetch ?? Math.max(2 * opts.concurrency, 16),
    concurrency: opts.concurrency,
    maxInProgress: Math.max(8 * opts.concurrency, 64),
    pollMs: deps.pollIntervalMs ?? 1000,
    order: opts.orderBy !== undefined ? 'key' : opts.concurrency === 1 ? 'channel' : 'none',
    onEnding,
  }
}

/** Lets `whenIdle` wait for the next change instead of polling. */
class IdleWatch {
  private watchers: Array<() => void> = []
  notify(): void {
    const w = this.watchers
    this.watchers = []
    for (const f of w) f()
  }
  next(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms)
      this.watchers.push(() => { clearTimeout(t); resolve() })
    })
  }
}

interface HandleParts {
  rc: RunContext
  components: ChannelComponents
  counters: { delivered: number; filtered: number; errors: number }
  intake: IntakeCounters
  rejections: ReturnType<typeof rejectionCounter>
  idle: IdleWatch
  dispatcher: Dispatcher
  emit: { readonly inFlight: number; readonly refusing: Refusing | undefined }
  stopped: Promise<Outcome>
  pauses: OperatorPauses
  state: () => ChannelState
  stop: (o?: { timeoutMs?: number }) => Promise<void>
  searchKeys: readonly string[]
}

function channelHandle(p: HandleParts): ChannelHandle {
  const { rc, components: c } = p
  const setPause = async (destination: string | undefined, paused: boolean) => {
    if (destination !== undefined && !c.destinations.some((d) => d.loaded.name === destination)) {
      throw new errorCodes.ERR_USAGE(`channel ${rc.name} has no destination "${destination}"`)
    }
    await p.pauses.set(destination, paused)
    rc.log.warn({ ...(destination !== undefined ? { destination } : {}) }, paused ? 'paused by an operator' : 'resumed by an operator')
  }
  const handle: ChannelHandle = {
    name: rc.name,
    source: c.source,
    searchKeys: p.searchKeys,
    get state() {
      return p.state()
    },
    counters: () => {
      let tokensFetched = 0
      let tokenRequestsFailed = 0
      for (const prov of c.providers.values()) {
        const s = prov.stats()
        tokensFetched += s.tokensFetched
        tokenRequestsFailed += s.tokenRequestsFailed
      }
      return {
        received: p.intake.received, duplicates: p.intake.duplicates, refused: p.intake.refused,
        rejected: p.rejections.total(),
        delivered: p.counters.delivered, filtered: p.counters.filtered, errors: p.counters.errors + p.intake.errors,
        queued: rc.store.pending(rc.name),
        retrying: rc.retrying.size,
        tokensFetched,
        tokenRequestsFailed,
        paused: c.destinations.filter((d) => d.hold.paused || d.breaker.state !== 'closed').length,
      }
    },
    rejections: () => ({ ...p.rejections.byReason }),
    stop: p.stop,
    stopped: p.stopped,
    wake: () => p.dispatcher.wake(),
    breakers: () => Object.fromEntries(c.destinations.map((d) => [d.loaded.name, { state: d.breaker.state, openings: d.breaker.openings }])),
    destinations: () => c.destinations.map((d) => ({ name: d.loaded.name, type: d.loaded.definition.type, paused: d.hold.paused, breaker: d.breaker.state, openings: d.breaker.openings })),
    credentials: () => Object.fromEntries([...c.providers].map(([name, prov]) => [name, prov.status?.() ?? { ...prov.stats() }])),
    async checkCredential(name) {
      const prov = c.providers.get(name)
      if (!prov) throw new errorCodes.ERR_CREDENTIAL_UNKNOWN(`channel ${rc.name} uses no credential "${name}"`)
      const t = await (prov.fetchNow ? prov.fetchNow() : prov.getToken())
      return { expiresAt: t.expiresAt, ...(t.scope ? { scope: t.scope } : {}) }
    },
    status: () => {
      const s = p.state()
      if (s !== 'running') return s
      if (p.pauses.state.channel) return 'paused'
      const failing = c.destinations.some((d) => d.breaker.state !== 'closed') ||
        Object.values(handle.credentials()).some((cr) => cr.failingFastUntil !== undefined)
      return failing ? 'failing' : 'running'
    },
    refusing: () => {
      const r = p.emit.refusing
      return r && { ...r }
    },
    pause: (destination) => setPause(destination, true),
    resume: (destination) => setPause(destination, false),
    async whenIdle(o) {
      const limit = rc.now() + (o?.timeoutMs ?? 10_000)
      for (;;) {
        if (p.state() === 'stopped') return
        if (p.emit.inFlight === 0 && !p.dispatcher.busy && rc.store.pending(rc.name) === 0) return
        if (rc.now() > limit) throw new errorCodes.ERR_NOT_IDLE(rc.name, JSON.stringify(handle.counters()))
        await p.idle.next(20)
      }
    },
  }
  return handle
}
