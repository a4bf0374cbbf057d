/**
 * The benchmark's load generator: POSTs ~1 KB JSON messages to a system under test with a fixed number
 * in flight, each sender awaiting its answer, and never more than `window` messages sent but not yet at
 * the sink (so a durable engine that acknowledges before delivering cannot run ahead of its queue).
 * Shared by the benchmarks in bench/.
 */
import { Pool } from 'undici'
import type { Sink } from './sink.ts'

const PAD = 'x'.repeat(900)

/** Message `seq`: about 1 KB once serialised; `pid` takes 500 values (the key of the ordered scenario). */
export const benchBody = (seq: number) => ({ seq, mrn: `MRN${100000 + (seq % 900000)}`, pid: `P${seq % 500}`, name: 'Doe^John', event: 'A01', ward: '4B', payload: PAD })

export interface GenerateOptions {
  /** Where to POST (the system under test's listener). */
  url: string
  /** Sends seq values [from, to); every earlier message must already be at the sink. */
  from: number
  to: number
  /** Epoch ms after which no new message is sent. */
  deadline: number
  sink: Pick<Sink, 'arrivals' | 'nextArrival'>
  /** Concurrent senders (default 64). */
  inFlight?: number
  /** Most messages sent but not yet at the sink (default 512). */
  window?: number
  /** Status that means accepted (default 202); anything else is retried after 50 ms, up to 200 times. */
  acceptedStatus?: number
}

export interface Generated {
  /** performance.now() when each message was first sent (index seq - from). */
  sent: Float64Array
  /** Time from send to the accepting answer (ms), NaN if never accepted. */
  ack: Float64Array
  /** One past the last seq sent (less than `to` when the deadline cut the run short). */
  lastSent: number
  /** Sends answered with another status or failed, each retried. */
  refused: number
}

/** Sends [from, to) and resolves when every sent message has been accepted. */
export async function generate(o: GenerateOptions): Promise<Generated> {
  const { from, to, deadline, sink } = o
  const inFlight = o.inFlight ?? 64
  const window = o.window ?? 512
  const accepted = o.acceptedStatus ?? 202
  const target = new URL(o.url)
  const pool = new Pool(target.origin, { connections: inFlight, headersTimeout: 60_000, bodyTimeout: 60_000 })
  const sent = new Float64Array(to - from)
  const ack = new Float64Array(to - from).fill(NaN)
  const base = sink.arrivals
  let next = from
  let refused = 0
  const waitWindow = async (seq: number) => {
    while (seq - from - (sink.arrivals - base) >= window && Date.now() < deadline + 60_000) await sink.nextArrival()
  }
  const sendOne = async (seq: number) => {
    const payload = JSON.stringify(benchBody(seq))
    sent[seq - from] = performance.now()
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await pool.request({ method: 'POST', path: target.pathname, body: payload, headers: { 'content-type': 'application/json', 'x-seq': String(seq) } })
        await res.body.text()
        if (res.statusCode === accepted) break
        refused++
      } catch { refused++ }
      if (attempt >= 200) throw new Error(`message ${seq} never accepted by ${o.url}`)
      await new Promise((ok) => setTimeout(ok, 50))
    }
    ack[seq - from] = performance.now() - sent[seq - from]!
  }
  try {
    await Promise.all(Array.from({ length: inFlight }, async () => {
      // The deadline is checked before a seq is taken, so every seq below `next` is sent.
      while (Date.now() < deadline && next < to) {
        const seq = next++
        await waitWindow(seq)
        await sendOne(seq)
      }
    }))
  } finally {
    await pool.close()
  }
  return { sent, ack, lastSent: Math.min(next, to), refused }
}
