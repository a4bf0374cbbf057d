import { isWeirError } from '../../shared/errors.ts'
import type { ClaimedMessage, ClaimOptions } from '../../shared/store/types.ts'
import type { RunContext } from './context.ts'
import type { KeyedQueue } from './order.ts'
import { claimHeld, claimStanding } from './delivery.ts'
import { processMessage, type Ending, type Pipeline } from './process.ts'

type ClaimOrder = NonNullable<ClaimOptions['order']>

export interface DispatchOptions {
  /** Claimed messages kept waiting to start (beyond those under way): the look-ahead that finds free keys. */
  prefetch: number
  /** Messages under way at once, not counting those waiting out a retry backoff (`concurrency`): after a crash, at most these are delivered twice. */
  concurrency: number
  /** Messages under way at once, those waiting for a retry included (a memory bound). */
  maxInProgress: number
  /** How often an idle channel looks for messages queued by another process. */
  pollMs: number
  /** What claims must keep in order among engines sharing the store: per key (`orderBy`), the channel (`concurrency: 1`), or nothing. */
  order: ClaimOrder
  onEnding(m: ClaimedMessage, ending: Ending): void
}

/**
 * The claim loop: claims messages in arrival order, starts each as soon as its key is free (and
 * fewer than `maxInProgress` are under way), and returns to the queue whatever it cannot finish.
 */
export class Dispatcher {
  private readonly inProgress = new Map<string, Promise<void>>()
  /** Messages that must go back to the queue (claimed when the channel began stopping, or whose processing failed). */
  private readonly toRelease = new Set<string>()
  private workHint = true
  private claimPausedUntil = 0
  /** How many times processing failed and the claimed messages went back to the queue. */
  private returned = 0
  /** The claim under way, if any (one at a time). */
  private claiming: Promise<void> | undefined
  private halted = false
  /** Paused by an operator: nothing new starts or is claimed; what is under way finishes. */
  private paused = false
  private changed: (() => void) | undefined
  /**
   * A claimed message that was under way at an unclean stop (it may be what stops the engine),
   * waiting to be processed alone: it starts once nothing else runs, and while it runs (not
   * waiting out a backoff) nothing else starts and nothing is claimed. So if it does stop the
   * engine again, it is the only message that counts the interruption.
   */
  private suspect: ClaimedMessage | undefined
  private alone: ClaimedMessage | undefined

  constructor(private readonly rc: RunContext, private readonly pipeline: Pipeline, private readonly queue: KeyedQueue, private readonly o: DispatchOptions) {
    rc.stopping.addEventListener('abort', () => this.wake(), { once: true })
  }

  /** Something may have changed: new messages stored, a message finished, the channel stopping. */
  wake(hint = true): void {
    if (hint) this.workHint = true
    const f = this.changed
    this.changed = undefined
    f?.()
  }

  /** Stops starting and claiming (onError: "stop"); what is under way finishes. */
  halt(): void {
    this.halted = true
    this.wake(false)
  }

  /** Pauses or resumes starting and claiming messages. */
  setPaused(paused: boolean): void {
    this.paused = paused
    this.wake()
  }

  get busy(): boolean {
    return this.inProgress.size > 0 || this.queue.size > 0 || this.suspect !== undefined
  }

  /**
   * Runs until the channel stops; then waits for the messages under way. A claim runs beside the
   * loop, not in it: while the store answers (a group commit away), messages that finish free their
   * slots for the claimed messages already waiting.
   */
  async run(): Promise<void> {
    while (!this.rc.stopping.aborted && !this.halted) {
      if (!this.paused) {
        this.startWhatCan()
        if (!this.claiming && this.workHint && !this.isolating() && this.queue.size < this.o.prefetch && this.rc.now() >= this.claimPausedUntil) {
          this.claiming = this.claim().finally(() => {
            this.claiming = undefined
            this.wake(false)
          })
        }
      }
      await this.nextChange()
    }
    await this.claiming
    await Promise.all(this.inProgress.values())
  }

