import type { Logger } from '../../shared/log/index.ts'
import { sleep } from './backoff.ts'
import type { ChannelComponents } from './components.ts'

/**
 * Runs `fn` and waits for it at most `ms`; a failure or a timeout is logged, never thrown (stopping
 * goes on). `fn` is called in here, not by the caller, so that a component whose `stop()` or
 * `close()` throws before returning a promise is caught like one whose promise rejects.
 */
export async function within(log: Logger, fn: () => unknown, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      Promise.resolve().then(fn).then(() => {}),
      new Promise<void>((resolve) => { timer = setTimeout(() => { log.warn(`${what} did not finish within ${ms} ms`); resolve() }, ms) }),
    ])
  } catch (e) {
    log.error({ err: e }, `${what} failed`)
  } finally {
    clearTimeout(timer)
  }
}

export interface StopPlan {
  log: Logger
  now: () => number
  timeoutMs: number
  components: ChannelComponents
  /** Aborts the channel's waits and stops new work (the "stopping" signal). */
  stopStarting(): void
  /** Aborts attempts still under way (the "aborting" signal): each is cut off at once, whether its component heeds the signal or not. */
  abortInFlight(): void
  /** Settles when every message under way has finished or been abandoned. */
  work: Promise<void>
  /** Returns what was claimed but not finished to the queue. */
  releaseLeftOver(): Promise<void>
  /** Emits still writing (they complete, and are acknowledged, before the store may close). */
  emitsInFlight(): number
  /** Ids of the messages under way, named when the deadline cuts them off. */
  underWay(): string[]
}

/** How many ids a log line names at most. */
const NAMED = 20

/**
 * The stop sequence: the source stops; in-flight work may finish until the deadline, then is
 * aborted (an attempt whose destination ignores the abort is cut off all the same: recorded, its
 * message released, its late result ignored); what is left goes back to the queue; the components
 * and credentials close.
 */
export async function stopChannel(plan: StopPlan): Promise<void> {
  const { log, components: c } = plan
  const deadline = plan.now() + plan.timeoutMs
  plan.stopStarting()
  await within(log, () => c.source.stop(), plan.timeoutMs, 'source stop')
  let finished = false
  const work = plan.work.then(() => { finished = true })
  await within(log, () => work, Math.max(0, deadline - plan.now()), 'in-flight work')
  if (!finished) {
    const ids = plan.underWay()
    log.warn({ messages: ids.slice(0, NAMED), count: ids.length }, 'cutting off the messages still under way at the end of shutdownTimeoutMs: they go back to the queue (an attempt on the wire is recorded as cut off)')
    plan.abortInFlight()
    await within(log, () => work, 1000, 'aborted deliveries')
  }
  await within(log, () => plan.releaseLeftOver(), 5000, 'releasing messages')
  for (let i = 0; i < 100 && plan.emitsInFlight() > 0; i++) await sleep(10)
  for (const f of c.filters) await within(log, () => f.close?.(), 1000, 'filter close')
  for (const d of c.destinations) await within(log, () => d.instance.close?.(), 1000, `destination ${d.loaded.name} close`)
  for (const [credName, p] of c.providers) await within(log, () => p.close(), 1000, `credential ${credName} close`)
}
