import type { ListFilter, MessageStore, ResubmitPreview } from '../shared/store/index.ts'

/** The largest set one resubmit may touch: beyond it, the operator narrows the filter (or repeats with a later one). */
export const RESUBMIT_SET_LIMIT = 10_000
const PAGE = 1000
/** Ids per `store.resubmit` call: a large set goes in several short transactions. */
const RESUBMIT_BATCH = 1000
const FINISHED = new Set(['delivered', 'filtered', 'error'])

/** Which messages a resubmit of a set names: a channel's log filter, frozen at the newest message it matched when previewed. */
export type SetFilter = Pick<ListFilter, 'channel' | 'status' | 'since' | 'until' | 'key'>

/** The finished messages of a set, newest first; `more` when the set holds more than `limit` of them. */
export interface ResubmitSet {
  ids: string[]
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
  const ids: string[] = []
  let maxSeq = o.maxSeq ?? 0
  let after = o.maxSeq === undefined ? undefined : o.maxSeq + 1
  for (;;) {
    const page = await store.list({ ...filter, order: 'desc', limit: PAGE, ...(after !== undefined ? { after } : {}) })
    if (page.length === 0) break
    if (after === undefined) maxSeq = page[0]!.seq
    for (const m of page) if (FINISHED.has(m.status)) ids.push(m.id)
    if (ids.length > limit) return { ids: ids.slice(0, limit), maxSeq, more: true }
    if (page.length < PAGE) break
    after = page.at(-1)!.seq
  }
  return { ids, maxSeq, more: false }
}

/** Resubmits `ids` a batch at a time; how many were queued again. */
export async function resubmitInBatches(store: MessageStore, ids: readonly string[]): Promise<number> {
  let done = 0
  for (let i = 0; i < ids.length; i += RESUBMIT_BATCH) done += (await store.resubmit({ ids: ids.slice(i, i + RESUBMIT_BATCH) })).length
  return done
}

/** "resubmits 1,204 messages to 2 destinations": the preview's sentence. */
export function previewSentence(p: ResubmitPreview): string {
  const n = (k: number, one: string) => `${k.toLocaleString('en-US')} ${one}${k === 1 ? '' : 's'}`
  return `resubmits ${n(p.messages, 'message')} to ${n(Object.keys(p.destinations).length, 'destination')}`
}

/** The filter in words, for the audit log and the confirmation page. */
export function describeFilter(f: SetFilter): string {
  const parts = [
    f.status && `status ${f.status}`,
    f.since !== undefined && `received since ${new Date(f.since).toISOString()}`,
    f.until !== undefined && `until ${new Date(f.until).toISOString()}`,
    f.key && `${f.key.name}=${f.key.value}`,
  ].filter(Boolean)
  return parts.length ? parts.join(', ') : 'every finished message'
}