  /** Ids of the messages started and not finished (those waiting out a backoff included). */
  underWay(): string[] {
    return [...this.inProgress.keys()]
  }

  /** Ids to return to the queue at stop: claimed but never started, or given up on. */
  leftOver(): string[] {
    for (const m of this.drainWaiting()) this.toRelease.add(m.id)
    const ids = [...this.toRelease]
    this.toRelease.clear()
    return ids
  }

  private startWhatCan(): void {
    this.endIsolationOnRetry()
    // Its turn: nothing runs and nothing queued can start (what waits is behind a key whose head
    // backs off, and goes back to the store so that it is not under way meanwhile).
    if (this.suspect && this.inProgress.size === this.rc.backingOff.size && !this.queue.startable()) {
      this.releaseLater(this.queue.drain().map((m) => m.id))
      this.alone = this.suspect
      this.suspect = undefined
      this.rc.log.warn({ message: this.alone.id, interruptions: this.alone.interruptions }, 'message was under way at an unclean stop of the engine: processing it alone')
      this.queue.push([this.alone])
    }
    while (!this.aloneRuns() && this.inProgress.size - this.rc.backingOff.size < this.o.concurrency && this.inProgress.size < this.o.maxInProgress) {
      const m = this.queue.take()
      if (!m) return
      const task = this.process(m).finally(() => {
        this.inProgress.delete(m.id)
        this.queue.done(m)
        if (this.alone === m) {
          this.alone = undefined
          this.workHint = true
        }
        this.wake(false)
      })
      this.inProgress.set(m.id, task)
    }
  }

  /**
   * The suspect's attempt ended in a retry, so it did not stop the engine: it no longer runs alone,
   * and claiming resumes at once (not at the next poll).
   */
  private endIsolationOnRetry(): void {
    if (!this.alone || !this.rc.backingOff.has(this.alone.id)) return
    this.alone = undefined
    this.workHint = true
  }

  /** The suspect runs alone: started and not waiting out a backoff. */
  private aloneRuns(): boolean {
    return this.alone !== undefined && this.inProgress.has(this.alone.id)
  }

  /** A suspect waits for its turn or runs alone: no claims meanwhile. */
  private isolating(): boolean {
    return this.suspect !== undefined || this.aloneRuns()
  }

  /**
   * Of the messages just claimed, those before the first suspect (interrupted at an unclean stop)
   * go to the queue; the suspect waits to run alone; those after it go back to the store, so that
   * they are not under way (claimed) should the suspect stop the engine again.
   */
  private setSuspectAside(got: ClaimedMessage[]): ClaimedMessage[] {
    const i = got.findIndex((m) => (m.interruptions ?? 0) > 0)
    if (i < 0) return got
    this.suspect = got[i]
    this.releaseLater(got.slice(i + 1).map((m) => m.id))
    return got.slice(0, i)
  }

  /** Returns claimed messages to the store; should that fail, they go back with the next claim or at stop. */
  private releaseLater(ids: string[]): void {
    if (ids.length === 0) return
    this.returned++
    void this.rc.store.release(ids).catch(() => ids.forEach((id) => this.toRelease.add(id)))
  }

  /** Empties the queue and the suspect's place: the claimed messages that have not started. */
  private drainWaiting(): ClaimedMessage[] {
    const all = this.queue.drain()
    if (this.suspect) all.push(this.suspect)
    this.suspect = undefined
    return all
  }

