import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadAlerts } from '../../engine/alerts/index.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { alertsFile } from './_alerts.ts'

const hook = { url: 'https://ops.example.com/hook' }
const alert = { name: 'down', condition: 'destination-failing', webhook: 'ops' }

describe('alerts file', () => {
  let dir: { path: string; remove: () => Promise<void> }
  beforeAll(async () => { dir = await tempDir('weir-alerts-load-') })
  afterAll(() => dir.remove())

  it('loads with defaults: every channel, a 5 s check, 5 min between firings, a webhook channel per webhook', async () => {
    const loaded = await alertsFile(dir.path, { webhooks: { ops: hook }, alerts: [alert] })
    expect(loaded.checkIntervalMs).toBe(5000)
    expect(loaded.alerts).toEqual([{ ...alert, channels: '*', minIntervalMs: 300_000, clearAfterMs: 10_000 }])
    const ch = loaded.webhooks.ops!
    expect(ch.name).toBe('weir-alerts.ops')
    expect(ch.destinations[0]!.config).toMatchObject({ url: hook.url, method: 'POST', contentType: 'application/json' })
    expect(ch.destinations[0]!.retry.maxAttempts).toBe(10)
  })

  it('loads messages-failing without filling its count and window (they default when evaluated: 1 message in 300 s)', async () => {
    const errors = { name: 'errors', condition: 'messages-failing', webhook: 'ops' }
    const loaded = await alertsFile(dir.path, { webhooks: { ops: hook }, alerts: [errors, { ...errors, name: 'bursts', count: 10, windowSeconds: 60 }] })
    expect(loaded.alerts.map((a) => [a.name, a.count, a.windowSeconds])).toEqual([['errors', undefined, undefined], ['bursts', 10, 60]])
  })

  it.each([
    ['an unknown condition', { webhooks: { ops: hook }, alerts: [{ ...alert, condition: 'down' }] }, '/alerts/0/condition: must be one of "destination-failing", "messages-failing", "queue-age", "credential-fail-fast", "channel-stopped", "channel-refusing"'],
    ['an unknown webhook', { webhooks: { ops: hook }, alerts: [{ ...alert, webhook: 'opps' }] }, '/alerts/0/webhook: unknown webhook "opps"; did you mean "ops"?; defined: ops'],
    ['queue-age without an age', { webhooks: { ops: hook }, alerts: [{ ...alert, condition: 'queue-age' }] }, '/alerts/0: must have required property "maxAgeSeconds" (condition "queue-age")'],
    ['an option of another condition', { webhooks: { ops: hook }, alerts: [{ ...alert, maxAgeSeconds: 60 }] }, '/alerts/0/maxAgeSeconds: applies only to the "queue-age" condition'],
    ['a messages-failing option on another condition', { webhooks: { ops: hook }, alerts: [{ ...alert, count: 3 }] }, '/alerts/0/count: applies only to the "messages-failing" condition'],
    ['an empty error window', { webhooks: { ops: hook }, alerts: [{ ...alert, condition: 'messages-failing', windowSeconds: 0 }] }, '/alerts/0/windowSeconds: must be >= 1'],
    ['a misspelt error window', { webhooks: { ops: hook }, alerts: [{ ...alert, condition: 'messages-failing', windowSecond: 60 }] }, '/alerts/0/windowSecond: unknown property "windowSecond" (did you mean "windowSeconds"?)'],
    ['a duplicate name', { webhooks: { ops: hook }, alerts: [alert, alert] }, '/alerts/1/name: duplicate alert name "down" (also /alerts/0/name)'],
    ['a bad webhook url', { webhooks: { ops: { url: 'ftp://x' } }, alerts: [alert] }, '/webhooks/ops/url: must start with http://, https:// or /'],
    ['a bad retry policy', { webhooks: { ops: { ...hook, retry: { maxAttempts: 0 } } }, alerts: [alert] }, '/webhooks/ops/retry/maxAttempts: must be >= 1'],
    ['an unknown webhook credential', { credentials: {}, webhooks: { ops: { ...hook, credential: 'pager' } }, alerts: [alert] }, '/webhooks/ops/credential: unknown credential "pager"; defined: (none)'],
    ['an unset secret header', { webhooks: { ops: { ...hook, secretHeaders: { 'x-api-key': { $env: 'OPS_KEY' } } } }, alerts: [alert] }, '/webhooks/ops/secretHeaders/x-api-key: environment variable "OPS_KEY" is not set'],
    ['a misspelt key', { webhooks: { ops: hook }, alerts: [{ ...alert, chanels: ['a'] }] }, '/alerts/0/chanels: unknown property "chanels" (did you mean "channels"?)'],
  ])('reports %s with its JSON pointer', async (_what, content, problem) => {
    const err = await alertsFile(dir.path, content).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.message.split('\n')).toContain(`${join(dir.path, 'alerts.json')}#${problem}`)
  })

  it('reports invalid JSON with its line and a missing file', async () => {
    await writeFile(join(dir.path, 'broken.json'), '{\n  "alerts": [,]\n}')
    const err = await loadAlerts(join(dir.path, 'broken.json')).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.message).toMatch(/broken\.json#: invalid JSON at line 2/)
    expect((await loadAlerts(join(dir.path, 'none.json')).catch((e) => e)).message).toMatch(/none\.json#: file not found$/)
  })
})
