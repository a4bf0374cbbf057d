import { userInfo } from 'node:os'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { dataDirOf, parseFlags, type CommandIO } from '../cli-io.ts'
import { errorCodes } from '../../shared/errors.ts'
import { escapeControl } from '../../shared/http/excerpt.ts'
import { excerpt, iso, scrubShown, shownErrors, shownMessage } from '../message-view.ts'
import { listedReason } from '../error-brief.ts'
import { MESSAGE_STATUSES, type FinishedStatus, type ListFilter, type MessageStatus, type MessageStore, type StoredMessage } from '../../shared/store/index.ts'
import { openStoreFor, storeOptions, storeUrlOf, storeUsage, storeWhere } from '../store.ts'
import { purgeInBatches } from '../retention.ts'
import { auditTarget, describeFilter, isFinished, previewSentence, RESUBMIT_SET_LIMIT, resubmitInBatches, resubmitSet, setDigest, unknownChannel, unknownSearchKey, unlessChanged, type ResubmitSet, type SetFilter } from '../resubmit-set.ts'
import { SEARCH_KEY_NAME } from '../../shared/key-expression.ts'
import { displayPath, parseJsonWithLocation } from '../../shared/config/load.ts'

export { redact } from '../message-view.ts'

/** Who ran a command, for the audit log: the operating-system user. */
const cliActor = () => `cli:${userInfo().username}`

export const summary = 'list, show, resubmit and purge messages in the message log'
export const usage = `usage: weir messages list [--channel C | --channel-file F] [--all] [--status S] [--key NAME=VALUE] [--since T] [--until T] [--older-than ID] [--limit N] [--json]
       weir messages show ID [--json]
       weir messages resubmit ID... [--confirm N:DIGEST | --yes]
       weir messages resubmit --status S [--channel C] [--key NAME=VALUE] [--since T] [--until T] [--confirm N:DIGEST]
       weir messages purge --before T [--channel C] [--include-errors] [--confirm N | --yes]

list      newest first (in the order the store took them in; a cluster's engines store at once,
          so receipt times may interleave); --status one of ${MESSAGE_STATUSES.join(', ')};
          --since/--until an ISO date or a duration ago (30s, 10m, 2h, 7d): a date alone is midnight
          UTC, a date and time needs its zone (Z or ±hh:mm); --limit default 100. The internal
          alert channels (weir-alerts.*) are left out unless --channel names one or --all is given.
          A --channel the log holds no message of exits 1, naming the channels it does hold. When
          more match, it prints the --older-than ID that shows the next page: run the same list
          with it, page after page, and each message is shown exactly once
          --key NAME=VALUE: messages whose search key NAME (options.searchKeys) has VALUE, an index
          lookup (e.g. --key mrn=203713). --channel-file F checks NAME against the channel file's
          searchKeys and lists that channel; without it a NAME no message in the log is stored with
          exits 1, naming the search keys there
show      the body, attributes and each destination's outcome and attempt history (redacted);
          ID may be a unique prefix
resubmit  queues delivered, filtered or error messages again; destinations that already got a
          message are skipped unless none is left. A running "weir run" picks them up within a second.
          Ids of error or filtered messages are resubmitted at once; if one of them was delivered
          (to every destination), it would be sent again: the command prints what it would do and
          a --confirm N:DIGEST and does nothing (--yes resubmits without the preview, for scripts).
          It lists the ids it resubmitted. A filter (--status, --key, --since, --until, --channel)
          first prints what it would do ("resubmits 1,204 messages to 2 destinations") and does
          nothing; run it again with the --confirm it printed (the count and the set's digest,
          e.g. --confirm 1204:9f86d081884c7d65): it resubmits what the filter then matches only if
          that is still exactly the previewed messages, unchanged (not merely as many). A --confirm
          is good for one resubmit: used again, even by another process at the same instant, it
          exits 1 and resubmits nothing.
          At most ${RESUBMIT_SET_LIMIT} at a time: narrow the filter for more.
purge     deletes finished messages (delivered, filtered; error ones only with --include-errors)
          last updated before T (an ISO date or a duration ago: 30d), with their history; queued
          and in-flight ones are kept. It first prints how many it would delete per channel and
          status, and a --before instant and --confirm N to run it with, and deletes nothing; with
          that --confirm it deletes them if still exactly N match (--yes: at once, for scripts).
          A date alone (2026-11-30) is midnight UTC; a date and time needs its zone
          (2026-11-30T10:00Z, 2026-11-30T10:00+01:00), and is refused without one.
          Safe beside a running "weir run": deletes 500 at a time, each batch its own commit, and
          gives the space back to the file system; no purged content stays readable in the data
          files. A purged message's dedupe key is forgotten. (options.retention does this per
          channel in the background.)

  --data-dir D   the message store (default ./data, or $WEIR_DATA_DIR)
${storeUsage}

exit status: 0 on success and on a preview (purge: also when nothing was old enough), 1 when
             nothing matched (a --confirm whose set changed or was used already, a --channel the
             log does not hold), 2 on bad usage`

