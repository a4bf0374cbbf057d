import type { LoadedChannel } from '../../shared/config/types.ts'
import type { AttemptRecord, DeliveryRecord, MessageStore } from '../../shared/store/types.ts'
import type { FilterCall, Recording } from './instrument.ts'

/** The way one message went through the channel, for `weir test --verbose`. */
export interface MessagePath {
  id: string
  status: string
  error?: string
  /** Each filter call on the message (or its parts), in order, retries included. */
  filters: FilterCall[]
  /** Per destination and part: the final status and every attempt, from the message store. */
  deliveries: Array<DeliveryRecord & { history: AttemptRecord[] }>
}

const unfinished = (status: string) => status === 'queued' || status === 'in-flight' || status === 'retrying'

/**
 * Every message the case's channel stored, oldest first, with its filter calls and delivery attempts,
 * each status as the case's steps left it. Stopping the channel at the end of the case puts what
 * waited for its next attempt back in the queue (stored `queued`, its next attempt time kept): such
 * a delivery, and its message, are `retrying`, as `expect.messages` and a failing case's reason call
 * them. `retrying` (the deliveries waiting for their next attempt when the steps ended, by message
 * id, as `destination part`) says which; without it, a queued delivery with a next attempt time is.
 */
export async function messagePaths(store: MessageStore, channel: LoadedChannel, recording: Recording, retrying?: Map<string, Set<string>>): Promise<MessagePath[]> {
  const out: MessagePath[] = []
  for (const m of await store.list({ channel: channel.name, order: 'asc', limit: 10_000 })) {
    const detail = await store.get(m.id)
    const own = (id: unknown) => id === m.id || (typeof id === 'string' && id.startsWith(`${m.id}.`))
    const waiting = (d: DeliveryRecord) => unfinished(m.status) && (retrying
      ? retrying.get(m.id)?.has(`${d.destination} ${d.part}`) === true
      : d.status === 'queued' && d.nextAttemptAt !== undefined)
    const deliveries = (detail?.deliveries ?? []).map((d) => ({
      ...d,
      ...(waiting(d) ? { status: 'retrying' as const } : {}),
      history: (detail?.attempts ?? []).filter((a) => a.destination === d.destination && a.part === d.part),
    }))
    const status = unfinished(m.status) && deliveries.some((d) => d.status === 'retrying') ? 'retrying' : m.status
    out.push({
      id: m.id,
      status,
      ...(m.error ? { error: m.error } : {}),
      filters: recording.filters.filter((c) => own(c.messageId)),
      deliveries,
    })
  }
  return out
}

const attemptLine = (a: AttemptRecord) =>
  `attempt ${a.attempt}: ${a.outcome}${a.responseStatus ? `, HTTP ${a.responseStatus}` : ''}${a.error ? `: ${a.error}` : ''} (${a.endedAt - a.startedAt} ms)`

/**
 * The paths as indented lines: per message its status, each filter's outcome, and per destination
 * its status and attempts.
 *
 * @example
 * message 1 (01J…): delivered
 *   filters/0 (match): passed
 *   epic-fhir (http): delivered
 *     attempt 1: retryable, HTTP 503: ERR_HTTP_STATUS: … (12 ms)
 *     attempt 2: delivered, HTTP 201 (4 ms)
 */
export function formatMessagePaths(paths: MessagePath[], channel: LoadedChannel): string[] {
  const typeOf = new Map<string, string>([
    ...channel.filters.map((f, i) => [`filters/${i}`, f.definition.type] as [string, string]),
    ...channel.destinations.map((d) => [d.name, d.definition.type] as [string, string]),
  ])
  const lines: string[] = []
  for (const [i, p] of paths.entries()) {
    lines.push(`message ${i + 1} (${p.id}): ${p.status}${p.error ? ` (${p.error})` : ''}`)
    for (const c of p.filters) {
      const outcome = c.outcome === 'split' ? `split into ${c.parts}` : c.outcome === 'error' ? `error: ${c.error}` : c.outcome
      lines.push(`  ${c.filter} (${typeOf.get(c.filter)}): ${outcome}${c.messageId !== p.id ? ` [${c.messageId}]` : ''}`)
    }
    for (const d of p.deliveries) {
      const part = p.deliveries.some((x) => x.part > 0) ? ` part ${d.part}` : ''
      lines.push(`  ${d.destination} (${typeOf.get(d.destination)})${part}: ${d.status}${d.history.length ? '' : ' (no attempt)'}`)
      for (const a of d.history) lines.push(`    ${attemptLine(a)}`)
    }
  }
  return lines
}
