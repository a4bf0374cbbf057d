import type { ClaimedMessage } from '../../shared/store/types.ts'

/**
 * Claimed messages waiting to start, in claim (arrival) order, with the rule that decides which may
 * start: a message starts only when no earlier message of its key is still being processed. A key's
 * head that waits for a retry therefore holds its key and nothing else.
 *
 * Keys: with `options.orderBy`, the message's stored order key (messages stored before `orderBy`
 * was set share the empty key); without it, one key for the whole channel at `concurrency: 1`
 * (strict arrival order, even across retries) and a key per message above (no order).
 */
export class KeyedQueue {
  private waiting: ClaimedMessage[] = []
  private readonly busy = new Set<string>()

  constructor(private readonly keyOf: (m: ClaimedMessage) => string) {}

  static forChannel(options: { orderBy?: string | undefined; concurrency: number }): KeyedQueue {
    if (options.orderBy !== undefined) return new KeyedQueue((m) => m.orderKey ?? '')
    if (options.concurrency === 1) return new KeyedQueue(() => '')
    return new KeyedQueue((m) => m.id)
  }

  get size(): number {
    return this.waiting.length
  }

  push(messages: readonly ClaimedMessage[]): void {
    for (const m of messages) this.waiting.push(m)
  }

  /** Takes the first message whose key is free, and holds its key until `done`. */
  take(): ClaimedMessage | undefined {
    for (let i = 0; i < this.waiting.length; i++) {
      const m = this.waiting[i]!
      const key = this.keyOf(m)
      if (this.busy.has(key)) continue
      this.busy.add(key)
      this.waiting.splice(i, 1)
      return m
    }
    return undefined
  }

  /** Whether `take` would give a message: one waits whose key is free. */
  startable(): boolean {
    return this.waiting.some((m) => !this.busy.has(this.keyOf(m)))
  }

  /** The message taken has finished (or gone back to the queue): its key is free again. */
  done(m: ClaimedMessage): void {
    this.busy.delete(this.keyOf(m))
  }

  /** Empties the queue (to release the messages to the store). */
  drain(): ClaimedMessage[] {
    const all = this.waiting
    this.waiting = []
    return all
  }
}
