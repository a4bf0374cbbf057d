import type { RetentionOptions } from '../shared/config/types.ts'
import type { Logger } from '../shared/log/index.ts'
import type { Leadership, MessageStore, PurgeTarget } from '../shared/store/types.ts'

const DAY_MS = 86_400_000
/** How often the task looks for messages to delete (ms). */
export const RETENTION_INTERVAL_MS = 60_000
/** Messages deleted per store call (one transaction); the task yields to the event loop between two. */
export const RETENTION_BATCH = 500
/**
 * The leadership under which one engine of a cluster applies the retention of `channel`: one per
 * channel, so that a channel only some engines have is purged by one of them, whichever engine
 * leads the others'.
 */
export const retentionLeadership = (channel: string) => `retention:${channel}`

/** A channel and its `options.retention`. */
export interface RetainedChannel {
  name: string
  retention: RetentionOptions
}

/**
 * The purges `options.retention` asks for at `now`, each to be applied in full. Delivered and
 * filtered messages go after `maxAgeDays`, and beyond the newest `maxMessages` finished messages
 * (errors among them count but stay). Messages in error, never delivered and perhaps still to be
 * resubmitted, go only after `keepErrorsDays`, and only when it is set.
 */
export function retentionTargets(channel: string, r: RetentionOptions, now: number): PurgeTarget[] {
  const ago = (days: number) => now - days * DAY_MS
  const targets: PurgeTarget[] = []
  if (r.maxAgeDays !== undefined) targets.push({ channel, statuses: ['delivered', 'filtered'], before: ago(r.maxAgeDays) })
  if (r.maxMessages !== undefined) targets.push({ channel, statuses: ['delivered', 'filtered'], keepNewest: r.maxMessages })
  if (r.keepErrorsDays !== undefined) targets.push({ channel, statuses: ['error'], before: ago(r.keepErrorsDays) })
  return targets
}

/** What one retention pass deleted of a channel: `purged` messages, `errors` of them in error. */
export interface RetentionPass {
  purged: number
  errors: number
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Deletes what `target` names, `RETENTION_BATCH` messages per store call (one transaction, the
 * freed space given back after it), yielding to the event loop between two calls so delivery goes
 * on; `stopped` ends it between two batches. Returns how many were deleted.
 */
export async function purgeInBatches(store: MessageStore, target: PurgeTarget, stopped?: () => boolean): Promise<number> {
  let n = 0
  // Bounded: a batch that comes back short ends it.
  for (let got = RETENTION_BATCH; got === RETENTION_BATCH && !stopped?.();) {
    got = await store.purge({ ...target, limit: RETENTION_BATCH })
    n += got
    await nextTurn()
  }
  return n
}

/**
 * Applies every channel's retention once, in batches (`purgeInBatches`); returns what it deleted
 * per channel. With `leads`, only the channels it says this engine leads.
 */
export async function applyRetention(
  store: MessageStore, channels: readonly RetainedChannel[], o: { now: () => number; stopped?: () => boolean; leads?: (channel: string) => Promise<boolean> },
): Promise<Map<string, RetentionPass>> {
  const purged = new Map<string, RetentionPass>()
  for (const ch of channels) {
    if (o.stopped?.()) break
    if (o.leads && !(await o.leads(ch.name))) continue
    const pass = { purged: 0, errors: 0 }
    for (const target of retentionTargets(ch.name, ch.retention, o.now())) {
      const n = await purgeInBatches(store, target, o.stopped)
      pass.purged += n
      if (target.statuses?.includes('error')) pass.errors += n
    }
    purged.set(ch.name, pass)
  }
  return purged
}

export interface RetentionTask {
  /** Waits for a pass in progress to reach the end of its batch, then stops. */
  stop(): Promise<void>
}

/**
 * Starts the background retention of `weir run`: a pass at once, then every `intervalMs`. With a
 * store shared by a cluster, every engine runs it for the channels of its own configuration, each
 * channel only while it holds that channel's leadership (`retentionLeadership`), taken or kept at
 * every pass: the engines share out the channels they have in common, and every channel that any
 * engine has is purged. A leadership is kept while its engine lives (the heartbeat renews it) and
 * given back when the task stops. Two engines purging one channel at once (a leadership taken over
 * from an engine cut off from the database) delete nothing twice: a purge skips the rows another holds.
 */
export function startRetention(store: MessageStore, channels: readonly RetainedChannel[], o: { log: Logger; now?: () => number; intervalMs?: number }): RetentionTask {
  if (channels.length === 0) return { stop: async () => {} }
  const now = o.now ?? Date.now
  const leadership: Leadership | undefined = store.leadership
  let running = true
  let pass: Promise<void> | undefined
  const leads = leadership && ((channel: string) => leadership.lead(retentionLeadership(channel)))
  const once = async () => {
    try {
      const purged = await applyRetention(store, channels, { now, stopped: () => !running, ...(leads ? { leads } : {}) })
      for (const [channel, { purged: n, errors }] of purged) if (n > 0) o.log.info({ channel, purged: n, errors }, 'retention: finished messages deleted')
    } catch (e) {
      o.log.warn({ err: e }, 'retention pass failed; trying again at the next interval')
    } finally {
      pass = undefined
    }
  }
  // A pass still running when the interval comes round is not doubled.
  const tick = () => { pass ??= once() }
  tick()
  const timer = setInterval(tick, o.intervalMs ?? RETENTION_INTERVAL_MS)
  timer.unref()
  return {
    async stop() {
      running = false
      clearInterval(timer)
      await pass
      if (leadership) await Promise.all(channels.map((ch) => leadership.resign(retentionLeadership(ch.name))))
    },
  }
}
