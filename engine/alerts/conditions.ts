import { scrubSecrets } from '../../shared/secret.ts'
import type { ChannelHandle, DestinationStatus } from '../runtime/index.ts'
import { alertId, type AlertRule } from './load.ts'
import type { RuntimeWatch } from './observer.ts'
import type { AlertState } from './state.ts'

/** One thing an alert watches (a channel, a destination or a credential of it) and whether its condition holds now. */
export interface Subject {
  /** Identifies the (alert, subject) pair across evaluations and restarts. */
  key: string
  channel: string
  destination?: string
  credential?: string
  active: boolean
  /** One line for people: what holds (or no longer holds). Never message content or a secret. */
  summary: string
  /** A destination's: once firing, the pair holds until a delivered attempt (see `holds`); when the last one ended, if any. */
  clearsOnDelivery?: { lastDelivered: number | undefined }
}

/** What one evaluation sees of this engine. */
export interface Snapshot {
  handles: readonly ChannelHandle[]
  /** `store.oldestPending()`: receivedAt of the oldest unfinished message per channel. */
  oldest: Record<string, number>
  /**
   * `store.countErrors()` of each channel and window `errorsToCount` asks for, by `errorKey`: the
   * messages in error the store holds, whichever engine put them there. Absent (a store without
   * `countErrors`): the errors `watch` saw on this engine.
   */
  errors?: ReadonlyMap<string, number>
  watch: RuntimeWatch
  now: number
}

const iso = (ms: number) => new Date(ms).toISOString()

/** `messages-failing` defaults: one message in error within five minutes. */
const DEFAULT_ERROR_COUNT = 1
const DEFAULT_WINDOW_SECONDS = 300

/** The window of a `messages-failing` rule (ms); 0 for other conditions. */
export const errorWindowMs = (rule: AlertRule): number => (rule.condition === 'messages-failing' ? (rule.windowSeconds ?? DEFAULT_WINDOW_SECONDS) * 1000 : 0)

/** Identifies a count of `Snapshot.errors`: a channel's errors within a window. */
export const errorKey = (channel: string, windowMs: number): string => `${channel}\0${windowMs}`

/** The channels `rule` watches among `handles`. */
const watched = (rule: AlertRule, handles: readonly ChannelHandle[]) => handles.filter((h) => rule.channels === '*' || rule.channels.includes(h.name))

/** The counts of errors a `messages-failing` rule needs in `Snapshot.errors`: per channel it watches, its window (none for other conditions). */
export function errorsToCount(rule: AlertRule, handles: readonly ChannelHandle[]): Array<{ channel: string; windowMs: number }> {
  if (rule.condition !== 'messages-failing') return []
  const windowMs = errorWindowMs(rule)
  return watched(rule, handles).map((h) => ({ channel: h.name, windowMs }))
}

/**
 * Whether a subject's condition holds, given its pair's state: a firing `destination-failing` pair
 * holds until a delivered attempt ends after it started firing, so a breaker closed by permanent
 * answers (a 400 proves the API is up, not that it takes messages) does not resolve it.
 */
export function holds(subject: Subject, state: AlertState): boolean {
  if (subject.active || !state.firing || !subject.clearsOnDelivery) return subject.active
  const { lastDelivered } = subject.clearsOnDelivery
  return lastDelivered === undefined || lastDelivered < (state.since ?? 0)
}

/** Every subject of `rule` on this engine, active or not (a firing pair clears only when its subject is seen clear). */
export function subjectsOf(rule: AlertRule, s: Snapshot): Subject[] {
  const handles = watched(rule, s.handles)
  const key = (channel: string, part = '') => `${alertId(rule)}|${channel}|${part}`
  switch (rule.condition) {
    case 'destination-failing':
      return handles.flatMap((h) => h.destinations().filter((d) => rule.destination === undefined || d.name === rule.destination).map((d) => ({ key: key(h.name, d.name), ...destinationFailing(rule, s.watch, h.name, d) })))
    case 'messages-failing':
      return handles.map((h) => ({ key: key(h.name), ...messagesFailing(rule, s, h.name) }))
    case 'queue-age':
      return handles.map((h) => {
        const at = s.oldest[h.name]
        const ageS = at === undefined ? 0 : Math.floor((s.now - at) / 1000)
        const active = ageS > rule.maxAgeSeconds!
        const summary = active ? `the oldest unfinished message of channel ${h.name} is ${ageS} s old (limit ${rule.maxAgeSeconds} s)`
          : `the oldest unfinished message of channel ${h.name} is within ${rule.maxAgeSeconds} s`
        return { key: key(h.name), channel: h.name, active, summary }
      })
    case 'credential-fail-fast':
      return handles.flatMap((h) => Object.entries(h.credentials()).filter(([name]) => rule.credential === undefined || name === rule.credential).map(([name, c]) => {
        const active = c.failingFastUntil !== undefined && c.failingFastUntil > s.now
        // As GET /api/credentials shows it: a token endpoint's text may echo a secret value.
        const reason = c.lastFailure ? `: ${c.lastFailure.code} ${scrubSecrets(c.lastFailure.message)}` : ''
        const summary = active ? `credential ${name} of channel ${h.name} fails fast until ${iso(c.failingFastUntil!)}${reason}`
          : `credential ${name} of channel ${h.name} no longer fails fast`
        return { key: key(h.name, name), channel: h.name, credential: name, active, summary }
      }))
    case 'channel-stopped':
      return handles.map((h) => {
        const state = h.status()
        const active = state === 'stopped' || state === 'stopping'
        return { key: key(h.name), channel: h.name, active, summary: `channel ${h.name} is ${state}` }
      })
  }
}

/** A destination's breaker is open or half-open, or `consecutiveFailures` attempts failed in a row. */
function destinationFailing(rule: AlertRule, watch: RuntimeWatch, channel: string, d: DestinationStatus): Omit<Subject, 'key'> {
  const streak = watch.streak(channel, d.name)
  const lastDelivered = watch.lastDelivered(channel, d.name)
  const tripped = d.breaker !== 'closed'
  const active = tripped || (rule.consecutiveFailures !== undefined && streak >= rule.consecutiveFailures)
  const of = `destination ${d.name} of channel ${channel}`
  const summary = tripped ? `${of} is failing: circuit breaker ${d.breaker} (opened ${d.openings} times)`
    : active ? `${of} is failing: ${streak} failed attempts in a row`
      : lastDelivered !== undefined ? `${of} delivers again (a delivered attempt at ${iso(lastDelivered)})`
        : `${of}: circuit breaker closed, no delivered attempt yet`
  return { channel, destination: d.name, active, summary, clearsOnDelivery: { lastDelivered } }
}

/** At least `count` messages of the channel (in error now) went to error within the last `windowSeconds`. */
function messagesFailing(rule: AlertRule, s: Snapshot, channel: string): Omit<Subject, 'key'> {
  const count = rule.count ?? DEFAULT_ERROR_COUNT
  const windowS = rule.windowSeconds ?? DEFAULT_WINDOW_SECONDS
  const errors = s.errors ? (s.errors.get(errorKey(channel, windowS * 1000)) ?? 0) : s.watch.errors(channel, windowS * 1000)
  const active = errors >= count
  const went = `of channel ${channel} went to error in the last ${windowS} s`
  const summary = errors === 0 ? `no message ${went}`
    : `${errors} message${errors === 1 ? '' : 's'} ${went} (${active ? 'at least' : 'fewer than'} ${count})`
  return { channel, active, summary }
}
