import pg from 'pg'
import type { Db } from './db.ts'

/** One operation waiting for the next group commit. */
export interface PendingOp {
  readonly kind: string
  readonly args: any
  /**
   * Run again, alone, after the transaction it was first part of failed, which may have committed
   * all the same (its COMMIT sent, the answer lost): the applier then finds what a first run that
   * committed left (an enqueue its own row, a completion its own outcome) instead of failing on it
   * or applying it twice.
   */
  rerun?: boolean
  /**
   * What the operation's statements returned in a transaction that then went on to COMMIT, and that
   * transaction's id (kept by the applier for the kinds whose second run could not find the first
   * one's work): a rerun asks PostgreSQL whether it committed instead of running again.
   */
  tried?: { xid: number; result: unknown }
  resolve(value: any): void
  reject(error: unknown): void
}

/**
 * Whether a failed transaction may have committed all the same: anything but an error the server
 * answered for a statement (which rolled the transaction back), such as a connection lost after
 * COMMIT was sent, a client-side timeout, or the server ending the session (SQLSTATE classes 08,
 * 57, 58, XX) while it committed.
 */
export function mayHaveCommitted(e: unknown): boolean {
  return !(e instanceof pg.DatabaseError) || /^(08|57|58|XX)/.test(e.code ?? '')
}

/** Runs a batch of operations as one transaction (or one statement) on `db` and returns each operation's result, in order. */
export type ApplyBatch = (db: Db, ops: readonly PendingOp[]) => Promise<unknown[]>

/** How long a transaction under load may wait for company (see `GroupCommit`). */
export interface CommitPacing {
  /** At most this long (ms); 0 turns pacing off. */
  delayMs: number
  /** Stops waiting once this many operations are queued. */
  batch: number
}

/**
 * Group commit over one PostgreSQL connection at a time: operations asked for while a transaction
 * commits wait, then share the next transaction, so a burst of N writes costs one commit. Each
 * promise resolves only after its transaction committed. When a shared transaction fails, its
 * operations are run again one transaction each, so one bad operation fails alone.
 *
 * A transaction that failed may have committed all the same (the connection lost after COMMIT was
 * sent, before its answer arrived): each operation run again is marked `rerun`, and the applier
 * makes its second run find the first one's work instead of failing on it (an enqueue finds its own
 * row: a sender is never told to resend a message that is stored) or doing it twice, or, where that
 * cannot be told from the rows (a resubmission, a purge), asks whether the first one committed. A lone
 * operation whose outcome is unknown is run again once too when its kind is in `rerunAlone` (the
 * kinds whose second run is safe); any other fails as before, the caller left to try again.
 *
 * Under load (the last transaction ended less than `pacing.delayMs` ago) the next transaction may
 * wait up to `pacing.delayMs` for `pacing.batch` operations, as PostgreSQL's own `commit_delay`
 * does: fewer, larger commits for a few milliseconds of latency. The first write after a quiet
 * spell never waits.
 */
export class GroupCommit {
  private waiting: PendingOp[] = []
  private enough: (() => void) | undefined
  /** When the last transaction ended (performance.now()). */
  private lastCommitAt = -Infinity
  /** The drain under way, if any: it runs until nothing waits. */
  private draining: Promise<void> | undefined
  /** Transactions committed so far (tests and the benchmark read it). */
  commits = 0

  constructor(
    private readonly db: Db, private readonly apply: ApplyBatch, private readonly onError: (e: unknown) => unknown, private readonly pacing: CommitPacing = { delayMs: 0, batch: 0 },
    private readonly rerunAlone: ReadonlySet<string> = new Set(),
  ) {}

  submit<T>(kind: string, args: unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ kind, args, resolve, reject })
      if (this.enough && this.waiting.length >= this.pacing.batch) this.enough()
      this.draining ??= this.drain()
    })
  }

  /** Waits up to the pacing delay for a full batch (under load only: the caller knows). */
  private company(): Promise<void> {
    if (this.pacing.delayMs <= 0 || this.waiting.length >= this.pacing.batch) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.enough = undefined
        resolve()
      }
      const timer = setTimeout(done, this.pacing.delayMs)
      this.enough = done
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
        if (performance.now() - this.lastCommitAt < this.pacing.delayMs) await this.company()
        const batch = this.waiting
        this.waiting = []
        try {
          this.settle(batch, await this.transaction(batch))
        } catch (e) {
          const [lone] = batch
          if (batch.length > 1 || (this.rerunAlone.has(lone!.kind) && mayHaveCommitted(e))) for (const op of batch) await this.rerun(op)
          else lone!.reject(this.onError(e))
        }
      }
    } finally {
      // In the same turn as the last look at `waiting`: the next submit starts a new drain.
      this.draining = undefined
    }
  }

  /** Runs `op` again in a transaction of its own (see `PendingOp.rerun`). */
  private async rerun(op: PendingOp): Promise<void> {
    op.rerun = true
    await this.transaction([op]).then((r) => this.settle([op], r), (err) => op.reject(this.onError(err)))
  }

  private async transaction(ops: readonly PendingOp[]): Promise<unknown[]> {
    const results = await this.apply(this.db, ops).finally(() => { this.lastCommitAt = performance.now() })
    this.commits++
    return results
  }

  private settle(ops: readonly PendingOp[], results: unknown[]): void {
    ops.forEach((op, i) => op.resolve(results[i]))
  }
}
