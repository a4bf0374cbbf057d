/** How an attempt at a destination ended. */
export type AttemptOutcome = 'delivered' | 'retryable' | 'permanent'

/**
 * What a running channel reports as it works, for metrics and alerts: called synchronously on the
 * hot path, so an observer only counts (no I/O, no throwing). Every method is optional.
 */
export interface RuntimeObserver {
  /** A message was durably stored (`duplicate`: its dedupe key was seen before and nothing was stored). */
  received?(channel: string, duplicate: boolean): void
  /** How long the durable write of one received message took (what a sender waits for before its acknowledgement). */
  stored?(channel: string, durationMs: number): void
  /** A message was refused because the channel's queue was full. */
  refused?(channel: string): void
  /** One attempt at a destination ended, after `durationMs`. */
  attempt?(channel: string, destination: string, outcome: AttemptOutcome, durationMs: number): void
  /** A message finished as a whole. */
  finished?(channel: string, status: 'delivered' | 'filtered' | 'error'): void
}
