import { createHash } from 'node:crypto'
import { nearest } from '../shared/config/problems.ts'
import { isResubmitConflict, type ListFilter, type MessageStore, type ResubmitPreview, type StoredMessage } from '../shared/store/index.ts'

/** The largest set one resubmit may touch: beyond it, the operator narrows the filter (or repeats with a later one). */
export const RESUBMIT_SET_LIMIT = 10_000
const PAGE = 1000
/** Ids per `store.resubmit` call: a large set goes in several short transactions. */
const RESUBMIT_BATCH = 1000
const FINISHED: ReadonlySet<string> = new Set(['delivered', 'filtered', 'error'])
/** Whether `m` is finished (delivered, filtered, error): what a resubmit queues again. */
export const isFinished = (m: Pick<StoredMessage, 'status'>): boolean => FINISHED.has(m.status)

/** Which messages a resubmit of a set names: a channel's log filter, frozen at the newest message it matched when previewed. */
export type SetFilter = Pick<ListFilter, 'channel' | 'status' | 'since' | 'until' | 'key'>

/** The finished messages of a set, newest first; `more` when the set holds more than `limit` of them. */
export interface ResubmitSet {
  ids: string[]
  /** The messages as previewed (each id with its `updatedAt`): what a confirmation resubmits only if they still are ({@link resubmitInBatches}). */
  messages: Previewed[]
  /** {@link setDigest} of the set: its messages as they are now. */
  digest: string
  /** The newest matching message's `seq` (0: none): a later confirmation takes no message received after the preview. */
  maxSeq: number
  more: boolean
}

/**
 * The finished messages (delivered, filtered, error) matching `filter` with `seq` at most `maxSeq`
 * (default: whatever matches now), read a page at a time, stopping past `limit`.
 *
 * @example
 * const set = await resubmitSet(store, { channel: 'adt', status: 'error', since: Date.now() - 3_600_000 })
 * // preview set.ids; confirm with resubmitSet(store, filter, { maxSeq: set.maxSeq }) and the same count
 */
export async function resubmitSet(store: MessageStore, filter: SetFilter, o: { maxSeq?: number; limit?: number } = {}): Promise<ResubmitSet> {
  const limit = o.limit ?? RESUBMIT_SET_LIMIT
  const found: StoredMessage[] = []
  let maxSeq = o.maxSeq ?? 0
  let after = o.maxSeq === undefined ? undefined : o.maxSeq + 1
  for (;;) {
    const page = await store.list({ ...filter, order: 'desc', limit: PAGE, ...(after !== undefined ? { after } : {}) })
    if (page.length === 0) break
    if (after === undefined) maxSeq = page[0]!.seq
    for (const m of page) if (isFinished(m)) found.push(m)
    if (found.length > limit) return { ...pinnedSet(found.slice(0, limit)), maxSeq, more: true }
    if (page.length < PAGE) break
    after = page.at(-1)!.seq
  }
  return { ...pinnedSet(found), maxSeq, more: false }
}

/** A message as a preview pinned it: its id and when it last changed. */
export type Previewed = Pick<StoredMessage, 'id' | 'updatedAt'>

const pinnedSet = (found: readonly StoredMessage[]) => ({ ids: found.map((m) => m.id), messages: found.map(({ id, updatedAt }) => ({ id, updatedAt })), digest: setDigest(found) })

/**
 * The set itself, pinned: SHA-256 (hex) of its messages' ids, each with when it last changed
 * (`updatedAt`), sorted. A preview hands it out and the confirmation recomputes it: a set with the
 * same count but other messages is refused, and so is the same set once resubmitted (a resubmit
 * changes every message it queues, and finishing again changes it once more), so a confirmation
 * resubmits once; replayed, or sent twice by a double click, it is refused.
 */
export function setDigest(messages: ReadonlyArray<Pick<StoredMessage, 'id' | 'updatedAt'>>): string {
  return createHash('sha256').update(messages.map((m) => `${m.id} ${m.updatedAt}`).sort().join('\n')).digest('hex')
}

/**
 * Runs `task` after every earlier task of the same `key` has settled: one process's confirmations of
 * one channel's sets check and resubmit one after another, so the second of two identical ones (a
 * double click) sees the set the first changed and says so. (Between processes, the store's
 * resubmit of the set as previewed refuses the second: see {@link resubmitInBatches}.)
 */
export function oneAtATime<T>(key: string, task: () => Promise<T>): Promise<T> {
  const before = queues.get(key) ?? Promise.resolve()
  const run = before.then(task, task)
  const tail = run.then(() => undefined, () => undefined)
  queues.set(key, tail)
  void tail.then(() => { if (queues.get(key) === tail) queues.delete(key) })
  return run
}
const queues = new Map<string, Promise<void>>()