/**
 * An ISO 8601 date (midnight UTC, as `Date.parse` reads it), or a date and time with its zone (`Z` or
 * ±hh:mm): what `Date.parse` is given. Anything else it would guess at ("40" as the year 2040).
 */
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i

/**
 * `30s`, `10m`, `2h`, `7d` ago, or an ISO date. A date and time must name its zone: read in the
 * server's local zone, the same command would mean another instant on each server.
 */
export function parseSince(value: string, now = Date.now(), flag = '--since'): number {
  const rel = /^(\d+)\s*(s|m|h|d)$/.exec(value.trim())
  if (rel) return now - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 's' | 'm' | 'h' | 'd']
  const iso = ISO_DATE.exec(value.trim())
  if (iso && iso[0].length > 10 && iso[1] === undefined) {
    throw new errorCodes.ERR_USAGE(`${flag}: a date and time needs its zone, Z or ±hh:mm (e.g. ${value.trim().replace(' ', 'T')}Z for UTC); a date alone is midnight UTC; not "${value}"`)
  }
  const t = iso ? Date.parse(value.trim()) : Number.NaN
  if (Number.isNaN(t)) throw new errorCodes.ERR_USAGE(`${flag} must be an ISO date or a duration like 10m, 2h, 7d; not "${value}"`)
  return t
}

/** One-line text from a message or a server (an id, an error) with its control characters escaped: printing it cannot drive the terminal. */
const printable = (text: string | undefined) => escapeControl(scrubShown(text ?? ''))

