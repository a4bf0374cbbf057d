import type { AttemptOutcome, RuntimeObserver } from '../runtime/index.ts'

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

/** Failed attempts in a row per channel and destination (reset by a delivered one), for `consecutiveFailures`. */
export class FailureStreaks {
  readonly #streaks = new Map<string, number>()
  readonly observer: RuntimeObserver = {
    attempt: (channel: string, destination: string, outcome: AttemptOutcome) => {
      const key = `${channel}\0${destination}`
      this.#streaks.set(key, outcome === 'delivered' ? 0 : (this.#streaks.get(key) ?? 0) + 1)
    },
  }

  get(channel: string, destination: string): number {
    return this.#streaks.get(`${channel}\0${destination}`) ?? 0
  }
}