  private async claim(): Promise<void> {
    const limit = this.o.prefetch - this.queue.size
    this.workHint = false
    try {
      // Messages whose release failed (the store was unreachable) go back first, so they are not held until stop.
      if (this.toRelease.size > 0) {
        const ids = [...this.toRelease]
        await this.rc.store.release(ids)
        for (const id of ids) this.toRelease.delete(id)
      }
      const returned = this.returned
      const got = await this.rc.store.claim(this.rc.name, limit, { order: this.o.order })
      // Stopping, or a failed message went back to the queue meanwhile: these were claimed after it, so they go back too (order).
      if (this.rc.stopping.aborted || this.halted || returned !== this.returned) {
        for (const m of got) this.toRelease.add(m.id)
        return
      }
      const kept = this.setSuspectAside(got)
      this.queue.push(kept)
      if (got.length === limit && !this.suspect) this.workHint = true
    } catch (e) {
      this.rc.log.error({ err: e }, 'claiming messages failed; retrying')
      this.workHint = true
      this.claimPausedUntil = this.rc.now() + this.o.pollMs
    }
  }

  /**
   * Message `m`'s claim was taken over by another engine: this engine's lease ran out while it was
   * frozen, starved or cut off, and a peer returned its claims to the queue. It and every claimed
   * message still waiting here under the lost lease belong to others now: they are dropped, with
   * nothing written for them (no release, no outcome). Those under way find the same at their next
   * attempt; an attempt already on the wire cannot be recalled (the store refuses its outcome).
   */
  private dropTakenOver(m: ClaimedMessage): void {
    const lost = (id: string) => claimStanding(this.rc, id) === 'lost'
    const waiting = this.queue.drain()
    const dropped = waiting.filter((q) => lost(q.id))
    this.queue.push(waiting.filter((q) => !lost(q.id)))
    if (this.suspect && lost(this.suspect.id)) {
      dropped.push(this.suspect)
      this.suspect = undefined
    }
    for (const id of this.toRelease) if (lost(id)) this.toRelease.delete(id)
    this.workHint = true
    const level = dropped.length > 0 ? 'warn' : 'debug'
    this.rc.log[level]({ message: m.id, dropped: dropped.length }, 'another engine took over this engine\'s claims (its lease ran out): the messages claimed under it are left to that engine, not started here')
  }

  /** Waits for a message to finish, a wake-up, the end of a claim pause, or the poll interval (work queued by another process). */
  private nextChange(): Promise<void> {
    return new Promise<void>((resolve) => {
      const pause = this.claimPausedUntil - this.rc.now()
      const timer = setTimeout(() => {
        this.changed = undefined
        if (pause <= 0 && !this.workHint && !this.claiming) {
          this.workHint = true
          // A claim on a store shared by a cluster reads the database, and the channel's follower
          // re-reads the count (channel.ts): only a store of its own keeps a queue to re-read.
          if (!this.rc.store.leadership) void this.rc.store.refreshPending(this.rc.name).catch(() => {})
        }
        resolve()
      }, pause > 0 ? pause : this.o.pollMs)
      this.changed = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  private async process(m: ClaimedMessage): Promise<void> {
    try {
      // A message claimed ahead starts only while this engine can vouch for its claim (see claimHeld).
      const held = claimHeld(this.rc, m.id)
      if (held !== true && !(await held)) return this.dropTakenOver(m)
      this.o.onEnding(m, await processMessage(this.rc, this.pipeline, m))
    } catch (e) {
      if (claimStanding(this.rc, m.id) === 'lost') return this.dropTakenOver(m)
      this.toRelease.add(m.id)
      if (this.rc.stopping.aborted) return
      if (!(isWeirError(e) && e.code === 'ERR_SHUTDOWN')) this.rc.log.error({ err: e, message: m.id }, 'processing failed; the message goes back to the queue')
      // The messages claimed after it go back too, so it is retried before them (order).
      this.returned++
      const ids = [...this.toRelease, ...this.drainWaiting().map((q) => q.id)]
      this.toRelease.clear()
      await this.rc.store.release(ids).catch(() => ids.forEach((id) => this.toRelease.add(id)))
      this.workHint = true
      this.claimPausedUntil = this.rc.now() + this.o.pollMs
    }
  }
}