// JSON.stringify escapes C0 controls but leaves DEL, C1 controls and bidi overrides raw; in JSON text
// they can only sit inside strings, where a \u escape means the same.
const RAW_IN_JSON = /[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

/** JSON text safe to print to a terminal. */
function printableJson(value: unknown, indent?: number): string {
  return (JSON.stringify(value, null, indent) ?? 'undefined').replace(RAW_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * The `--key NAME=VALUE` search and the channel it applies to: with `--channel-file`, the file's
 * channel, and NAME must be one of its `options.searchKeys`.
 */
export async function keySearchOf(key: string | undefined, channel: string | undefined, channelFile: string | undefined): Promise<{ key?: { name: string; value: string }; channel?: string }> {
  const declared = channelFile === undefined ? undefined : await readChannelKeys(channelFile)
  if (declared && channel !== undefined && channel !== declared.name) throw new errorCodes.ERR_USAGE(`--channel ${channel} is not the channel of ${channelFile} (${declared.name})`)
  const on = channel ?? declared?.name
  if (key === undefined) return on === undefined ? {} : { channel: on }
  const eq = key.indexOf('=')
  const name = key.slice(0, Math.max(eq, 0))
  const value = key.slice(eq + 1)
  if (eq < 0 || !new RegExp(SEARCH_KEY_NAME).test(name) || value === '') throw new errorCodes.ERR_USAGE(`--key must be NAME=VALUE with NAME a search key name (lowercase letters, digits, "_") and a value; not "${escapeControl(key)}"`)
  if (declared && !declared.keys.includes(name)) {
    throw new errorCodes.ERR_USAGE(`--key ${name}: channel ${declared.name} has no search key "${name}" (${declared.keys.length ? `options.searchKeys: ${declared.keys.join(', ')}` : 'no options.searchKeys'})`)
  }
  return { key: { name, value }, ...(on !== undefined ? { channel: on } : {}) }
}

async function readChannelKeys(file: string): Promise<{ name: string; keys: string[] }> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`--channel-file ${displayPath(file)}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  // Not JSON.parse's message: V8 quotes the text around the error, which may hold a secret.
  const data = parseJsonWithLocation(text, displayPath(file)) as { name?: unknown; options?: { searchKeys?: unknown } } | null
  if (typeof data?.name !== 'string') throw new errorCodes.ERR_USAGE(`--channel-file ${file} is not a channel file (no "name")`)
  const keys = data.options?.searchKeys
  return { name: data.name, keys: typeof keys === 'object' && keys !== null ? Object.keys(keys) : [] }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const [sub, ...rest] = args
  // One set of flags for every subcommand: which go together is checked below, with its own message.
  const { values, positionals } = parseFlags(rest, {
    'data-dir': { type: 'string' }, channel: { type: 'string' }, status: { type: 'string' }, since: { type: 'string' },
    limit: { type: 'string' }, json: { type: 'boolean', default: false }, before: { type: 'string' }, until: { type: 'string' }, confirm: { type: 'string' }, 'older-than': { type: 'string' },
    key: { type: 'string' }, 'channel-file': { type: 'string' }, yes: { type: 'boolean', default: false },
    'include-errors': { type: 'boolean', default: false }, all: { type: 'boolean', default: false }, ...storeOptions,
  }, 'messages')
  if (sub !== 'list' && sub !== 'show' && sub !== 'resubmit' && sub !== 'purge') {
    io.err(usage)
    return 2
  }
  const status = values.status as MessageStatus | undefined
  if (status !== undefined && !MESSAGE_STATUSES.includes(status)) throw new errorCodes.ERR_USAGE(`--status must be one of ${MESSAGE_STATUSES.join(', ')}; not "${status}"`)
  if (sub === 'purge') {
    if (values.before === undefined) throw new errorCodes.ERR_USAGE('purge needs --before (an ISO date or a duration ago like 30d)')
    if (positionals.length || status) throw new errorCodes.ERR_USAGE('purge takes --before, --channel, --include-errors and --confirm or --yes only')
  }
  if (values.yes && values.confirm !== undefined) throw new errorCodes.ERR_USAGE('--yes or --confirm, not both')
  if (values.yes && !(sub === 'purge' || (sub === 'resubmit' && positionals.length > 0))) throw new errorCodes.ERR_USAGE('--yes goes with purge and a resubmit by id only; a resubmit by filter needs the --confirm its preview prints')
  if (values['include-errors'] && sub !== 'purge') throw new errorCodes.ERR_USAGE('--include-errors goes with purge only')
  if (values.all && sub !== 'list') throw new errorCodes.ERR_USAGE('--all goes with list only')
  const before = sub === 'purge' ? parseSince(values.before!, Date.now(), '--before') : undefined
  const searching = sub === 'list' || (sub === 'resubmit' && positionals.length === 0)
  if (!searching && (values.key !== undefined || values['channel-file'] !== undefined || values.until !== undefined)) throw new errorCodes.ERR_USAGE('--key, --until and --channel-file go with list and a resubmit by filter only')
  if (sub !== 'list' && values['older-than'] !== undefined) throw new errorCodes.ERR_USAGE('--older-than goes with list only')
  const search = searching ? await keySearchOf(values.key, values.channel, values['channel-file'] === undefined ? undefined : resolve(io.cwd, values['channel-file'])) : {}
  const times = {
    ...(values.since !== undefined ? { since: parseSince(values.since) } : {}),
    ...(values.until !== undefined ? { until: parseSince(values.until, Date.now(), '--until') } : {}),
  }
  const dataDir = dataDirOf(values['data-dir'], io)
  if (sub === 'show' && positionals.length !== 1) throw new errorCodes.ERR_USAGE('show takes one message id')
  const where = storeWhere(storeUrlOf(values, io), dataDir)
  // A data directory without a store is answered with how to name another (openStoreFor).
  const store = await openStoreFor(values, io, { dataDir, owner: false })
  try {
    const unknown = (values.channel === undefined || sub === 'show' ? undefined : await unknownChannel(store, values.channel)) ??
      (search.key === undefined || values['channel-file'] !== undefined ? undefined : await unknownSearchKey(store, search.key.name))
    if (unknown) {
      io.err(`${printable(unknown)}; nothing ${sub === 'list' ? 'listed' : sub === 'purge' ? 'purged' : 'resubmitted'}`)
      return 1
    }
    if (sub === 'list') return await listMessages(store, { ...search, ...(status ? { status } : {}), ...times }, { limit: values.limit, olderThan: values['older-than'], json: values.json, where, all: values.all || isAlertsChannel(search.channel) }, io)

    if (sub === 'show') return await showMessage(store, positionals[0]!, values.json, io, where)

    if (sub === 'purge') return await purge(store, before!, values.channel, { includeErrors: values['include-errors'], confirm: values.confirm, yes: values.yes }, io)

    if (positionals.length === 0) return await resubmitByFilter(store, { ...search, ...times, ...(status ? { status } : {}) }, values.confirm, io)
    if (status || values.since !== undefined) throw new errorCodes.ERR_USAGE('resubmit takes message ids or a filter (--status, --key, --since, --until), not both')
    return await resubmitByIds(store, positionals, { confirm: values.confirm, yes: values.yes }, io, where)
  } finally {
    await store.close()
  }
}

/** Ids a command prints before it only counts the rest. */
const SHOWN_IDS = 20

/** `ids`, one a line and indented, the first {@link SHOWN_IDS}, then how many more. */
function printIds(ids: readonly string[], io: CommandIO): void {
  for (const id of ids.slice(0, SHOWN_IDS)) io.out(`  ${printable(id)}`)
  if (ids.length > SHOWN_IDS) io.out(`  … and ${(ids.length - SHOWN_IDS).toLocaleString('en-US')} more`)
}

/** The internal channels the alerts' webhooks run as (`weir-alerts.<webhook>`). */
const isAlertsChannel = (channel: string | undefined) => channel?.startsWith('weir-alerts.') ?? false

/**
 * How many finished messages in `statuses` of `channel` (every channel without one) were last
 * updated before `before`, per channel and status: what a purge would delete (one count query).
 */
async function purgeCounts(store: MessageStore, before: number, channel: string | undefined, statuses: readonly FinishedStatus[]): Promise<Map<string, Map<FinishedStatus, number>>> {
  const counts = new Map<string, Map<FinishedStatus, number>>()
  for (const r of await store.countPurgeable({ before, statuses, ...(channel ? { channel } : {}) })) {
    counts.set(r.channel, (counts.get(r.channel) ?? new Map<FinishedStatus, number>()).set(r.status, r.count))
  }
  return counts
}

/**
 * `weir messages purge`: deletes the delivered and filtered messages (errors too with
 * `includeErrors`) last updated before `before` and audits it. Without `yes` it first prints what it
 * would delete, per channel and status, and deletes nothing; `confirm` (the count it printed) runs
 * it, if still exactly that many match. A `channel` the log does not hold is refused before (`run`).
 */
async function purge(store: MessageStore, before: number, channel: string | undefined, o: { includeErrors: boolean; confirm: string | undefined; yes: boolean }, io: CommandIO): Promise<number> {
  const statuses: FinishedStatus[] = o.includeErrors ? ['delivered', 'filtered', 'error'] : ['delivered', 'filtered']
  const what = `finished message(s) last updated before ${iso(before)}${channel ? ` in channel ${printable(channel)}` : ''}`
  if (!o.yes) {
    const counts = await purgeCounts(store, before, channel, statuses)
    const total = [...counts.values()].reduce((n, of) => n + [...of.values()].reduce((a, b) => a + b, 0), 0)
    if (o.confirm === undefined) {
      io.out(`this purges ${total} ${what}${o.includeErrors ? '' : ' (messages in error kept: --include-errors deletes them too)'}${total ? ':' : '.'}`)
      for (const [ch, of] of [...counts].sort(([a], [b]) => a.localeCompare(b))) io.out(`  ${printable(ch)}: ${[...of].map(([st, n]) => `${st} ${n}`).join(', ')}`)
      if (total) io.out(`nothing purged yet: run again with --before ${iso(before)} --confirm ${total}${o.includeErrors ? ' --include-errors' : ''}${channel ? ` --channel ${printable(channel)}` : ''} (or --yes, for scripts)`)
      return 0
    }
    if (!/^\d+$/.test(o.confirm.replace(/,/g, '').trim())) throw new errorCodes.ERR_USAGE(`--confirm takes the count the preview printed (--confirm N), not ${escapeControl(o.confirm)}; run the purge without --confirm to preview; nothing purged`)
    if (Number(o.confirm.replace(/,/g, '').trim()) !== total) {
      io.err(`--confirm ${escapeControl(o.confirm)} does not match: ${total} ${what} now; nothing purged, preview again`)
      return 1
    }
  }
  const n = await purgeInBatches(store, { before, statuses, ...(channel ? { channel } : {}) })
  await store.audit({ at: Date.now(), actor: cliActor(), action: 'purge', target: `${channel ?? 'every channel'}: ${statuses.join(', ')} before ${iso(before)}`, count: n })
  io.out(`purged ${n} ${what}`)
  return 0
}

/**
 * A resubmit by id (unique prefixes accepted, as show does). A message delivered to every
 * destination would be sent again: then, unless `yes`, it prints the preview and a `--confirm`
 * pinning these messages as they are now, and resubmits only with that `confirm`.
 */
async function resubmitByIds(store: MessageStore, given: readonly string[], o: { confirm: string | undefined; yes: boolean }, io: CommandIO, where: string): Promise<number> {
  const found: StoredMessage[] = []
  for (const id of given) {
    const d = await store.get(id)
    if (!d) {
      io.err(`no message ${printable(id)} in ${where}`)
      return 1
    }
    found.push(d.message)
  }
  const ids = found.map((m) => m.id)
  const delivered = found.filter((m) => m.status === 'delivered').map((m) => m.id)
  const token = setToken({ ids, digest: setDigest(found) })
  if (o.confirm === undefined && delivered.length > 0 && !o.yes) {
    const preview = await store.resubmitPreview(ids)
    const perDestination = Object.entries(preview.destinations).map(([d, n]) => `${printable(d)} ${n}`).join(', ')
    io.out(`${delivered.length === 1 ? `message ${printable(delivered[0])} was` : `${delivered.length} of these messages were`} delivered to every destination: resubmitting sends ${delivered.length === 1 ? 'it' : 'them'} again; this ${previewSentence(preview)}${perDestination ? ` (${perDestination})` : ''}.`)
    io.out(`nothing resubmitted yet: run again with --confirm ${token} (or --yes, for scripts): it resubmits these ${ids.length} message(s) if they are still as they are now (once: a resubmit spends it)`)
    return 0
  }
  const notAsPreviewed = (confirm: string) => `--confirm ${escapeControl(confirm)} does not match: these ${ids.length} message(s) are not as previewed (this --confirm was used already, or they finished again meanwhile); nothing resubmitted, preview again`
  if (o.confirm !== undefined && o.confirm.replace(/,/g, '').trim().toLowerCase() !== token) {
    io.err(notAsPreviewed(o.confirm))
    return 1
  }
  const done = await resubmitConfirmedIds(store, found, o.confirm !== undefined)
  if (done === undefined) {
    io.err(notAsPreviewed(o.confirm!))
    return 1
  }
  if (done.length === 0) {
    io.err('nothing resubmitted: only delivered, filtered or error messages can be resubmitted')
    return 1
  }
  await store.audit({ at: Date.now(), actor: cliActor(), action: 'resubmit', target: ids.join(' '), count: done.length })
  io.out(`resubmitted ${done.length} message(s)`)
  printIds(done, io)
  return 0
}

/**
 * Resubmits `found`; when `confirmed`, its finished messages only as they were read (and the
 * `--confirm` checked), in the store's write transaction: undefined when one changed meanwhile
 * (the same `--confirm` run by another process an instant before), and nothing was resubmitted.
 */
async function resubmitConfirmedIds(store: MessageStore, found: readonly StoredMessage[], confirmed: boolean): Promise<string[] | undefined> {
  if (!confirmed) return store.resubmit({ ids: found.map((m) => m.id) })
  return unlessChanged(store.resubmit({ asPreviewed: found.filter(isFinished) }))
}

/**
 * The set pinned for `--confirm`: its count and the first 16 hex digits of its digest (`setDigest`:
 * the messages' ids and when each last changed, so a resubmit spends it).
 */
const setToken = (set: Pick<ResubmitSet, 'ids' | 'digest'>) => `${set.ids.length}:${set.digest.slice(0, 16)}`

/**
 * A resubmit by filter: prints the preview and does nothing, unless `confirm` is the token the
 * preview printed ({@link setToken}: the count and digest of the finished messages the filter
 * matches now, so exactly the previewed set); then resubmits them.
 */
async function resubmitByFilter(store: MessageStore, filter: SetFilter, confirm: string | undefined, io: CommandIO): Promise<number> {
  if (filter.status === undefined && filter.key === undefined && filter.since === undefined && filter.until === undefined) throw new errorCodes.ERR_USAGE('resubmit needs message ids or a filter: --status, --key, --since or --until')
  const where = `${filter.channel ?? 'every channel'}: ${describeFilter(filter)}`
  const set = await resubmitSet(store, filter)
  if (set.more) throw new errorCodes.ERR_USAGE(`${where} matches more than ${RESUBMIT_SET_LIMIT} finished messages; narrow the filter (--since, --until, --key) and resubmit in steps`)
  if (set.ids.length === 0) {
    io.err(confirm === undefined
      ? `nothing to resubmit: no delivered, filtered or error message matches ${where}`
      : `--confirm ${escapeControl(confirm)} does not match: ${where} now matches no finished message (this --confirm was used already, or the set left it meanwhile); nothing resubmitted, preview again`)
    return 1
  }
  if (confirm === undefined) {
    const preview = await store.resubmitPreview(set.ids)
    const perDestination = Object.entries(preview.destinations).map(([d, n]) => `${printable(d)} ${n}`).join(', ')
    io.out(`${where}: this ${previewSentence(preview)}${perDestination ? ` (${perDestination})` : ''}${preview.undelivered ? `; ${preview.undelivered} to every destination` : ''}.`)
    io.out(`nothing resubmitted yet: run again with --confirm ${setToken(set)}: it resubmits the messages the filter then matches, if they are still exactly these ${set.ids.length} as they are now (once: a resubmit spends it)`)
    return 0
  }
  const [count, digest] = confirm.replace(/,/g, '').trim().split(':')
  if (digest === undefined || !/^\d+$/.test(count!) || !/^[0-9a-f]{16}$/i.test(digest)) throw new errorCodes.ERR_USAGE(`--confirm takes the value the preview printed, the count and the set's digest (--confirm N:DIGEST), not ${escapeControl(confirm)}; run the resubmit without --confirm to preview; nothing resubmitted`)
  if (Number(count) !== set.ids.length) {
    io.err(`--confirm ${escapeControl(confirm)} does not match: ${where} now matches ${set.ids.length} finished message(s); nothing resubmitted, preview again`)
    return 1
  }
  const notAsPreviewed = `--confirm ${escapeControl(confirm)} does not match: ${where} still matches ${set.ids.length} finished message(s), but not as previewed (this --confirm was used already, or some left the set, others joined it or finished again meanwhile); nothing resubmitted, preview again`
  if (`${set.ids.length}:${digest.toLowerCase()}` !== setToken(set)) {
    io.err(notAsPreviewed)
    return 1
  }
  // Checked again by the store as it resubmits: another process may have resubmitted the set since.
  const done = await unlessChanged(resubmitInBatches(store, set.messages))
  if (done === undefined) {
    io.err(notAsPreviewed)
    return 1
  }
  await store.audit({ at: Date.now(), actor: cliActor(), action: 'resubmit', target: auditTarget(filter.channel, filter, set.ids), count: done })
  io.out(`resubmitted ${done} message(s)`)
  printIds(set.ids, io)
  return 0
}

/**
 * Up to `limit` messages of `filter`, in the store's order; without `all`, none of the alert
 * channels, read past them page after page so a page is as full as the log allows.
 */
async function listPage(store: MessageStore, filter: ListFilter, limit: number, all: boolean): Promise<StoredMessage[]> {
  if (all) return store.list({ ...filter, limit })
  const shown: StoredMessage[] = []
  for (let after = filter.after; shown.length < limit;) {
    const page = await store.list({ ...filter, ...(after !== undefined ? { after } : {}), limit })
    shown.push(...page.filter((m) => !isAlertsChannel(m.channel)))
    if (page.length < limit) break
    after = page.at(-1)!.seq
  }
  return shown.slice(0, limit)
}

/** `weir messages show ID`: the message, its destinations and its attempt history, redacted (JSON with `json`). */
async function showMessage(store: MessageStore, id: string, json: boolean | undefined, io: CommandIO, where: string): Promise<number> {
  const d = await store.get(id)
  if (!d) {
    io.err(`no message ${printable(id)} in ${where}`)
    return 1
  }
  const m = d.message
  const shown = shownMessage(d)
  if (json) {
    io.out(printableJson(shown, 2))
    return 0
  }
  const lines = [
    `message   ${printable(m.id)}`, `channel   ${printable(m.channel)}`, `status    ${m.status}`, `received  ${iso(m.receivedAt)}`, `updated   ${iso(m.updatedAt)}`,
    ...(m.error ? [`error     ${printable(m.error)}`] : []),
    ...(shown.filterRetry ? [`filters   retry budget spent: ${shown.filterRetry.budgetSpent.attempts} attempts, ${shown.filterRetry.budgetSpent.elapsedMs} ms (by the attempt due ${shown.filterRetry.nextAttemptAt})`] : []),
    ...(m.filteredBy ? [`filtered  by ${printable(m.filteredBy)}`] : []),
    `type      ${printable(m.contentType)}`,
    `attributes ${printableJson(shown.attributes)}`,
    '', 'body:', typeof shown.body === 'string' ? escapeControl(shown.body, { lines: true }) : printableJson(shown.body, 2),
    '', 'destinations:',
  ]
  if (d.deliveries.length === 0) lines.push('  (none yet)')
  else lines.push(table([['DESTINATION', 'PART', 'STATUS', 'ATTEMPTS', 'LAST ATTEMPT', 'RESPONSE', 'LAST ERROR'], ...d.deliveries.map((x) => [printable(x.destination), String(x.part), x.status, String(x.attempts), iso(x.lastAttemptAt), x.responseStatus === undefined ? '-' : String(x.responseStatus), printable(x.lastError)])]).replace(/^/gm, '  '))
  lines.push('', 'history:')
  if (d.attempts.length === 0) lines.push('  (no attempts)')
  for (const a of d.attempts) {
    lines.push(`  ${iso(a.startedAt)}  ${printable(a.destination)}${a.part ? `#${a.part}` : ''}  attempt ${a.attempt}  ${a.outcome}${a.responseStatus !== undefined ? ` ${a.responseStatus}` : ''}  ${a.endedAt - a.startedAt} ms${a.error ? `  ${printable(a.error)}` : ''}`)
    if (a.excerpt) lines.push(`      response: ${excerpt(a.excerpt)}`)
  }
  io.out(lines.join('\n'))
  return 0
}

/**
 * `weir messages list`: newest first in the store's order (`seq`), as a table (or JSON with `json`);
 * errors scrubbed of secrets. A page that is not the last names the message to page on from
 * (`--older-than ID`): the order and the cursor are one (`seq`), so following the hints shows each
 * message once, whatever the engines of a cluster stored in between. (The store's order, not the
 * receipt time: listing by receipt time would sort the whole log on PostgreSQL, whose index on it
 * cannot give rows in order.) Without `all`, the internal alert channels (`weir-alerts.*`) are left out.
 */
async function listMessages(store: MessageStore, filter: ListFilter, o: { limit: string | undefined; olderThan: string | undefined; json: boolean | undefined; where: string; all: boolean }, io: CommandIO): Promise<number> {
  const limit = o.limit === undefined ? 100 : Number(o.limit)
  if (!Number.isInteger(limit) || limit < 1) throw new errorCodes.ERR_USAGE(`--limit must be a positive integer; not "${o.limit}"`)
  let after: number | undefined
  if (o.olderThan !== undefined) {
    const from = await store.get(o.olderThan)
    if (!from) {
      io.err(`--older-than ${printable(o.olderThan)}: no message ${printable(o.olderThan)} in ${o.where} (purged since?); page on with --until instead`)
      return 1
    }
    after = from.message.seq
  }
  // One more than asked for: whether the list goes on, so a full page is never taken for all there is.
  const list = await listPage(store, { ...filter, ...(after !== undefined ? { after } : {}) }, limit + 1, o.all)
  const more = list.length > limit
  if (more) {
    list.length = limit
    io.err(`more messages match: ${limit === 1 ? 'only the newest is shown' : `the newest ${limit} are shown`}; raise --limit, or see older ones (with the same filters) with --older-than ${list[limit - 1]!.id}`)
  }
  const errors = await shownErrors(store, list)
  if (o.json) io.out(printableJson(list.map((m) => ({ id: m.id, channel: m.channel, status: m.status, receivedAt: iso(m.receivedAt), updatedAt: iso(m.updatedAt), ...(errors.has(m) ? { [m.error ? 'error' : 'lastError']: scrubShown(errors.get(m)!) } : {}), ...(m.filteredBy ? { filteredBy: scrubShown(m.filteredBy) } : {}) }))))
  else if (list.length === 0) io.out('no messages')
  else io.out(table([['ID', 'CHANNEL', 'STATUS', 'RECEIVED', 'REASON'], ...list.map((m) => [printable(m.id), printable(m.channel), m.status, iso(m.receivedAt), listedReason(m, errors.get(m), 80)])]))
  return 0
}
