import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { messagePaths } from '../../engine/harness/trace.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { runCli } from '../_cli.ts'
import { tempDir } from '../_setup.ts'

// A message waiting for its next attempt as a case's steps end is `retrying` in the reason of a
// failing case; the stop at the end of the case then puts it back in the queue (stored `queued`).
// The path --verbose prints under the case must say what the reason says.
let scratch: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => {
  scratch = await tempDir('weir-verbose-status-')
  // The credential's secret comes from the test file's env.
  await writeFile(join(scratch.dir, 'orders.json'), JSON.stringify({
    name: 'orders',
    credentials: { crm: { tokenUrl: 'https://login.orders.example/oauth2/token', clientId: 'weir-test-orders', clientAuth: { method: 'client_secret_post', secret: { $env: 'ORDERS_SECRET' } } } },
    source: { type: 'http-listener', config: { port: 7998, path: '/orders' } },
    destinations: [{ name: 'api', type: 'http', config: { url: 'https://api.orders.example/v1/orders', method: 'POST', credential: 'crm' }, retry: { initialDelayMs: 100 } }],
  }))
})
afterAll(async () => { await scratch.cleanup() })

describe('weir test --verbose on a message waiting for a retry', () => {
  it('the path under a failing case gives the status its reason gives: retrying (and queued behind it)', async () => {
    // The provider has another secret on record: the token endpoint refuses the credential, so the
    // first message waits for its next attempt and the second waits behind it.
    const t = join(scratch.dir, 'refused.test.json')
    await writeFile(t, JSON.stringify({
      channel: 'orders.json',
      env: { ORDERS_SECRET: 'test-material:orders-secret' },
      api: [{ method: 'POST', path: '/v1/orders', answers: [{ status: 201 }] }],
      cases: [{
        name: 'expects delivered',
        server: { clients: { crm: { secret: 'test-material:rotated' } } },
        steps: [{ send: { body: { id: 1 } } }, { send: { body: { id: 2 } } }],
        expect: { messages: [{ status: 'delivered' }, { status: 'delivered' }] },
      }],
    }))
    const { code, out } = await runCli(['test', t, '--verbose'])
    expect(code).toBe(1)
    const lines = out.split('\n')
    const reason = lines.find((l) => l.startsWith('  ✗ expects delivered: '))!
    expect(reason).toMatch(/: message 1: status retrying, expected delivered \(api: ERR_OAUTH_/)
    expect(reason).toContain('; message 2: status queued, expected delivered;')
    const said = (n: number) => reason.match(new RegExp(`message ${n}: status (\\S+),`))![1]
    const shown = (n: number) => lines.find((l) => l.startsWith(`      message ${n} (`))!.replace(/^ {6}message \d \(01[0-9A-Z]{24}\): /, '')
    expect([shown(1), shown(2)]).toEqual([said(1), said(2)])
    // The delivery waiting for its next attempt is retrying too, its attempts under it.
    const delivery = lines.indexOf(lines.find((l) => l.startsWith('      message 1 ('))!) + 1
    expect(lines[delivery]).toBe('        api (http): retrying')
    expect(lines[delivery + 1]).toMatch(/^ {10}attempt 1: retryable, HTTP \d+: ERR_OAUTH_/)
  })
})

describe('messagePaths', () => {
  const channel = { name: 'orders' } as LoadedChannel
  const recording = { filters: [], deliveries: new Map() }

  it('gives a delivery the stop put back in the queue, and its message, the status the steps left: retrying', async () => {
    const store = openSqliteStore({ dataDir: join(scratch.dir, 'store') })
    try {
      const first = (await store.enqueue('orders', { body: { id: 1 } })).id
      const second = (await store.enqueue('orders', { body: { id: 2 } })).id
      expect((await store.claim('orders', 2)).map((m) => m.id)).toEqual([first, second])
      const t = Date.now()
      await store.recordDelivery(first, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: t + 60_000, attempt: { startedAt: t, endedAt: t + 1, outcome: 'retryable', error: 'HTTP 503' } })
      // As the channel stops: both back in the queue, the retry time kept.
      await store.release([first, second])
      expect((await store.get(first))!.message.status).toBe('queued')
      expect((await store.get(first))!.deliveries.map((d) => d.status)).toEqual(['queued'])

      const statuses = async (retrying?: Map<string, Set<string>>) =>
        (await messagePaths(store, channel, recording, retrying)).map((p) => [p.status, ...p.deliveries.map((d) => `${d.destination} ${d.status} ${d.history.length}`)])
      expect(await statuses()).toEqual([['retrying', 'api retrying 1'], ['queued']])
      // What the harness saw waiting as the steps ended decides, when given.
      expect(await statuses(new Map([[first, new Set(['api 0'])]]))).toEqual([['retrying', 'api retrying 1'], ['queued']])
      expect(await statuses(new Map())).toEqual([['queued', 'api queued 1'], ['queued']])
    } finally {
      await store.close()
    }
  })
})
