import { scrubSecrets } from '../../shared/secret.ts'
import type { ChannelHandle } from '../runtime/index.ts'
import { alertId, type AlertRule } from './load.ts'
import type { FailureStreaks } from './observer.ts'

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
}

/** What one evaluation sees of this engine. */
export interface Snapshot {
  handles: readonly ChannelHandle[]
  /** `store.oldestPending()`: receivedAt of the oldest unfinished message per channel. */
  oldest: Record<string, number>
  streaks: FailureStreaks
  now: number
}

const iso = (ms: number) => new Date(ms).toISOString()

/** Every subject of `rule` on this engine, active or not (a firing pair clears only when its subject is seen clear). */
export function subjectsOf(rule: AlertRule, s: Snapshot): Subject[] {
  const handles = s.handles.filter((h) => rule.channels === '*' || rule.channels.includes(h.name))
  const key = (channel: string, part = '') => `${alertId(rule)}|${channel}|${part}`
  switch (rule.condition) {
    case 'destination-failing':
      return handles.flatMap((h) => h.destinations().filter((d) => rule.destination === undefined || d.name === rule.destination).map((d) => {
        const streak = s.streaks.get(h.name, d.name)
        const tripped = d.breaker !== 'closed'
        const active = tripped || (rule.consecutiveFailures !== undefined && streak >= rule.consecutiveFailures)
        const summary = !active ? `destination ${d.name} of channel ${h.name} delivers again`
          : tripped ? `destination ${d.name} of channel ${h.name} is failing: circuit breaker ${d.breaker} (opened ${d.openings} times)`
            : `destination ${d.name} of channel ${h.name} is failing: ${streak} failed attempts in a row`
        return { key: key(h.name, d.name), channel: h.name, destination: d.name, active, summary }
      }))
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
