import type { Emit, EmitResult, MessageInput } from '../../shared/component.ts'
import type { ChannelOptions } from '../../shared/config/types.ts'
import { errorCodes } from '../../shared/errors.ts'
import { evaluationFailure } from '../../shared/jsonata.ts'
import { keyExpression, searchKeysOf } from '../../shared/key-expression.ts'
import type { EnqueueOptions } from '../../shared/store/types.ts'
import { logFailure, type RunContext } from './context.ts'
import { storeSizeOf } from './store-size.ts'

/** Counters the intake keeps. */
export interface IntakeCounters {
  received: number
  duplicates: number
  refused: number
  /** Messages stored in error because their order key could not be computed. */
  errors: number
}

/**
 * Why and since when a channel refuses its source's input: set by the first refusal (in a cluster,
 * also as a review finds the cluster's queue at `queueLimit`: another engine's senders are
 * refused), cleared by the next message accepted or by the first review after the limit would
 * accept one.
 */
export interface Refusing {
  limit: 'queueLimit' | 'maxStoreBytes'
  /** When the refusals began (ms since the epoch). */
  since: number
}

/** The channel's `emit`, with the emits under way and the refusal of input (see `createEmit`). */
export type ChannelEmit = Emit & {
  readonly inFlight: number
  readonly refusing: Refusing | undefined
  /** Begins or ends the refusal as the limits now say, with no message sent (see `IntakeLimits.review`). */
  review(): Promise<void>
}

/**
 * Compiles `options.orderBy`: a JSONata expression evaluated on the body as received (with
 * `$message` bound to the whole message), or an HL7 terse path (`PID.3.1`) on an ER7 body, whose
 * string or number result is the order key (a field path such as `mrn` is evaluated directly, see
 * shared/jsonata-direct.ts).
 * Rejects with the reason when the expression fails or gives no string or number.
 */
