import type { Logger } from '../../shared/log/index.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import { WeirError } from '../../shared/errors.ts'
import type { Slots } from './slots.ts'

/** What the parts of a running channel share: its store, clock, signals and slots. */
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
  slots: Slots
  /** `<message id>:<destination>` of every delivery waiting for its next attempt (a counter). */
  retrying: Set<string>
}

export class ShutdownError extends WeirError {
  override code = 'ERR_SHUTDOWN' as const
}

export const shutdownError = (name: string) => new ShutdownError(`channel ${name} is stopping`)