/**
 * Resubmits a confirmed preview's messages a batch at a time, each batch only as previewed
 * (`asPreviewed`, checked in the store's write transaction); how many were queued again. The
 * first batch goes all or nothing: a message of it changed since the preview (another process or
 * engine confirmed the same set an instant before, having passed its own check too) fails it with
 * the store's conflict (`isResubmitConflict`) and nothing is resubmitted. Two confirmations of one
 * set send the same first batch, so that decides which one resubmits; the later batches skip a
 * message changed meanwhile (resubmitted by another set's confirmation, purged) and queue the rest.
 */
export async function resubmitInBatches(store: MessageStore, messages: readonly Previewed[]): Promise<number> {
  let done = 0
  for (let i = 0; i < messages.length; i += RESUBMIT_BATCH) {
    done += (await store.resubmit({ asPreviewed: messages.slice(i, i + RESUBMIT_BATCH), changed: i === 0 ? 'refuse' : 'skip' })).length
  }
  return done
}

/**
 * What a resubmit of messages as previewed gives, or undefined when the store refused it because
 * one changed since the preview (`isResubmitConflict`): then it queued none.
 */
export async function unlessChanged<T>(resubmit: Promise<T>): Promise<T | undefined> {
  try {
    return await resubmit
  } catch (e) {
    if (isResubmitConflict(e)) return undefined
    throw e
  }
}

/** "resubmits 1,204 messages to 2 destinations": the preview's sentence. */
export function previewSentence(p: ResubmitPreview): string {
  const n = (k: number, one: string) => `${k.toLocaleString('en-US')} ${one}${k === 1 ? '' : 's'}`
  return `resubmits ${n(p.messages, 'message')} to ${n(Object.keys(p.destinations).length, 'destination')}`
}

/** What the audit log writes for a search key's value: never the value itself (a patient's identifier, kept in the log after a purge). */
export const WITHHELD = '(value withheld)'

/**
 * The filter in words, for the confirmation page, and with `withhold` for the audit log: the search
 * key's name without its value ({@link WITHHELD}).
 */
export function describeFilter(f: SetFilter, o: { withhold?: boolean } = {}): string {
  const parts = [
    f.status && `status ${f.status}`,
    f.since !== undefined && `received since ${new Date(f.since).toISOString()}`,
    f.until !== undefined && `until ${new Date(f.until).toISOString()}`,
    f.key && `${f.key.name}=${o.withhold ? WITHHELD : f.key.value}`,
  ].filter(Boolean)
  return parts.length ? parts.join(', ') : 'every finished message'
}

/** Message ids an audit entry names before it only counts the rest. */
const AUDIT_IDS = 10

/**
 * A set resubmit as the audit log keeps it: the channel, the filter without a search key's value,
 * and the ids resubmitted (the first {@link AUDIT_IDS}, then how many more): whom they concern an
 * auditor reads from the messages themselves, while they are kept, with the rights that needs.
 *
 * @example
 * auditTarget('orders', { status: 'delivered', key: { name: 'mrn', value: 'MRN12' } }, ['01J…'])
 * // 'orders: status delivered, mrn=(value withheld); 01J…'
 */
export function auditTarget(channel: string | undefined, f: SetFilter, ids: readonly string[]): string {
  const shown = ids.slice(0, AUDIT_IDS).join(' ')
  const more = ids.length > AUDIT_IDS ? ` and ${(ids.length - AUDIT_IDS).toLocaleString('en-US')} more` : ''
  return `${channel ?? 'every channel'}: ${describeFilter(f, { withhold: true })}${ids.length ? `; ${shown}${more}` : ''}`
}

/**
 * Why `channel` names nothing: undefined when the store holds a message of it or `known` (the
 * engine's channels) has it; otherwise "no messages of channel orderz in the message log; did you
 * mean "orders"?; channels there: orders".
 */
export async function unknownChannel(store: MessageStore, channel: string, known: readonly string[] = []): Promise<string | undefined> {
  if (known.includes(channel) || Object.values(await store.stats(channel)).some((n) => n > 0)) return undefined
  const there = store.channels ? await store.channels() : []
  const near = nearest(channel, new Set([...known, ...there]))
  return `no messages of channel ${channel} in the message log${near ? `; did you mean "${near}"?` : ''}; channels there: ${there.length ? there.join(', ') : '(none)'}`
}

/**
 * Why a search by key `name` cannot find anything: undefined when `known` (the channel's
 * `options.searchKeys`) has it or some message in the log is stored with it (a store that cannot
 * tell is not asked); otherwise `no message in the message log has search key "mnr"; did you mean
 * "mrn"?; search keys there: mrn, visit` (a search key added to a channel finds only the messages
 * received after it).
 */
export async function unknownSearchKey(store: MessageStore, name: string, known: readonly string[] = []): Promise<string | undefined> {
  if (known.includes(name) || !store.searchKeyNames) return undefined
  const there = await store.searchKeyNames()
  if (there.includes(name)) return undefined
  const names = [...new Set([...known, ...there])].sort()
  const near = nearest(name, names)
  return `no message in the message log has search key "${name}"${near ? `; did you mean "${near}"?` : ''}; search keys there: ${names.length ? names.join(', ') : '(none: no message is stored with a search key yet)'}`
}
