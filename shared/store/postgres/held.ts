import type { Db } from './db.ts'
import type { ApplyBatch, PendingOp } from './group-commit.ts'

/** The kind of the operation that only asks for a reconciliation (see `HeldClaims`); no SQL of its own. */
export const RECONCILE = 'reconcile'

export interface HeldClaimsOptions {
  /** This engine's id now ('' when it is not an engine). */
  owner(): string
  now(): number
  /** Asks for a reconciliation later, through the group commit (an operation of kind `RECONCILE`). */
  schedule(): void
  /** Told how many messages went back to the queue. */
  onRequeued(n: number): void
}

/**
 * The messages this process holds as claimed (handed out by `claim`, not yet completed, failed or
 * released), kept beside the group commit, and the repair of a claim whose outcome is unknown.
 *
 * A claim's transaction can commit without its answer arriving (the connection drops after the
 * COMMIT was sent): the engine takes the claim as failed, while the database has the messages in
 * flight under this engine's id. The engine's row stays alive, so no sweep would ever return them.
 * After any failed batch that held a claim, the next transaction of the group commit first
 * reconciles: every message in flight (or retrying) under this engine's id that this process does
 * not hold goes back to the queue. The group commit runs one transaction at a time and the held set
 * is updated as each batch's results come back (before the next one starts), so a claim that did
 * return is never mistaken for a lost one. The usual claim costs nothing more than a set insert.
 */
export class HeldClaims {
  private readonly ids = new Set<string>()
  /** The engine id the held ids were claimed under: a lease lost and rejoined starts afresh. */
  private heldBy = ''
  /** A batch with a claim failed, and no reconciliation has succeeded since. */
  private unsure = false

  constructor(private readonly o: HeldClaimsOptions) {}

  /** `apply` with the held set kept and a reconciliation first whenever one is due. */
  wrap(apply: ApplyBatch): ApplyBatch {
    return async (db, ops) => {
      const me = this.o.owner()
      if (me !== this.heldBy) {
        this.ids.clear()
        this.heldBy = me
      }
      // An operation that only asks for a reconciliation has no SQL of its own (the usual batch has none).
      const asks = ops.some((op) => op.kind === RECONCILE)
      const real = asks ? ops.filter((op) => op.kind !== RECONCILE) : ops
      try {
        if (this.unsure) await this.reconcile(db, me)
        const results = real.length > 0 ? await apply(db, real) : []
        real.forEach((op, i) => this.track(op, results[i]))
        if (!asks) return results
        let next = 0
        return ops.map((op) => (op.kind === RECONCILE ? undefined : results[next++]))
      } catch (e) {
        if (this.unsure || ops.some((op) => op.kind === 'claim')) {
          this.unsure = true
          this.o.schedule()
        }
        throw e
      }
    }
  }

  /** Whether message `id` is claimed by this process under the engine's id now (not under one it had before its lease was lost). */
  holds(id: string): boolean {
    return this.heldBy === this.o.owner() && this.ids.has(id)
  }

  private track(op: PendingOp, result: unknown): void {
    if (op.kind === 'claim') for (const row of result as Array<{ id: string }>) this.ids.add(row.id)
    else if (op.kind === 'complete') this.ids.delete(op.args[0] as string)
    else if (op.kind === 'release') for (const id of op.args[0] as string[]) this.ids.delete(id)
  }

  /** Returns to the queue every message in flight under `me` that this process does not hold. */
  private async reconcile(db: Db, me: string): Promise<void> {
    if (me === '') {
      this.unsure = false
      return
    }
    const [row] = await db.query<{ n: number }>(`
      WITH r AS (
        UPDATE weir_messages SET status = 'queued', owner = NULL, updated_at = $3
        WHERE owner = $1 AND status IN ('in-flight', 'retrying') AND NOT (id = ANY($2::text[])) RETURNING id
      ), d AS (
        UPDATE weir_deliveries SET status = 'queued' WHERE message_id IN (SELECT id FROM r) AND status IN ('in-flight', 'retrying')
      )
      SELECT count(*)::int AS n FROM r`, [me, [...this.ids], this.o.now()])
    this.unsure = false
    if (row!.n > 0) this.o.onRequeued(row!.n)
  }
}
