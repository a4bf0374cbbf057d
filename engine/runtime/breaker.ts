import type { CircuitBreakerPolicy } from '../../shared/config/types.ts'

export type BreakerState = 'closed' | 'open' | 'half-open'

/**
 * Per-destination circuit breaker. After `failureThreshold` consecutive retryable failures the
 * destination pauses: deliveries wait in `acquire()` (their messages stay queued and their retry
 * budgets are not spent) until `resetAfterMs` has passed; then a single probe attempt goes out.
 * A probe that succeeds (or meets a permanent error: the API answered) closes the breaker; one
 * that fails opens it for another `resetAfterMs`. A failure's Retry-After keeps the breaker open
 * at least that long: the pause replaces the failed message's backoff, so it must not end before
 * the server asked.
 */
export class CircuitBreaker {
  state: BreakerState = 'closed'
  /** Times the breaker opened, for counters and tests. */
  openings = 0
  #failures = 0
  #until = 0
  #waiters = new Set<() => void>()
  readonly #policy: CircuitBreakerPolicy
  readonly #now: () => number
  readonly #onChange: (state: BreakerState) => void

  constructor(policy: CircuitBreakerPolicy, now: () => number, onChange: (state: BreakerState) => void = () => {}) {
    this.#policy = policy
    this.#now = now
    this.#onChange = onChange
  }

  /** Waits until an attempt may go out. `probe` is true for the single attempt after a pause. Rejects when `signal` aborts. */
  async acquire(signal: AbortSignal): Promise<{ probe: boolean }> {
    for (;;) {
      if (signal.aborted) throw signal.reason
      if (this.state === 'closed') return { probe: false }
      if (this.state === 'open' && this.#now() >= this.#until) {
        this.#set('half-open')
        return { probe: true }
      }
      await this.#wait(this.state === 'open' ? this.#until - this.#now() : undefined, signal)
    }
  }

  success(): void {
    this.#failures = 0
    if (this.state !== 'closed') this.#set('closed')
  }

  /** A retryable failure; `retryAfterMs` is the server's Retry-After, if it gave one. */
  failure(probe: boolean, retryAfterMs?: number): void {
    if (probe) {
      this.#open(retryAfterMs)
      return
    }
    if (this.state === 'open') {
      // An attempt that started before the breaker opened: not counted, but its Retry-After holds.
      this.#holdFor(retryAfterMs)
      return
    }
    if (this.state !== 'closed') return // half-open: the probe's answer decides
    this.#failures++
    if (this.#failures >= this.#policy.failureThreshold) this.#open(retryAfterMs)
  }

  /** A probe that ended without an answer (shutdown): let the next caller probe at once. */
  abandon(probe: boolean): void {
    if (probe && this.state === 'half-open') {
      this.#until = this.#now()
      this.#set('open')
    }
  }

  #open(retryAfterMs?: number): void {
    this.#until = this.#now() + this.#policy.resetAfterMs
    this.#holdFor(retryAfterMs)
    this.openings++
    this.#set('open')
  }

  /** Keeps the breaker open at least `retryAfterMs` from now (waiters recheck `#until` when their timer fires). */
  #holdFor(retryAfterMs: number | undefined): void {
    if (retryAfterMs !== undefined) this.#until = Math.max(this.#until, this.#now() + retryAfterMs)
  }

  #set(state: BreakerState): void {
    this.state = state
    this.#onChange(state)
    const waiters = [...this.#waiters]
    this.#waiters.clear()
    for (const w of waiters) w()
  }

  #wait(ms: number | undefined, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        this.#waiters.delete(done)
        resolve()
      }
      const onAbort = () => {
        clearTimeout(timer)
        this.#waiters.delete(done)
        reject(signal.reason)
      }
      const timer = ms === undefined ? undefined : setTimeout(done, Math.max(0, ms))
      this.#waiters.add(done)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
}
