import { afterEach, beforeEach, expect, it } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { AdminServer } from '../../engine/admin/index.ts'
import { run } from '../../engine/commands/run.ts'
import { sample } from '../admin/_admin.ts'
import { startApi, tempDir, until } from '../runtime/_helpers.ts'
import { commandIO, fastWebhook, webhookReceiver } from './_alerts.ts'

const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')
let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { dir = await tempDir('weir-alerts-metrics-') })
afterEach(() => dir.remove())

it('weir run --alerts --admin: a webhook that refuses a notification shows in /metrics (weir_alert_notifications_total, the weir-alerts channel\'s attempts)', async () => {
  const api = await startApi(() => ({ status: 400 }))
  const hook = await webhookReceiver(() => 400)
  try {
    await writeFile(join(dir.path, 'orders.json'), JSON.stringify({
      name: 'orders',
      source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'orders.port' } },
      destinations: [{ name: 'api', type: 'http', config: { url: api.url } }],
      options: { onError: 'stop' },
    }))
    await writeFile(join(dir.path, 'alerts.json'), JSON.stringify({ checkIntervalMs: 20, webhooks: { ops: fastWebhook(hook.url) }, alerts: [{ name: 'stopped', condition: 'channel-stopped', webhook: 'ops' }] }))
    const t = commandIO(dir.path)
    const stop = new AbortController()
    let admin: AdminServer | undefined
    const done = run(['orders.json', '--alerts', 'alerts.json', '--data-dir', 'data', '--admin', '127.0.0.1:0'], t.io, { signal: stop.signal, onAdminServer: (a) => { admin = a } })
    await until(async () => (await readFile(join(dir.path, 'orders.port'), 'utf8').catch(() => '')) !== '', 10_000, 'source listening')
    const port = Number(await readFile(join(dir.path, 'orders.port'), 'utf8'))
    await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' })
    const scrape = async () => (await (await fetch(`${admin!.url}/metrics`)).text())
    await until(async () => sample(await scrape(), 'weir_alert_notifications_total', { webhook: 'ops', outcome: 'error' }) === 1, 10_000, 'the failed notification counted')
    expect(sample(await scrape(), 'weir_delivery_attempts_total', { channel: 'weir-alerts.ops', destination: 'webhook', outcome: 'permanent' })).toBe(1)
    stop.abort()
    await done
  } finally {
    await hook.close()
    await api.close()
  }
}, 30_000)
