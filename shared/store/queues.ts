import type { ClaimedMessage } from './types.ts'

/** Most committed messages a channel keeps in memory for claiming; beyond, the queue is read back from the database. */
const HOT_MAX = 8192

interface ChannelQueue {
  /** Committed, unclaimed messages in `seq` order, with their content as emitted. Empty while `backlog`. */
  hot: ClaimedMessage[]
  /** The database may hold queued messages that `hot` does not: claims read the database until it runs dry. */
  backlog: boolean
  /** Bumped each time `backlog` is set, so a read that started before cannot clear it. */
  generation: number
  /** Messages emitted but not yet committed (counted in `pending` already). */
  unwritten: number
  /** Messages not finished (queued, in-flight, retrying), committed or not. */
  pending: number
}

/**
 * What the store keeps in memory per channel so that a claim rarely touches the database: a
 * message committed by this process is handed to `claim` from memory (its content is never read
 * back), as long as nothing older is queued in the database (`backlog`: after a restart, a release
 * or a resubmission). Claims are then marked in the database without waiting: if the process dies,
 * the owner's next open returns every claimed message to the queue anyway, and a mark lost while it
 * lives is harmless too, since a claim from the database skips the messages the process holds.
 */
export class ChannelQueues {
  private readonly byChannel = new Map<string, ChannelQueue>()

  constructor(pending: Iterable<[string, number]>) {
    for (const [channel, n] of pending) this.of(channel).pending = n
    for (const q of this.byChannel.values()) q.backlog = q.pending > 0
  }

  of(channel: string): ChannelQueue {
    let q = this.byChannel.get(channel)
    if (!q) this.byChannel.set(channel, (q = { hot: [], backlog: false, generation: 0, unwritten: 0, pending: 0 }))
    return q
  }

  channels(): string[] {
    return [...this.byChannel.keys()]
  }

  /** An emit was accepted: it counts against the queue bound from now on. */
  accepted(channel: string): void {
    const q = this.of(channel)
    q.pending++
    q.unwritten++
  }

  /** An emit's write ended: committed as new (`message`, handed to claims from memory when it can be), a duplicate, or failed. */
  written(channel: string, outcome: { message?: ClaimedMessage; counted: boolean }): void {
    const q = this.of(channel)
    q.unwritten--
    if (!outcome.counted) q.pending = Math.max(0, q.pending - 1)
    if (!outcome.message || q.backlog) return
    if (q.hot.length >= HOT_MAX) this.toDatabase(channel)
    else q.hot.push(outcome.message)
  }

  /** From now on, claims read the database (older queued messages may be there). */
  toDatabase(channel: string): void {
    const q = this.of(channel)
    q.backlog = true
    q.generation++
    q.hot = []
  }

  /** A database claim that started at `generation` returned fewer than it asked for: the database has nothing older than what comes next. */
  drained(channel: string, generation: number): void {
    const q = this.of(channel)
    if (q.generation === generation) q.backlog = false
  }

  finished(channel: string, n = 1): void {
    const q = this.of(channel)
    q.pending = Math.max(0, q.pending - n)
  }

  requeued(channel: string, n = 1): void {
    this.of(channel).pending += n
    this.toDatabase(channel)
  }

  /** The database's count of unfinished messages, read in commit order: emits not yet committed are added. */
  recount(channel: string, committed: number): void {
    const q = this.of(channel)
    q.pending = committed + q.unwritten
  }

  /** Recounts `channels` and every channel `rows` names from the database's counts of unfinished messages (absent: none). */
  recountAll(channels: readonly string[], rows: ReadonlyArray<{ channel: string; n: number }>): void {
    const counts = new Map(rows.map((r) => [r.channel, r.n]))
    for (const ch of new Set([...channels, ...counts.keys()])) this.recount(ch, counts.get(ch) ?? 0)
  }
}
