import type { Emit, Source } from '../../shared/component.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { Leadership } from '../../shared/store/types.ts'

/**
 * A source that must run on one engine of a cluster at a time (a poller: `cluster: "one-engine"`),
 * started only while this engine holds its leadership. Every third of the lease the engine tries
 * to take or keep it; the holder stops the source as soon as it cannot be sure it still holds it
 * (two thirds of a lease without a confirmed renewal), well before another engine may take over.
 * The source's cursor lives in the shared store, so the next leader goes on where this one stopped.
 */
export function underLeadership(source: Source, o: { leadership: Leadership; name: string; log: Logger; now: () => number }): Source {
  const { leadership, name, log } = o
  let emit: Emit | undefined
  let running = false
  let confirmedAt = -Infinity
  let timer: NodeJS.Timeout | undefined
  let turn: Promise<void> = Promise.resolve()

  const check = async (): Promise<void> => {
    let held = false
    try {
      held = await leadership.lead(name)
      if (held) confirmedAt = o.now()
    } catch (e) {
      log.warn({ err: e, leadership: name }, 'cannot renew the leadership; retrying')
    }
    const sure = held || o.now() - confirmedAt < (leadership.leaseMs * 2) / 3
    if (held && !running) {
      running = true
      log.info({ leadership: name }, 'this engine leads the source: starting it')
      await source.start(emit!)
    } else if (!sure && running) {
      running = false
      log.warn({ leadership: name }, 'leadership lost: source stopped (another engine takes over)')
      await source.stop()
    }
  }

  return {
    async start(e) {
      emit = e
      await check()
      timer = setInterval(() => { turn = turn.then(check) }, Math.max(100, Math.floor(leadership.leaseMs / 3)))
      timer.unref()
    },
    async stop() {
      clearInterval(timer)
      await turn
      if (running) {
        running = false
        await source.stop()
      }
      await leadership.resign(name)
    },
    ...(source.tick ? { tick: () => source.tick!() } : {}),
    ...(source.address ? { address: () => source.address!() } : {}),
  }
}
