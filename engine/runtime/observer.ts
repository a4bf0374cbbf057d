import type { Logger } from '../../shared/log/index.ts'

/** How an attempt at a destination ended. */
export type AttemptOutcome = 'delivered' | 'retryable' | 'permanent'

/** What may be said of a failed attempt anywhere (alerts, metrics): its status and code, never its text or the API's answer. */
export interface AttemptFailure { status?: number | undefined; code?: string | undefined }

/**
 * What a running channel reports as it works, for metrics and alerts: called synchronously on the
 * hot path, so an observer only counts (no I/O, no throwing). Every method is optional. One that
 * throws all the same is logged, once per channel, and otherwise ignored.
 */
export interface RuntimeObserver {
  /** A message was durably stored (`duplicate`: its dedupe key was seen before and nothing was stored). */
  received?(channel: string, duplicate: boolean): void
  /** How long the durable write of one received message took (what a sender waits for before its acknowledgement). */
  stored?(channel: string, durationMs: number): void
  /** A message was refused because the channel's queue was full. */
  refused?(channel: string): void
  /** One attempt at a destination ended, after `durationMs`; a failed one with its HTTP status and error code, when it has them (never its text). */
  attempt?(channel: string, destination: string, outcome: AttemptOutcome, durationMs: number, failure?: AttemptFailure): void
  /** A message finished as a whole. */
  finished?(channel: string, status: 'delivered' | 'filtered' | 'error'): void
}

const METHODS = ['received', 'stored', 'refused', 'attempt', 'finished'] as const satisfies ReadonlyArray<keyof RuntimeObserver>

/**
 * `observer` with each method kept from throwing into the runtime, which calls it between the
 * durable write and the acknowledgement, between an answer and its outcome, and before counting an
 * ending (`onError: "stop"`): a throw there would fail an emit whose message is stored, record a
 * delivered message as in error, or send finished messages' successors back to the queue.
 */
export function guardedObserver(observer: RuntimeObserver, log: Logger): RuntimeObserver {
  const guarded: Record<string, (...args: never[]) => void> = {}
  for (const name of METHODS) {
    const f = observer[name] as ((...args: unknown[]) => void) | undefined
    if (!f) continue
    let logged = false
    guarded[name] = (...args: unknown[]) => {
      try {
        f.apply(observer, args)
      } catch (e) {
        if (logged) return
        logged = true
        log.error({ err: e, observer: name }, `the runtime observer's ${name}() threw (logged once; the channel goes on)`)
      }
    }
  }
  return guarded as RuntimeObserver
}
