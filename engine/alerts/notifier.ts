import { hostname } from 'node:os'
import type { LoadedChannel } from '../../shared/config/types.ts'
import type { HttpClient } from '../../shared/http/types.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { TokenProvider } from '../../shared/oauth/types.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import { startChannel, type ChannelHandle } from '../runtime/index.ts'
import type { RuntimeObserver } from '../runtime/index.ts'
import { errorKey, errorsToCount, errorWindowMs, holds, subjectsOf, type Subject } from './conditions.ts'
import type { FeedSource } from './feed.ts'
import { alertId, webhookKey, type AlertRule, type LoadedAlerts } from './load.ts'
import { RuntimeWatch } from './observer.ts'
import { step, type AlertState, type Transition } from './state.ts'

/** Where alert states are kept in the store (`getState`/`setState`). */
const STATE_CHANNEL = 'weir-alerts'
const STATE_COMPONENT = 'alerts'
/**
 * The leadership of one alert rule that a cluster's engines compete for: only its holder evaluates
 * the rule and notifies. One per rule, not one for all, so that an engine whose rules differ from
 * its peers' (another alerts file, channels with alerts blocks of their own, or none) never keeps
 * a rule it does not have from being evaluated: each rule is led by an engine that has it.
 */
export const alertsLeadership = (rule: AlertRule): string => `alerts:${alertId(rule)}`

export interface AlertsDeps {
  store: MessageStore
  log: Logger
  dataDir: string
  http?: HttpClient
  /** Builds the token provider of a webhook's credential (as for channels). */
  credential?: (name: string, channel: LoadedChannel) => TokenProvider
  now?: () => number
  /** How long `stop()` lets queued notifications go out before stopping their channels. Default 2000 ms. */
  drainMs?: number
  /**
   * Told what the webhook channels (`weir-alerts.*`) do, as `RuntimeDeps.observer` is for the
   * others: give the admin server's, so that /metrics shows notifications delivered and failed.
   */
  observer?: RuntimeObserver
}

/** The JSON body POSTed to a webhook. Never message content, never a token. */
export interface Notification {
  alert: string
  condition: string
  state: Transition
  channel: string
  destination?: string
  credential?: string
  /** When the condition started (ISO 8601). */
  since: string
  /** When this notification was made (ISO 8601). */
  at: string
  engine: { hostname: string; pid: number }
  summary: string
  /**
   * Present (true) on a firing less than `minIntervalMs` after the pair's last "resolved", and on its
   * "resolved": that one is sent only once the condition has stayed clear for `minIntervalMs`.
   */
  flapping?: true
}

export interface Alerts {
  /**
   * Give it to every channel (`RuntimeDeps.observer`, with `composeObservers`): `destination-failing`
   * sees attempts through it. (`messages-failing` counts the messages in error the store holds; only
   * with a store without `countErrors` does it count those this engine sees through it.)
   */
  readonly observer: RuntimeObserver
  /** Starts the webhook channels, then evaluates the alerts over `handles` every `checkIntervalMs`. */
  start(handles: readonly ChannelHandle[]): Promise<void>
  /** Evaluates every alert now. */
  evaluate(): Promise<void>
  /** Evaluates a last time (before the channels stop), lets queued notifications go out for `drainMs`, stops the webhook channels. */
  stop(): Promise<void>
  /** The running webhook channels (`weir-alerts.<webhook>`). */
  readonly channels: readonly ChannelHandle[]
}

/**
 * The alerts notifier: a state machine per (alert, subject) pair, evaluated on a timer; each
 * transition is one notification, queued in the store through the webhook's internal channel, so
 * it survives a restart and is retried with backoff like a message. With a store shared by a
 * cluster each rule is evaluated only by the engine holding its leadership (`alertsLeadership`).
 * @example
 * const alerts = createAlerts(await loadAlerts('alerts.json'), { store, log, dataDir })
 * const handles = [await startChannel(channel, { store, log, dataDir, observer: alerts.observer })]
 * await alerts.start(handles)
 */
export function createAlerts(loaded: LoadedAlerts, deps: AlertsDeps): Alerts {
  return new AlertsNotifier(loaded, deps)
}

