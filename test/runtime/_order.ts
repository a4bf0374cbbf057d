import { createServer, type Server } from 'node:http'

/** Keys the ordered sends spread over. */
export const KEYS = 500

/** A small seeded generator (mulberry32), so a failing run can be replayed from its seed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * A loopback sink that answers 503 to `failRate` of the requests at random and records the
 * accepted ones in arrival order: `{ key, n }` bodies, by Idempotency-Key.
 */
export async function orderedSink(failRate: number, seed: number) {
  const random = seeded(seed)
  const accepted: Array<{ idem: string; key: string; n: number }> = []
  let refused = 0
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (random() < failRate) {
        refused++
        res.writeHead(503).end('busy')
        return
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { key: string; n: number }
      accepted.push({ idem: String(req.headers['idempotency-key']), key: body.key, n: body.n })
      res.writeHead(200).end('ok')
    })
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/in`,
    accepted,
    get refused() { return refused },
    /** Distinct accepted messages (redeliveries dropped by Idempotency-Key). */
    distinct() {
      const seen = new Set<string>()
      return accepted.filter((a) => !seen.has(a.idem) && seen.add(a.idem))
    },
    close: () => new Promise<void>((ok) => { server.closeAllConnections(); server.close(() => ok()) }),
  }
}

/** Every key's sequence numbers, in the order the sink accepted them, with redeliveries dropped: strictly increasing? Returns the first violation. */
export function orderViolation(distinct: Array<{ key: string; n: number }>): string | undefined {
  const last = new Map<string, number>()
  for (const { key, n } of distinct) {
    const prev = last.get(key) ?? -1
    if (n <= prev) return `key ${key}: ${n} after ${prev}`
    last.set(key, n)
  }
  return undefined
}

/**
 * 50 concurrent senders; sender s sends messages i = s, s + 50, … whose keys (i mod 500) are all
 * ≡ s (mod 50), since 50 divides 500: every key has exactly one sender, which sends it one message
 * at a time, so every key's messages arrive in the order of their numbers.
 */
export async function sendKeyed(total: number, send: (body: { key: string; n: number; pad: string }) => Promise<void>) {
  const perKey = new Map<string, number>()
  let next = 0
  const senders = 50 // must divide KEYS
  await Promise.all(Array.from({ length: senders }, async (_, s) => {
    for (let i = s; i < total; i += senders) {
      const key = `mrn-${i % KEYS}`
      const n = perKey.get(key) ?? 0
      perKey.set(key, n + 1)
      await send({ key, n, pad: 'x'.repeat(200) })
      next++
    }
  }))
  return next
}

