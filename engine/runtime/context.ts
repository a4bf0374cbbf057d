import type { Logger } from '../../shared/log/index.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import { errorCodes } from '../../shared/errors.ts'
import { sleep } from './backoff.ts'
import type { RuntimeObserver } from './observer.ts'

/** What the parts of a running channel share: its store, clock, signals and counters. */
export interface RunContext {
  name: string
  store: MessageStore
  log: Logger
  now: () => number
  random: () => number
  /** Aborted when the channel starts stopping: sources stop, waits end, nothing new starts. */
  stopping: AbortSignal
  /** Aborted when the shutdown timeout has passed: attempts still under way are aborted. */
  aborting: AbortSignal
  /** `<message id>:<destination>` of every delivery waiting for its next attempt (a counter). */
  retrying: Set<string>
  /** Messages waiting out a retry backoff (by id, with how many of their parts wait): they do not count as under way. */
  backingOff: Map<string, number>
  /** Told when a message starts waiting for a retry, so another may start meanwhile. */
  onBackoff(): void
  /** Told what the channel does (metrics, alerts); `{}` when nobody listens. */
  observer: RuntimeObserver
}

/**
 * Waits out a retry backoff of message `id`. Meanwhile the message holds its order key but does
 * not count against `concurrency`, so other keys go on.
 */
export async function backoff(rc: RunContext, id: string, ms: number): Promise<void> {
  rc.backingOff.set(id, (rc.backingOff.get(id) ?? 0) + 1)
  rc.onBackoff()
  try {
    await sleep(ms, rc.stopping)
  } finally {
    const n = rc.backingOff.get(id)! - 1
    if (n === 0) rc.backingOff.delete(id)
    else rc.backingOff.set(id, n)
  }
}

export const shutdownError = (name: string) => new errorCodes.ERR_SHUTDOWN(`channel ${name} is stopping`)
