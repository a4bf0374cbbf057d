import type { FailureFacts } from '../runtime/context.ts'
import type { AttemptOutcome, RuntimeObserver } from '../runtime/index.ts'

/** What the runtime may tell of a failed attempt (as an encrypted channel's log lines do): its HTTP status and error code, no free text. */
export type AttemptFailure = Pick<FailureFacts, 'status' | 'code'>

const METHODS = ['received', 'stored', 'refused', 'attempt', 'finished'] as const

/**
 * One observer that tells each of `observers` (metrics, alerts) what the runtime reports;
 * `RuntimeDeps.observer` takes one.
 * @example
 * startChannel(channel, { ...deps, observer: composeObservers(metrics.observer, alerts.observer) })
 */
export function composeObservers(...observers: Array<RuntimeObserver | undefined>): RuntimeObserver {
  const present = observers.filter((o): o is RuntimeObserver => o !== undefined)
  if (present.length === 1) return present[0]!
  const out: Record<string, (...args: never[]) => void> = {}
  for (const m of METHODS) {
    const fns = present.map((o) => o[m]?.bind(o) as ((...args: unknown[]) => void) | undefined).filter((f) => f !== undefined)
    if (fns.length) out[m] = (...args: unknown[]) => { for (const f of fns) f(...args) }
  }
  return out as RuntimeObserver
}

/**
 * What the alerts see of the runtime through its observer: per channel and destination, the failed
 * attempts in a row (reset by a delivered one, for `consecutiveFailures`), when the last
 * delivered attempt ended (`destination-failing` clears only on one) and the status and code of the
 * last failed one, when the runtime gives them (for the summary); per channel, when its
 * messages went to error on this engine, kept for `horizonMs` (`messages-failing` counts these only
 * with a store without `countErrors`; otherwise it counts what the store holds).
 * @example
 * const watch = new RuntimeWatch(Date.now, 300_000)
 * startChannel(channel, { ...deps, observer: watch.observer })
 */
export class RuntimeWatch {
  readonly #streaks = new Map<string, number>()
  readonly #delivered = new Map<string, number>()
  readonly #failures = new Map<string, AttemptFailure>()
  readonly #errors = new Map<string, ErrorTimes>()
  readonly #now: () => number
  readonly #horizonMs: number
  readonly observer: RuntimeObserver = {
    attempt: (channel: string, destination: string, outcome: AttemptOutcome, _durationMs?: number, failure?: AttemptFailure) => {
      const key = `${channel}\0${destination}`
      this.#streaks.set(key, outcome === 'delivered' ? 0 : (this.#streaks.get(key) ?? 0) + 1)
      if (outcome === 'delivered') this.#delivered.set(key, this.#now())
      else this.#failures.set(key, { status: failure?.status, code: failure?.code })
    },
    finished: (channel: string, status: 'delivered' | 'filtered' | 'error') => {
      if (status !== 'error' || this.#horizonMs <= 0) return
      let times = this.#errors.get(channel)
      if (!times) this.#errors.set(channel, (times = new ErrorTimes()))
      times.add(this.#now(), this.#horizonMs)
    },
  }

  /** `horizonMs`: how far back errors are kept (the longest `windowSeconds` of the alerts; 0 keeps none). */
  constructor(now: () => number, horizonMs: number) {
    this.#now = now
    this.#horizonMs = horizonMs
  }

  /** Failed attempts in a row at a destination. */
  streak(channel: string, destination: string): number {
    return this.#streaks.get(`${channel}\0${destination}`) ?? 0
  }

  /** When the last delivered attempt at a destination ended (epoch ms), if one did while this engine ran. */
  lastDelivered(channel: string, destination: string): number | undefined {
    return this.#delivered.get(`${channel}\0${destination}`)
  }

  /** The status and code of the last failed attempt at a destination (either may be unknown), if one failed while this engine ran. */
  lastFailure(channel: string, destination: string): AttemptFailure | undefined {
    return this.#failures.get(`${channel}\0${destination}`)
  }

  /** Messages of `channel` that went to error in the `windowMs` up to now (to the second). */
  errors(channel: string, windowMs: number): number {
    return this.#errors.get(channel)?.since(this.#now() - windowMs) ?? 0
  }
}

/** Times of errors as per-second counts, oldest first: bounded by the horizon whatever the error rate. */
class ErrorTimes {
  readonly #buckets: Array<{ second: number; count: number; last: number }> = []

  add(at: number, horizonMs: number): void {
    const second = Math.floor(at / 1000)
    const tail = this.#buckets.at(-1)
    if (tail?.second === second) {
      tail.count++
      tail.last = at
    } else this.#buckets.push({ second, count: 1, last: at })
    while (this.#buckets.length && this.#buckets[0]!.last < at - horizonMs) this.#buckets.shift()
  }

  /** Errors at or after `from` (a second's count is whole while its last error is in). */
  since(from: number): number {
    return this.#buckets.reduce((n, b) => (b.last >= from ? n + b.count : n), 0)
  }
}
