import type { Db, Queryable } from './db.ts'

/** One operation waiting for the next group commit. */
export interface PendingOp {
  readonly kind: string
  readonly args: any
  resolve(value: any): void
  reject(error: unknown): void
}

/** Runs a batch of operations inside one transaction and returns each operation's result, in order. */
export type ApplyBatch = (tx: Queryable, ops: readonly PendingOp[]) => Promise<unknown[]>

/**
 * Group commit over one PostgreSQL connection at a time: operations asked for while a transaction
 * commits wait, then share the next transaction, so a burst of N writes costs one commit. Each
 * promise resolves only after its transaction committed. When a shared transaction fails, its
 * operations are run again one transaction each, so one bad operation fails alone.
 */
export class GroupCommit {
  private waiting: PendingOp[] = []
  /** The drain under way, if any: it runs until nothing waits. */
  private draining: Promise<void> | undefined
  /** Transactions committed so far (tests and the benchmark read it). */
  commits = 0

  constructor(private readonly db: Db, private readonly apply: ApplyBatch, private readonly onError: (e: unknown) => unknown) {}

  submit<T>(kind: string, args: unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ kind, args, resolve, reject })
      this.draining ??= this.drain()
    })
  }

  /** Waits until everything submitted so far has been committed or has failed. */
  async idle(): Promise<void> {
    while (this.draining) await this.draining
  }

  private async drain(): Promise<void> {
    try {
      // Let the rest of this turn's operations join the first transaction.
      await new Promise((r) => setImmediate(r))
      while (this.waiting.length > 0) {
        const batch = this.waiting
        this.waiting = []
        try {
          this.settle(batch, await this.transaction(batch))
        } catch (e) {
          if (batch.length === 1) batch[0]!.reject(this.onError(e))
          else for (const op of batch) await this.transaction([op]).then((r) => this.settle([op], r), (err) => op.reject(this.onError(err)))
        }
      }
    } finally {
      // In the same turn as the last look at `waiting`: the next submit starts a new drain.
      this.draining = undefined
    }
  }

  private async transaction(ops: readonly PendingOp[]): Promise<unknown[]> {
    const results = await this.db.transaction((tx) => this.apply(tx, ops))
    this.commits++
    return results
  }

  private settle(ops: readonly PendingOp[], results: unknown[]): void {
    ops.forEach((op, i) => op.resolve(results[i]))
  }
}
