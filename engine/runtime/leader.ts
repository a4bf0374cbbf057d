import type { Emit, Source } from '../../shared/component.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { Leadership } from '../../shared/store/types.ts'

interface LeadershipOptions {
  leadership: Leadership
  name: string
  log: Logger
  now: () => number
}

/**
 * A source that must run on one engine of a cluster at a time (a poller: `cluster: "one-engine"`),
 * started only while this engine holds its leadership. Every third of the lease the engine tries
 * to take or keep it; the holder stops the source as soon as it cannot be sure it still holds it
 * (two thirds of a lease without a confirmed renewal), well before another engine may take over.
 * A local timer, not the turns, enforces that: a renewal that hangs (packets dropped on the way to
 * the database, no reset) holds up the turns, never the stop.
 * The source's cursor lives in the shared store, so the next leader goes on where this one stopped.
 */
export function underLeadership(source: Source, o: LeadershipOptions): Source {
  const loop = new LeadershipLoop(source, o)
  return {
    /** A source that cannot start at once fails `start`, as without a cluster; a later takeover that fails is retried. */
    start: (emit) => loop.start(emit),
    stop: () => loop.stop(),
    ...(source.tick ? { tick: () => source.tick!() } : {}),
    ...(source.address ? { address: () => source.address!() } : {}),
  }
}

/** The turns of one leadership: renewing it, the local stop timer, and starting and stopping the source as it is taken and lost. */
class LeadershipLoop {
  private emit: Emit | undefined
  private running = false
  /** When the last renewal that succeeded was sent: the database extended the lease no earlier than that. */
  private confirmedAt = -Infinity
  private interval: NodeJS.Timeout | undefined
  private deadline: NodeJS.Timeout | undefined
  private turn: Promise<void> = Promise.resolve()
  private stopping: Promise<void> = Promise.resolve()
  /** How long after a confirmed renewal the holder is still sure: another engine may take over only after a whole lease. */
  private readonly sureMs: number

  constructor(private readonly source: Source, private readonly o: LeadershipOptions) {
    this.sureMs = (o.leadership.leaseMs * 2) / 3
  }

  async start(emit: Emit): Promise<void> {
    this.emit = emit
    await this.check()
    this.interval = setInterval(() => this.nextTurn(), Math.max(100, Math.floor(this.o.leadership.leaseMs / 3)))
    this.interval.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.interval)
    await this.turn
    clearTimeout(this.deadline)
    await this.stopping
    try {
      if (this.running) {
        this.running = false
        await this.source.stop()
      }
    } finally {
      await this.o.leadership.resign(this.o.name)
    }
  }

  /** Turns run one after the other and none rejects: a rejected turn would skip every later one, and nobody awaits them. */
  private nextTurn(): void {
    this.turn = this.turn.then(() => this.check()).catch((e: unknown) => {
      this.o.log.error({ err: e, leadership: this.o.name }, 'the source failed to start; leadership given back, trying again at a later turn')
    })
  }

  /** One turn: takes or renews the leadership, then starts or stops the source as the answer allows. */
  private async check(): Promise<void> {
    const held = await this.renew()
    // An answer that came back late is no longer sure, held or not.
    const sure = this.o.now() - this.confirmedAt < this.sureMs
    if (held && sure && !this.running) {
      await this.stopping
      await this.takeOver()
    } else if (!sure && this.running) {
      await this.giveUp()
    }
    this.watch()
  }

  /** Asks for the leadership; a failure is logged and counts as not held (the next turn tries again). */
  private async renew(): Promise<boolean> {
    const sentAt = this.o.now()
    try {
      const held = await this.o.leadership.lead(this.o.name)
      if (held) this.confirmedAt = sentAt
      return held
    } catch (e) {
      this.o.log.warn({ err: e, leadership: this.o.name }, 'cannot renew the leadership; retrying')
      return false
    }
  }

  /**
   * While the source runs, stops it once two thirds of the lease have passed since the last confirmed
   * renewal, whether or not a renewal is still pending: rearmed by every confirmation.
   */
  private watch(): void {
    clearTimeout(this.deadline)
    if (!this.running) return
    const left = this.confirmedAt + this.sureMs - this.o.now()
    if (left <= 0) return void this.giveUp()
    this.deadline = setTimeout(() => this.watch(), left)
    this.deadline.unref()
  }

  /**
   * Starts the source on taking the leadership. When it cannot start, what it may have started is
   * stopped and the leadership given back before the failure is thrown, so that another engine, or
   * a later turn of this one, tries again instead of the poller standing still on every engine.
   */
  private async takeOver(): Promise<void> {
    this.running = true
    this.o.log.info({ leadership: this.o.name }, 'this engine leads the source: starting it')
    try {
      await this.source.start(this.emit!)
    } catch (e) {
      this.running = false
      await this.quietly('stopping the source that failed to start', () => this.source.stop())
      await this.quietly('giving back the leadership', () => this.o.leadership.resign(this.o.name))
      throw e
    }
  }

  /** Stops the running source: the leadership may be another engine's by now. A later start waits for this stop. */
  private giveUp(): Promise<void> {
    this.running = false
    clearTimeout(this.deadline)
    this.o.log.warn({ leadership: this.o.name }, 'leadership lost: source stopped (another engine takes over)')
    return (this.stopping = this.quietly('stopping the source', () => this.source.stop()))
  }

  /** Stops the source or gives up the leadership where a failure must not end the turns: it is logged. */
  private async quietly(what: string, fn: () => unknown): Promise<void> {
    try {
      await fn()
    } catch (e) {
      this.o.log.error({ err: e, leadership: this.o.name }, `${what} failed`)
    }
  }
}
