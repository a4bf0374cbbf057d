/**
 * The benchmark's destination API: a loopback HTTP server that answers every POST with 200 and records
 * when each message (by its `x-seq` header) first arrived, how many arrived twice, and the distinct
 * Authorization values it saw. Shared by the benchmarks in bench/.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Sink {
  /** Where the systems under test deliver: `http://127.0.0.1:<port>/fhir/Encounter`. */
  url: string
  /** performance.now() of the first arrival of `seq`, NaN before it arrived. */
  arrivedAt(seq: number): number
  /** Messages with a seq in [0, capacity) that arrived since the last reset (each counted once). */
  readonly arrivals: number
  /** Arrivals of a seq that had already arrived. */
  readonly duplicates: number
  /** Distinct Authorization header values seen (kept up to 10,000). */
  authorizations(): string[]
  /** Resolves at the next arrival, or after `ms`. */
  nextArrival(ms?: number): Promise<void>
  /** Waits until every seq in [from, to) has arrived or `deadline` (epoch ms) passed; returns how many are missing. */
  drained(from: number, to: number, deadline: number): Promise<number>
  reset(): void
  close(): Promise<void>
}

/** Starts the sink on 127.0.0.1 (port 0); it tracks seq values 0 … capacity - 1. */
export async function startSink(capacity: number): Promise<Sink> {
  const arrived = new Float64Array(capacity).fill(NaN)
  let arrivals = 0
  let duplicates = 0
  const auths = new Set<string>()
  let waiters: Array<() => void> = []
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const seq = Number(req.headers['x-seq'])
      const authorization = req.headers.authorization
      if (authorization && auths.size < 10_000) auths.add(authorization)
      if (seq >= 0 && seq < capacity) {
        if (Number.isNaN(arrived[seq]!)) { arrived[seq] = performance.now(); arrivals++ } else duplicates++
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 11 }).end('{"ok":true}')
      if (waiters.length) { const w = waiters; waiters = []; for (const f of w) f() }
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))

  const nextArrival = (ms = 100) => new Promise<void>((ok) => {
    const timer = setTimeout(ok, ms)
    waiters.push(() => { clearTimeout(timer); ok() })
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir/Encounter`,
    arrivedAt: (seq) => arrived[seq] ?? NaN,
    get arrivals() { return arrivals },
    get duplicates() { return duplicates },
    authorizations: () => [...auths],
    nextArrival,
    async drained(from, to, deadline) {
      let first = from // every seq below `first` has arrived
      for (;;) {
        while (first < to && !Number.isNaN(arrived[first]!)) first++
        if (first >= to || Date.now() >= deadline) break
        await nextArrival(Math.min(100, Math.max(1, deadline - Date.now())))
      }
      let missing = 0
      for (let i = first; i < to; i++) if (Number.isNaN(arrived[i]!)) missing++
      return missing
    },
    reset() { arrived.fill(NaN); arrivals = 0; duplicates = 0; auths.clear() },
    close: () => new Promise<void>((ok) => { server.closeAllConnections(); server.close(() => ok()) }),
  }
}

/**
 * End-to-end figures of the messages [from, to) sent at `sent[seq - from]` (performance.now()): the
 * last arrival (the measured window ends there; `t0` when nothing arrived) and each arrived message's
 * latency from send to sink.
 */
export function endToEnd(sink: Pick<Sink, 'arrivedAt'>, from: number, to: number, sent: Float64Array, t0: number): { lastArrival: number; latencies: number[] } {
  let lastArrival = t0
  const latencies: number[] = []
  for (let seq = from; seq < to; seq++) {
    const at = sink.arrivedAt(seq)
    if (Number.isNaN(at)) continue
    if (at > lastArrival) lastArrival = at
    latencies.push(at - sent[seq - from]!)
  }
  return { lastArrival, latencies }
}