export function orderKeyOf(expression: string): (input: MessageInput) => Promise<string> {
  const evaluate = keyExpression(expression)
  const keyFrom = (v: unknown): string => {
    if (typeof v === 'string' && v !== '') return v
    if (typeof v === 'number' && Number.isFinite(v)) return String(v)
    throw new Error(v === undefined || v === null || v === '' ? 'the expression gave no value' : `the expression gave ${Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`}, not a string or number`)
  }
  return async (input) => {
    let v: unknown
    try {
      v = await evaluate(input)
    } catch (e) {
      throw new Error(`the expression ${evaluationFailure(expression, e)}`, { cause: e })
    }
    return keyFrom(v)
  }
}

/**
 * The channel's `emit`: refuses (retryably, so the source answers 503 with Retry-After) while the
 * channel stops or its queue is full, computes the order key, and resolves once the message is
 * durably stored. A message whose key cannot be computed is stored in error with the reason (or
 * under `orderByDefault`), so the sender's message is never lost. `refusing` tells, from the first
 * refusal until a message is accepted again or a `review()` finds that the limit would accept one,
 * which limit refuses and since when (logged at warn level as it begins, at info level as it ends).
 * Reading it changes nothing; the channel's periodic tick calls `review()`.
 */
export function createEmit(rc: RunContext, options: ChannelOptions, hooks: { retryAfterMs: number; counters: IntakeCounters; stored: () => void; settled: () => void }): ChannelEmit {
  const keyOf = options.orderBy !== undefined ? orderKeyOf(options.orderBy) : undefined
  const searchKeys = options.searchKeys !== undefined && Object.keys(options.searchKeys).length > 0 ? searchKeysOf(options.searchKeys) : undefined
  const { counters } = hooks
  let inFlight = 0
  const limits = new IntakeLimits(rc, options, counters, hooks.retryAfterMs)
  const orderOptions = async (input: MessageInput): Promise<EnqueueOptions> => {
    if (!keyOf) return {}
    try {
      return { orderKey: await keyOf(input) }
    } catch (e) {
      if (options.orderByDefault !== undefined) return { orderKey: options.orderByDefault }
      // The expression is the channel file's, never the message's: it may be quoted.
      return { error: `options/orderBy ${JSON.stringify(options.orderBy)}: ${(e as Error).message} (options.orderByDefault gives such messages a key)` }
    }
  }
  const storeOptions = async (input: MessageInput): Promise<EnqueueOptions> => {
    const how = await orderOptions(input)
    if (!searchKeys) return how
    const keys = await searchKeys(input, (name, reason) => rc.log.debug({ searchKey: name, reason }, 'search key not indexed'))
    return Object.keys(keys).length > 0 ? { ...how, searchKeys: keys } : how
  }
  const emit = async (input: MessageInput): Promise<EmitResult> => {
    if (rc.stopping.aborted) throw new errorCodes.ERR_SHUTDOWN(`channel ${rc.name} is stopping`, { retryAfterMs: hooks.retryAfterMs })
    limits.checkQueue()
    if (options.maxStoreBytes !== undefined) await limits.checkStoreSize() // no await on the hot path without the limit
    inFlight++
    try {
      const how = await storeOptions(input)
      const t0 = performance.now()
      const r = await rc.store.enqueue(rc.name, input, how)
      rc.observer.stored?.(rc.name, performance.now() - t0)
      rc.observer.received?.(rc.name, r.duplicate)
      limits.accepted()
      if (r.duplicate) counters.duplicates++
      else {
        counters.received++
        if (how.error === undefined) hooks.stored()
        else {
          counters.errors++
          rc.observer.finished?.(rc.name, 'error')
          // The expression's failure may quote the body.
          logFailure(rc, 'error', 'message in error', { message: r.id }, how.error, { option: 'orderBy' })
        }
      }
      return r
    } finally {
      inFlight--
      hooks.settled()
    }
  }
  return Object.defineProperties(emit, {
    inFlight: { get: () => inFlight },
    refusing: { get: () => limits.refusing },
    review: { value: () => limits.review() },
  }) as ChannelEmit
}

/**
 * The limits on a channel's input (`queueLimit`, `maxStoreBytes`) and the refusal they cause: which
 * limit refuses and since when, from the first refusal until a message is accepted again or a
 * review finds that the limit would accept one (logged at warn level as it begins, at info level as
 * it ends).
 */
class IntakeLimits {
  #refusing: Refusing | undefined
  #fullLoggedAt = -Infinity
  readonly #storeSize
  /** The store is shared by a cluster: its pending count is every engine's. */
  readonly #shared: boolean

  constructor(private readonly rc: RunContext, private readonly options: ChannelOptions, private readonly counters: IntakeCounters, private readonly retryAfterMs: number) {
    this.#storeSize = options.maxStoreBytes !== undefined ? storeSizeOf(rc.store, rc.now) : undefined
    this.#shared = rc.store.leadership !== undefined
  }

  /** Refuses (retryably) while the channel's queue holds `queueLimit` messages. */
  checkQueue(): void {
    const { rc, options } = this
    if (rc.store.pending(rc.name) < options.queueLimit) return
    this.#refuse('queueLimit')
    throw new errorCodes.ERR_BACKPRESSURE(`channel ${rc.name}: queue is full (${options.queueLimit} messages pending)`, { retryAfterMs: this.retryAfterMs, limit: 'queueLimit' })
  }

  /** Refuses (retryably) while the store is at or above `maxStoreBytes`, saying why in the log at most once a minute. */
  async checkStoreSize(): Promise<void> {
    if (!this.#storeSize) return
    const { rc, options } = this
    const size = await this.#storeSize.current()
    if (size === undefined || size < options.maxStoreBytes!) return
    this.#refuse('maxStoreBytes')
    const why = `the message store is full (${size} bytes on disk, maxStoreBytes ${options.maxStoreBytes}): retention or weir messages purge must free space`
    if (rc.now() - this.#fullLoggedAt >= 60_000) {
      this.#fullLoggedAt = rc.now()
      rc.log.warn({ storeBytes: size, maxStoreBytes: options.maxStoreBytes }, `refusing messages: ${why}`)
    }
    throw new errorCodes.ERR_BACKPRESSURE(`channel ${rc.name}: ${why}`, { retryAfterMs: this.retryAfterMs, limit: 'maxStoreBytes' })
  }

  /** A message was accepted: any refusal has ended. */
  accepted(): void {
    const r = this.#refusing
    if (!r) return
    this.rc.log.info({ limit: r.limit, refusedForMs: this.rc.now() - r.since }, 'accepting messages again')
    this.#refusing = undefined
  }

  /** The refusal under way, if any: a pure read (`review` and the emits change it). */
  get refusing(): Refusing | undefined {
    return this.#refusing
  }

  /**
   * Ends the refusal under way once the limit that refused would accept a message, not only when a
   * sender comes back with one: a queueLimit refusal when the queue has room again, a maxStoreBytes
   * one at a later size reading below the limit (read at most once a second). In a cluster, a queue
   * at `queueLimit` counts as refusing although this engine's source refused nothing yet (another
   * engine's did, or would): from the review that first found it full. Called by the channel's
   * periodic tick (in a cluster, right after the count of pending messages is re-read).
   */
  async review(): Promise<void> {
    const { rc, options } = this
    const limit = this.#refusing?.limit
    if (limit === undefined) {
      if (this.#shared && rc.store.pending(rc.name) >= options.queueLimit) this.#begin('queueLimit')
    } else if (limit === 'queueLimit') {
      if (rc.store.pending(rc.name) < options.queueLimit) this.accepted()
    } else {
      const size = await this.#storeSize!.current()
      if (this.#refusing?.limit === 'maxStoreBytes' && size !== undefined && size < options.maxStoreBytes!) this.accepted()
    }
  }

  #refuse(limit: Refusing['limit']): void {
    this.counters.refused++
    this.rc.observer.refused?.(this.rc.name)
    this.#begin(limit)
  }

  /** `limit` refuses from now on (if it did not already), logged as the refusal begins. */
  #begin(limit: Refusing['limit']): void {
    const { rc, options } = this
    if (this.#refusing?.limit === limit) return
    if (!this.#refusing && limit === 'queueLimit') rc.log.warn({ queueLimit: options.queueLimit }, `refusing messages: the queue is full (${options.queueLimit} messages pending)`)
    this.#refusing = { limit, since: this.#refusing?.since ?? rc.now() }
  }
}
