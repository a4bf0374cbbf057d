import type { Emit, Source } from '../../shared/component.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { Leadership } from '../../shared/store/types.ts'

/**
 * A source that must run on one engine of a cluster at a time (a poller: `cluster: "one-engine"`),
 * started only while this engine holds its leadership. Every third of the lease the engine tries
 * to take or keep it; the holder stops the source as soon as it cannot be sure it still holds it
 * (two thirds of a lease without a confirmed renewal), well before another engine may take over.
 * A local timer, not the turns, enforces that: a renewal that hangs (packets dropped on the way to
 * the database, no reset) holds up the turns, never the stop.
 * The source's cursor lives in the shared store, so the next leader goes on where this one stopped.
 */
export function underLeadership(source: Source, o: { leadership: Leadership; name: string; log: Logger; now: () => number }): Source {
  const { leadership, name, log } = o
  let emit: Emit | undefined
  let running = false
  /** When the last renewal that succeeded was sent: the database extended the lease no earlier than that. */
  let confirmedAt = -Infinity
  let timer: NodeJS.Timeout | undefined
  let deadline: NodeJS.Timeout | undefined
  let turn: Promise<void> = Promise.resolve()
  let stopping: Promise<void> = Promise.resolve()
  /** How long after a confirmed renewal the holder is still sure: another engine may take over only after a whole lease. */
  const sureMs = (leadership.leaseMs * 2) / 3

  /** Stops the source or gives up the leadership where a failure must not end the turns: it is logged. */
  const quietly = async (what: string, fn: () => unknown): Promise<void> => {
    try {
      await fn()
    } catch (e) {
      log.error({ err: e, leadership: name }, `${what} failed`)
    }
  }

  /**
   * Starts the source on taking the leadership. When it cannot start, what it may have started is
   * stopped and the leadership given back before the failure is thrown, so that another engine, or
   * a later turn of this one, tries again instead of the poller standing still on every engine.
   */
  const takeOver = async (): Promise<void> => {
    running = true
    log.info({ leadership: name }, 'this engine leads the source: starting it')
    try {
      await source.start(emit!)
    } catch (e) {
      running = false
      await quietly('stopping the source that failed to start', () => source.stop())
      await quietly('giving back the leadership', () => leadership.resign(name))
      throw e
    }
  }

  /** Stops the running source: the leadership may be another engine's by now. A later start waits for this stop. */
  const giveUp = (): Promise<void> => {
    running = false
    clearTimeout(deadline)
    log.warn({ leadership: name }, 'leadership lost: source stopped (another engine takes over)')
    return (stopping = quietly('stopping the source', () => source.stop()))
  }

  /**
   * While the source runs, stops it once two thirds of the lease have passed since the last confirmed
   * renewal, whether or not a renewal is still pending: rearmed by every confirmation.
   */
  const watch = (): void => {
    clearTimeout(deadline)
    if (!running) return
    const left = confirmedAt + sureMs - o.now()
    if (left <= 0) return void giveUp()
    deadline = setTimeout(watch, left)
    deadline.unref()
  }

  const check = async (): Promise<void> => {
    const sentAt = o.now()
    let held = false
    try {
      held = await leadership.lead(name)
      if (held) confirmedAt = sentAt
    } catch (e) {
      log.warn({ err: e, leadership: name }, 'cannot renew the leadership; retrying')
    }
    // An answer that came back late is no longer sure, held or not.
    const sure = o.now() - confirmedAt < sureMs
    if (held && sure && !running) {
      await stopping
      await takeOver()
    } else if (!sure && running) {
      await giveUp()
    }
    watch()
  }

  /** Turns run one after the other and none rejects: a rejected turn would skip every later one, and nobody awaits them. */
  const nextTurn = () => {
    turn = turn.then(check).catch((e: unknown) => log.error({ err: e, leadership: name }, 'the source failed to start; leadership given back, trying again at a later turn'))
  }

  return {
    /** A source that cannot start at once fails `start`, as without a cluster; a later takeover that fails is retried. */
    async start(e) {
      emit = e
      await check()
      timer = setInterval(nextTurn, Math.max(100, Math.floor(leadership.leaseMs / 3)))
      timer.unref()
    },
    async stop() {
      clearInterval(timer)
      await turn
      clearTimeout(deadline)
      await stopping
      try {
        if (running) {
          running = false
          await source.stop()
        }
      } finally {
        await leadership.resign(name)
      }
    },
    ...(source.tick ? { tick: () => source.tick!() } : {}),
    ...(source.address ? { address: () => source.address!() } : {}),
  }
}