class AlertsNotifier implements Alerts {
  readonly channels: ChannelHandle[] = []
  readonly #watch: RuntimeWatch
  readonly #states = new Map<string, AlertState>()
  readonly #feeds = new Map<string, FeedSource>()
  readonly #engine = { hostname: hostname(), pid: process.pid }
  readonly #log: Logger
  readonly #now: () => number
  #handles: readonly ChannelHandle[] = []
  /** The rules (by `alertsLeadership`) whose leadership this engine held at the last evaluation. */
  readonly #leading = new Set<string>()
  #timer: NodeJS.Timeout | undefined
  #turn: Promise<void> = Promise.resolve()

  readonly loaded: LoadedAlerts
  readonly deps: AlertsDeps

  constructor(loaded: LoadedAlerts, deps: AlertsDeps) {
    this.loaded = loaded
    this.deps = deps
    this.#log = deps.log.child({ component: 'alerts' })
    this.#now = deps.now ?? Date.now
    // Errors are kept in memory only for a store that cannot count them (see #errorCounts).
    this.#watch = new RuntimeWatch(this.#now, deps.store.countErrors ? 0 : Math.max(0, ...loaded.alerts.map(errorWindowMs)))
  }

  get observer(): RuntimeObserver {
    return this.#watch.observer
  }

