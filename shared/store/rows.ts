import { MESSAGE_STATUSES, type AttemptRecord, type ChannelStats, type DeliveryRecord, type MessageStatus, type StoredMessage } from './types.ts'
import type { MessageInput } from '../component.ts'
import { StoreError } from './errors.ts'

/** A message as both stores keep it (snake case; a server store may return 64-bit integers as strings). */
export interface MessageRow {
  seq: number | string
  id: string
  channel: string
  status: string
  body: string
  content_type: string
  attributes: string
  dedupe_key: string | null
  order_key: string | null
  received_at: number | string
  updated_at: number | string
  error: string | null
  /** The retry of the message's filters (all three, or none: see `FilterRetry`); absent from a row read without them. */
  filter_attempts?: number | null
  filter_elapsed?: number | string | null
  filter_next_attempt_at?: number | string | null
}

/** Drops null and undefined members (optional fields stay absent, as the interfaces say). */
export function defined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === null || o[k] === undefined) delete o[k]
  return o
}

const num = (v: unknown) => (v === null || v === undefined ? undefined : Number(v))

export function rowToMessage(r: MessageRow): StoredMessage {
  return {
    id: r.id, seq: Number(r.seq), channel: r.channel, status: r.status as MessageStatus,
    body: JSON.parse(r.body), contentType: r.content_type, attributes: JSON.parse(r.attributes),
    receivedAt: Number(r.received_at), updatedAt: Number(r.updated_at),
    ...(r.dedupe_key !== null ? { dedupeKey: r.dedupe_key } : {}),
    // One column for the reason: why a message is in error, or which filter dropped a filtered one.
    ...(r.error !== null ? { [r.status === 'filtered' ? 'filteredBy' : 'error']: r.error } : {}),
    ...(r.order_key !== null ? { orderKey: r.order_key } : {}),
    ...(r.filter_next_attempt_at !== null && r.filter_next_attempt_at !== undefined
      ? { filterRetry: { charged: Number(r.filter_attempts), elapsedMs: Number(r.filter_elapsed), nextAttemptAt: Number(r.filter_next_attempt_at) } }
      : {}),
  }
}

export const deliveryOf = (d: any): DeliveryRecord => defined({
  destination: d.destination, part: d.part, status: d.status, attempts: d.attempts, budgetAttempts: d.budget_attempts, budgetSince: num(d.budget_since),
  firstAttemptAt: num(d.first_attempt_at), lastAttemptAt: num(d.last_attempt_at), nextAttemptAt: num(d.next_attempt_at),
  lastError: d.last_error, responseStatus: d.response_status, responseExcerpt: d.response_excerpt,
})

export const attemptOf = (a: any): AttemptRecord => defined({
  destination: a.destination, part: a.part, attempt: a.attempt, startedAt: Number(a.started_at), endedAt: Number(a.ended_at),
  outcome: a.outcome, responseStatus: a.response_status, error: a.error, excerpt: a.excerpt,
})

/** Counts by status from `(status, n)` rows, every status present. */
export function countByStatus(rows: ReadonlyArray<{ status: MessageStatus; n: number }>): ChannelStats {
  const out = Object.fromEntries(MESSAGE_STATUSES.map((st) => [st, 0])) as ChannelStats
  for (const r of rows) out[r.status] = r.n
  return out
}

/**
 * A message's body and attributes as the JSON the store writes. A value JSON cannot write (a BigInt
 * or a cycle, from a source of one's own) throws ERR_STORE, before the message is counted anywhere.
 */
export function jsonOf(input: MessageInput): [body: string, attributes: string] {
  try {
    return [JSON.stringify(input.body ?? null), JSON.stringify(input.attributes ?? {})]
  } catch (e) {
    throw new StoreError(`message cannot be stored: its body or attributes are not JSON (${(e as Error).message})`, { cause: e })
  }
}
