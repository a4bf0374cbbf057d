import { nearest } from '../../shared/config/problems.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import type { ConfigProblem } from '../../shared/errors.ts'
import type { AlertRule } from './load.ts'

/** Where a list of rules was written: the file's name in messages and the pointer of its `alerts` array. */
export interface RulesAt {
  file: string
  /** "/alerts" in an alerts file, "/alerts/alerts" in a channel file. */
  at: string
}

/** What a rule may name of one channel: its name, its destinations', and its credentials' (undefined: not known, not checked). */
export interface ChannelNames {
  name: string
  destinations: readonly string[]
  credentials?: readonly string[]
}

/** The names of a loaded channel that rules may refer to. */
export const channelNames = (ch: LoadedChannel): ChannelNames => ({ name: ch.name, destinations: ch.destinations.map((d) => d.name), credentials: Object.keys(ch.credentials) })

const list = (names: readonly string[]) => names.join(', ') || '(none)'

/** "unknown destination "fhri"; did you mean "fhir"?; destinations of channel orders: fhir, audit". */
function unknown(kind: string, value: string, known: readonly string[], where: string): string {
  const guess = nearest(value, known)
  return `unknown ${kind} "${value}"` + (guess ? `; did you mean "${guess}"?` : '') + `; ${where}: ${list(known)}`
}

const ofChannels = (kind: string, watched: readonly ChannelNames[]) =>
  `${kind} of channel${watched.length === 1 ? '' : 's'} ${watched.map((c) => c.name).join(', ')}`

/**
 * What the rules name that the channels being run do not have: a channel, a destination (of a
 * watched channel) or a credential (defined for a watched channel). Such an alert would never fire,
 * so `weir run` refuses it, at the JSON pointer of the name, with the closest name that exists.
 * Rules of a channel file (`scope`) are checked against their channel only (ruleProblems reports
 * their other `channels`); an option of another condition is reported by ruleProblems too.
 * @example
 * const problems = referenceProblems(loaded.alerts, channels.map(channelNames), { file: 'alerts.json', at: '/alerts' })
 */
export function referenceProblems(rules: readonly AlertRule[], channels: readonly ChannelNames[], where: RulesAt): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const names = channels.map((c) => c.name)
  for (const [i, rule] of rules.entries()) {
    const at = (key: string, message: string) => problems.push({ file: where.file, pointer: `${where.at}/${i}${key}`, message })
    const named = rule.scope !== undefined ? [rule.scope] : rule.channels
    if (rule.scope === undefined && named !== '*') {
      for (const [j, c] of named.entries()) {
        if (!names.includes(c)) at(`/channels/${j}`, unknown('channel', c, names, 'channels run'))
      }
    }
    const watched = channels.filter((c) => named === '*' || named.includes(c.name))
    if (watched.length === 0) continue
    if (rule.condition === 'destination-failing' && rule.destination !== undefined) {
      const known = [...new Set(watched.flatMap((c) => c.destinations))]
      if (!known.includes(rule.destination)) at('/destination', unknown('destination', rule.destination, known, ofChannels('destinations', watched)))
    }
    if (rule.condition === 'credential-fail-fast' && rule.credential !== undefined && watched.every((c) => c.credentials)) {
      const known = [...new Set(watched.flatMap((c) => c.credentials ?? []))]
      if (!known.includes(rule.credential)) at('/credential', unknown('credential', rule.credential, known, ofChannels('credentials', watched)))
    }
  }
  return problems
}