  async start(watched: readonly ChannelHandle[]): Promise<void> {
    this.#handles = watched
    const names = new Set(watched.map((h) => h.name))
    for (const a of this.loaded.alerts) {
      const unknown = a.channels === '*' ? [] : a.channels.filter((c) => !names.has(c))
      if (unknown.length) this.#log.warn({ alert: alertId(a), channels: unknown }, 'alert names channels this engine does not run')
    }
    const { store, log, dataDir, http, credential, observer } = this.deps
    try {
      for (const [name, channel] of Object.entries(this.loaded.webhooks)) {
        const h = await startChannel(channel, { store, log, dataDir, now: this.#now, ...(http ? { http } : {}), ...(credential ? { credential } : {}), ...(observer ? { observer } : {}) })
        this.channels.push(h)
        this.#feeds.set(name, h.source as FeedSource)
      }
    } catch (e) {
      await Promise.all(this.channels.map((h) => h.stop({ timeoutMs: 0 })))
      throw e
    }
    this.#timer = setInterval(() => void this.evaluate(), this.loaded.checkIntervalMs)
    this.#timer.unref()
    this.#log.info({ alerts: this.loaded.alerts.map(alertId), webhooks: Object.keys(this.loaded.webhooks) }, 'alerts started')
  }

  evaluate(): Promise<void> {
    return (this.#turn = this.#turn.then(() => this.#evaluate()).catch((e) => this.#log.error({ err: e }, 'alert evaluation failed')))
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.evaluate()
    await Promise.all(this.channels.map((h) => h.whenIdle({ timeoutMs: this.deps.drainMs ?? 2000 }).catch(() => {})))
    await Promise.all(this.channels.map((h) => h.stop()))
    const leadership = this.deps.store.leadership
    if (leadership) await Promise.all([...this.#leading].map((name) => leadership.resign(name).catch(() => {})))
    this.#leading.clear()
  }

  async #evaluate(): Promise<void> {
    const rules = await this.#led()
    if (rules.length === 0) return
    const needsOldest = rules.some((a) => a.condition === 'queue-age')
    const now = this.#now()
    const errors = await this.#errorCounts(rules, now)
    const snapshot = { handles: this.#handles, oldest: needsOldest ? await this.deps.store.oldestPending() : {}, ...(errors ? { errors } : {}), watch: this.#watch, now }
    for (const rule of rules) {
      for (const subject of subjectsOf(rule, snapshot)) {
        const prev = await this.#stateOf(subject.key)
        const next = step(prev, holds(subject, prev), snapshot.now, rule)
        if (next.state === prev) continue
        try {
          if (next.transition) await this.#notify(rule, subject, next.state, next.transition, snapshot.now)
          await this.deps.store.setState(STATE_CHANNEL, STATE_COMPONENT, subject.key, next.state)
        } catch (e) {
          // Not recorded: the next evaluation tries again.
          this.#log.error({ err: e, alert: alertId(rule), channel: subject.channel }, 'cannot queue the alert notification')
          continue
        }
        this.#states.set(subject.key, next.state)
      }
    }
  }

  /**
   * What the `messages-failing` alerts count, from the store: every engine's errors (in a cluster)
   * and those made before a restart. One query per channel and window, at every evaluation.
   * Undefined for a store without `countErrors`: the errors this engine saw are counted instead.
   */
  async #errorCounts(rules: readonly AlertRule[], now: number): Promise<Map<string, number> | undefined> {
    const { store } = this.deps
    if (!store.countErrors) return undefined
    const count = store.countErrors.bind(store)
    const wanted = new Map(rules.flatMap((rule) => errorsToCount(rule, this.#handles)).map((c) => [errorKey(c.channel, c.windowMs), c]))
    const counts = new Map<string, number>()
    await Promise.all([...wanted].map(async ([key, c]) => counts.set(key, await count(c.channel, now - c.windowMs))))
    return counts
  }

  /**
   * The rules this engine evaluates now: all of them without a shared store; with one, those whose
   * leadership (`alertsLeadership`) it holds. A rule's leadership newly taken forgets what this
   * engine remembered of the rule's states, so that it goes on from those its predecessor kept.
   */
  async #led(): Promise<readonly AlertRule[]> {
    const leadership = this.deps.store.leadership
    if (!leadership) return this.loaded.alerts
    const names = this.loaded.alerts.map(alertsLeadership)
    let held: ReadonlySet<string>
    try {
      held = leadership.leadAll ? await leadership.leadAll(names) : new Set((await Promise.all(names.map(async (n) => ((await leadership.lead(n)) ? [n] : [])))).flat())
    } catch (e) {
      this.#log.warn({ err: e }, 'cannot renew the alerts\' leaderships; not evaluating')
      held = new Set()
    }
    const led = this.loaded.alerts.filter((rule) => held.has(alertsLeadership(rule)))
    for (const rule of this.loaded.alerts) {
      const name = alertsLeadership(rule)
      if (!led.includes(rule)) this.#leading.delete(name)
      else if (!this.#leading.has(name)) {
        this.#leading.add(name)
        const prefix = `${alertId(rule)}|`
        for (const key of [...this.#states.keys()]) if (key.startsWith(prefix)) this.#states.delete(key)
      }
    }
    return led
  }

  async #stateOf(key: string): Promise<AlertState> {
    let s = this.#states.get(key)
    if (!s) {
      s = (await this.deps.store.getState<AlertState>(STATE_CHANNEL, STATE_COMPONENT, key)) ?? { firing: false }
      this.#states.set(key, s)
    }
    return s
  }

  async #notify(rule: AlertRule, subject: Subject, state: AlertState, transition: Transition, at: number): Promise<void> {
    const body: Notification = {
      alert: rule.name, condition: rule.condition, state: transition, channel: subject.channel,
      ...(subject.destination !== undefined ? { destination: subject.destination } : {}),
      ...(subject.credential !== undefined ? { credential: subject.credential } : {}),
      since: new Date(state.since ?? at).toISOString(), at: new Date(at).toISOString(), engine: this.#engine, summary: subject.summary,
      ...(state.flapping ? { flapping: true } : {}),
    }
    await this.#feeds.get(webhookKey(rule))!.send({ body, contentType: 'application/json', dedupeKey: `${subject.key}|${transition}|${state.since}` })
    const fields = { alert: alertId(rule), channel: subject.channel, summary: subject.summary, ...(state.flapping ? { flapping: true } : {}) }
    // A flapping firing says how long its "resolved" will wait (see step).
    if (transition === 'firing') this.#log.warn(state.flapping ? { ...fields, resolvesAfterClearMs: Math.max(rule.clearAfterMs, rule.minIntervalMs) } : fields, 'alert firing')
    else this.#log.info(fields, 'alert resolved')
  }
}
