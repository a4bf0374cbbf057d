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
  /** Messages waiting out a retry backoff as a whole: they do not count as under way. */
  backingOff: Backoffs
  /** Told what the channel does (metrics, alerts); `{}` when nobody listens. */
  observer: RuntimeObserver
  /**
   * The channel's content is stored encrypted (`options.encryptContent`, or `weir run
   * --encrypt-content`): log lines about a message's failure carry no free text (see logFailure).
   */
  encrypted: boolean
}

/**
 * What a log line of an encrypted channel may say of a failure: none of it free text, which could
 * quote the message (an API's answer often echoes the request).
 */
export interface FailureFacts {
  /** The error's code (`ERR_HTTP_STATUS`), when it has one. */
  code?: string | undefined
  destination?: string
  /** Index of the filter that failed. */
  filter?: number
  /** The HTTP status the destination answered. */
  status?: number | undefined
  /** The attempt that failed (the last one, for a message in error). */
  attempt?: number
  /** The channel option that failed (`orderBy`). */
  option?: string
}

/** The `code` of an error (a Weir error's, a Node or undici error's), when it is a string. */
export function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

/** Where an encrypted channel's log lines send the reader for the whole reason of message `id`'s failure. */
export const encryptedDetails = (id: string) => `details encrypted in the message log: weir messages show ${id}`

/**
 * Logs a failure of message `fields.message`. A channel stored in clear logs `fields` and the reason
 * (`err`); an encrypted channel logs `fields` and `facts` (several, of a message that failed at
 * several destinations, as `failures`) with a note saying where the reason is: the reason may quote
 * the message's content, which the channel keeps out of clear text.
 */
export function logFailure(rc: RunContext, level: 'error' | 'warn' | 'debug', msg: string, fields: { message: string } & Record<string, unknown>, err: unknown, facts: FailureFacts | readonly FailureFacts[]): void {
  if (!rc.encrypted) return rc.log[level]({ ...fields, err }, msg)
  const list = (Array.isArray(facts) ? facts : [facts]).map(definedOnly)
  rc.log[level]({ ...fields, ...(list.length === 1 ? list[0] : { failures: list }) }, `${msg} (${encryptedDetails(fields.message)})`)
}

const definedOnly = (o: FailureFacts): FailureFacts => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))

/**
 * Which messages under way wait out a retry backoff as a whole: every task of the message still
 * running waits (a task: its filters, or its deliveries to one destination; a message's
 * destinations run in parallel). A message backing off at one destination while another
 * destination still delivers it is under way.
 */
export class Backoffs {
  /** Tasks of each message waiting out a backoff. */
  readonly #waiting = new Map<string, number>()
  /** Tasks of each message running in parallel, kept only when more than one. */
  readonly #running = new Map<string, number>()
  #size = 0
  readonly #onWait: () => void

  /** `onWait` is told when a message starts waiting as a whole, so that another may start meanwhile. */
  constructor(onWait: () => void) {
    this.#onWait = onWait
  }

  /** How many messages wait as a whole. */
  get size(): number {
    return this.#size
  }

  /** A task of message `id` starts (+1) or ends (-1) waiting out a backoff. */
  waiting(id: string, change: 1 | -1): void {
    this.#update(id, () => {
      const n = (this.#waiting.get(id) ?? 0) + change
      if (n === 0) this.#waiting.delete(id)
      else this.#waiting.set(id, n)
    })
  }

  /** `n` tasks of message `id` run in parallel from now (its deliveries to several destinations); one when not told. */
  running(id: string, n: number): void {
    this.#update(id, () => {
      if (n > 1) this.#running.set(id, n)
      else this.#running.delete(id)
    })
  }

  /** Whether message `id` waits out a backoff as a whole (nothing of it runs). */
  has(id: string): boolean {
    return this.#waits(id)
  }

  #update(id: string, change: () => void): void {
    const before = this.#waits(id)
    change()
    const after = this.#waits(id)
    if (after === before) return
    this.#size += after ? 1 : -1
    if (after) this.#onWait()
  }

  #waits(id: string): boolean {
    const w = this.#waiting.get(id)
    return w !== undefined && w >= (this.#running.get(id) ?? 1)
  }
}

/**
 * Waits out a retry backoff of message `id`. Meanwhile the message holds its order key but, once
 * every running task of it waits, does not count against `concurrency`, so other keys go on.
 */
export async function backoff(rc: RunContext, id: string, ms: number): Promise<void> {
  rc.backingOff.waiting(id, 1)
  try {
    await sleep(ms, rc.stopping)
  } finally {
    rc.backingOff.waiting(id, -1)
  }
}

/**
 * Settles as `work` does, or rejects with the abort's reason once `signal` aborts, whichever comes
 * first. A component that ignores the signal it was given cannot hold the stop: its attempt, still
 * unsettled when `shutdownTimeoutMs` ends, is cut off like one that obeyed (recorded, its message
 * released). What `work` does after that is ignored: a late result writes nothing, and a late
 * rejection is handled here, so it cannot end the process.
 */
export function untilAborted<T>(signal: AbortSignal, work: T | PromiseLike<T>): T | Promise<T> {
  // A synchronous result (most filters) has nothing to outlive: no promise, no listener.
  if (typeof (work as PromiseLike<T> | undefined)?.then !== 'function') return work as T
  const settled = Promise.resolve(work)
  if (signal.aborted) {
    settled.catch(() => {})
    return Promise.reject(signal.reason)
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    settled.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

export const shutdownError = (name: string) => new errorCodes.ERR_SHUTDOWN(`channel ${name} is stopping`)
