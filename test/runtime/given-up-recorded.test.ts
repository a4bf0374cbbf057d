import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { server, startTestChannel, textCollector, until, type TestChannel } from '../reliability/_helpers.ts'

// A message with several destinations: a delivery given up on is in the message log at once, not
// only once the other destinations are done (one may wait for an outage for hours meanwhile).

const collector = textCollector()
let api: Awaited<ReturnType<typeof server>>
let ch: TestChannel

beforeAll(async () => {
  collector.capture()
  // /refuse: 400 (permanent); /busy: 503 for ever (retried).
  api = await server((req, _body, res) => void res.writeHead(req.url === '/refuse' ? 400 : 503).end('{}'))
  ch = await startTestChannel({
    name: 'given-up',
    source: { type: 'http-listener', config: { port: 0, path: '/in' } },
    destinations: [
      { name: 'refuse', type: 'http', config: { url: `${api.url}/refuse` } },
      { name: 'busy', type: 'http', config: { url: `${api.url}/busy` }, retry: { maxAttempts: 1000, initialDelayMs: 20, maxDelayMs: 50 }, circuitBreaker: { failureThreshold: 1000, resetAfterMs: 100 } },
    ],
  }, { log: collector.log })
})
afterAll(async () => {
  await ch?.close()
  await api?.close()
  collector.release()
})

describe('a delivery given up on while another destination retries', () => {
  it('is recorded in error at once, with its attempt, while the message goes on retrying', async () => {
    const id = await ch.post({ n: 1 })
    const of = async (name: string) => (await ch.store.get(id))?.deliveries.find((d) => d.destination === name)
    await until(async () => (await of('refuse'))?.status === 'error', 5000, 'refuse in error')
    const d = (await ch.store.get(id))!
    expect(d.message.status).toBe('retrying')
    expect(d.deliveries.find((x) => x.destination === 'busy')?.status).toBe('retrying')
    const refused = d.attempts.filter((a) => a.destination === 'refuse')
    expect(refused.map((a) => [a.attempt, a.outcome, a.responseStatus])).toEqual([[1, 'permanent', 400]])
  })
})
