import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'

// A credential the token endpoint refuses is an outage of the destination: the message stays
// queued, retrying, and the channel never becomes idle. A step ends once all its work waits so.
const DIR = mkdtempSync(join(tmpdir(), 'weir-harness-outage-'))
afterAll(() => rmSync(DIR, { recursive: true, force: true }))

const write = (name: string, data: unknown) => {
  const p = join(DIR, name)
  writeFileSync(p, JSON.stringify(data))
  return p
}
writeFileSync(join(DIR, 'orders-secret.txt'), 'test-material:orders-secret\n')
write('orders.json', {
  name: 'orders',
  credentials: { crm: { tokenUrl: 'https://login.orders.example/oauth2/token', clientId: 'weir-test-orders', clientAuth: { method: 'client_secret_post', secret: { $file: 'orders-secret.txt' } }, scope: 'orders.write' } },
  source: { type: 'http-listener', config: { port: 7998, path: '/orders' } },
  destinations: [{ name: 'api', type: 'http', config: { url: 'https://api.orders.example/v1/orders', method: 'POST', credential: 'crm' }, retry: { initialDelayMs: 100 } }],
})
const refused = { server: { clients: { crm: { secret: 'test-material:rotated' } } }, steps: [{ send: { body: { id: 1 } } }, { send: { body: { id: 2 } } }] }
const testFile = (name: string, cases: unknown[]) => write(name, { channel: 'orders.json', api: [{ method: 'POST', path: '/v1/orders', answers: [{ status: 201 }] }], cases })

describe('weir test: a message waiting on a credential outage', () => {
  it('ends each step once the message waits for its next attempt; "retrying" matches it with the last attempt\'s error', async () => {
    const result = await runChannelTest(testFile('retrying.test.json', [{
      name: 'invalid_client: the first message waits, the second waits behind it',
      ...refused,
      expect: { requestCount: 0, messages: [{ status: 'retrying', destinations: { api: 'retrying' }, error: 'invalid_client: client secret mismatch' }, { status: 'queued' }], tokenRequests: { count: 1, errors: 1 } },
    }]))
    expect(result.cases.map((c) => c.failures)).toEqual([[]])
    expect(result.cases[0]!.durationMs).toBeLessThan(10_000)
  })

  it('a case expecting error fails with the status and the last attempt\'s error', async () => {
    const result = await runChannelTest(testFile('error.test.json', [{ name: 'expects error', ...refused, expect: { messages: [{ status: 'error' }, { status: 'queued' }] } }]))
    const [failure, ...rest] = result.cases[0]!.failures
    expect(failure).toMatch(/^message 1: status retrying, expected error \(api: ERR_OAUTH_FAIL_FAST: credential "crm" is failing: token endpoint http:\/\/127\.0\.0\.1:\d+\/tenants\/crm\/token answered 401 invalid_client: client secret mismatch/)
    expect(rest).toEqual(['token endpoint refused weir-test-orders: invalid_client: client secret mismatch'])
  })

  it('a retry that succeeds is waited for: an outage of the API (503) does not end the step', async () => {
    const result = await runChannelTest(testFile('recovers.test.json', [{
      name: '503 twice, then 201',
      api: [{ method: 'POST', path: '/v1/orders', answers: [{ status: 503 }, { status: 503 }, { status: 201 }] }],
      steps: [{ send: { body: { id: 1 } } }],
      expect: { requestCount: 3, messages: [{ status: 'delivered' }] },
    }]))
    expect(result.cases.map((c) => c.failures)).toEqual([[]])
  })
})
