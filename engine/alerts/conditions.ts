import { scrubSecrets } from '../../shared/secret.ts'
import type { CredentialStatus } from '../../shared/oauth/types.ts'
import type { ChannelHandle, DestinationStatus } from '../runtime/index.ts'
import { alertId, type AlertRule } from './load.ts'
import type { AttemptFailure, RuntimeWatch } from './observer.ts'
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
  /**
   * Once firing, the pair holds until a success after it started firing (see `holds`): a destination's
   * delivered attempt, a credential's token. When the last success was, if any.
   */
  clearsOnSuccess?: { lastSuccess: number | undefined }
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
 * answers (a 400 proves the API is up, not that it takes messages) does not resolve it; a firing
 * `credential-fail-fast` pair holds until the credential obtains a token, not merely until its
 * fail-fast period ends (the next request may well be refused again).
 */
export function holds(subject: Subject, state: AlertState): boolean {
  if (subject.active || !state.firing || !subject.clearsOnSuccess) return subject.active
  const { lastSuccess } = subject.clearsOnSuccess
  return lastSuccess === undefined || lastSuccess < (state.since ?? 0)
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
      return handles.flatMap((h) => Object.entries(h.credentials()).filter(([name]) => rule.credential === undefined || name === rule.credential)
        .map(([name, c]) => ({ key: key(h.name, name), ...credentialFailFast(h.name, name, c, s.now) })))
    case 'channel-stopped':
      return handles.map((h) => {
        const state = h.status()
        const active = state === 'stopped' || state === 'stopping'
        return { key: key(h.name), channel: h.name, active, summary: `channel ${h.name} is ${state}` }
      })
    case 'channel-refusing':
      return handles.map((h) => ({ key: key(h.name), ...channelRefusing(h, s.now) }))
  }
}

/** What refuses a channel's input, for people. */
const REFUSING_WHY = { queueLimit: 'its queue is full (queueLimit)', maxStoreBytes: 'the message store is full (maxStoreBytes)' } as const

/** The channel refuses its source's input (the source answers 503, MLLP AE): its queue or the store is full. */
function channelRefusing(h: ChannelHandle, now: number): Omit<Subject, 'key'> {
  const r = h.refusing()
  const summary = r ? `channel ${h.name} refuses its input since ${iso(r.since)} (${Math.floor((now - r.since) / 1000)} s): ${REFUSING_WHY[r.limit]}`
    : `channel ${h.name} accepts its input`
  return { channel: h.name, active: r !== undefined, summary }
}

/** A credential fails fast; once firing, it clears only when the credential obtains a token (see `holds`). */
function credentialFailFast(channel: string, name: string, c: CredentialStatus, now: number): Omit<Subject, 'key'> {
  const active = c.failingFastUntil !== undefined && c.failingFastUntil > now
  const of = `credential ${name} of channel ${channel}`
  // As GET /api/credentials shows it: a token endpoint's text may echo a secret value.
  const reason = c.lastFailure ? `: ${c.lastFailure.code} ${scrubSecrets(c.lastFailure.message)}` : ''
  const summary = active ? `${of} fails fast until ${iso(c.failingFastUntil!)}${reason}`
    : c.fetchedAt !== undefined ? `${of} obtained a token again at ${iso(c.fetchedAt)}`
      : `${of} no longer fails fast, no token obtained yet`
  return { channel, credential: name, active, summary, clearsOnSuccess: { lastSuccess: c.fetchedAt } }
}

/** A destination's breaker is open or half-open, or `consecutiveFailures` attempts failed in a row. */
function destinationFailing(rule: AlertRule, watch: RuntimeWatch, channel: string, d: DestinationStatus): Omit<Subject, 'key'> {
  const streak = watch.streak(channel, d.name)
  const lastDelivered = watch.lastDelivered(channel, d.name)
  const tripped = d.breaker !== 'closed'
  const active = tripped || (rule.consecutiveFailures !== undefined && streak >= rule.consecutiveFailures)
  const of = `destination ${d.name} of channel ${channel}`
  const last = failureReason(watch.lastFailure(channel, d.name))
  const because = last ? `, last failure: ${last}` : ''
  const summary = tripped ? `${of} is failing: circuit breaker ${d.breaker} (opened ${d.openings} time${d.openings === 1 ? '' : 's'})${because}`
    : active ? `${of} is failing: ${streak} failed attempts in a row${because}`
      : lastDelivered !== undefined ? `${of} delivers again (a delivered attempt at ${iso(lastDelivered)})`
        : `${of}: circuit breaker closed, no delivered attempt yet`
  return { channel, destination: d.name, active, summary, clearsOnSuccess: { lastSuccess: lastDelivered } }
}

/** An error code as Node, undici and Weir spell them (`ERR_HTTP_TIMEOUT`, `ECONNRESET`): no room for free text. */
const CODE_SHAPE = /^[A-Z][A-Z0-9_]{1,63}$/

/**
 * A failed attempt for people, as an encrypted channel's log lines give it: the HTTP status and the
 * error code ("HTTP 503 (ERR_HTTP_STATUS)", "ERR_HTTP_TIMEOUT"), never a message or a response body
 * (an API's answer often echoes the request). Anything else a component put there is left out.
 */
function failureReason(f: AttemptFailure | undefined): string {
  const status = f?.status !== undefined && Number.isInteger(f.status) && f.status >= 100 && f.status <= 599 ? `HTTP ${f.status}` : ''
  const code = f?.code !== undefined && CODE_SHAPE.test(f.code) ? f.code : ''
  return status && code ? `${status} (${code})` : status || code
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
