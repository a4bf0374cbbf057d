import { afterEach, beforeEach, expect, it } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { CommandIO } from '../../engine/cli-io.ts'
import { run } from '../../engine/commands/run.ts'
import { startApi, tempDir, until } from '../runtime/_helpers.ts'
import { fastWebhook, webhookReceiver } from './_alerts.ts'

const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')
let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { dir = await tempDir('weir-alerts-run-') })
afterEach(() => dir.remove())

function io() {
  const out: string[] = []
  const err: string[] = []
  const value: CommandIO = { out: (t) => void out.push(t), err: (t) => void err.push(t), env: {}, cwd: dir.path, isTTY: false }
  return { io: value, out, err }
}

async function files(apiUrl: string, alerts: unknown) {
  await writeFile(join(dir.path, 'orders.json'), JSON.stringify({
    name: 'orders',
    source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'orders.port' } },
    destinations: [{ name: 'api', type: 'http', config: { url: apiUrl } }],
    options: { onError: 'stop' },
  }))
  await writeFile(join(dir.path, 'alerts.json'), JSON.stringify(alerts))
  return ['orders.json', '--alerts', 'alerts.json', '--data-dir', 'data']
}

it('weir run --alerts refuses an invalid alerts file, naming the JSON pointer', async () => {
  const t = io()
  const args = await files('http://127.0.0.1:9/in', { webhooks: { ops: { url: 'http://127.0.0.1:9/hook' } }, alerts: [{ name: 'x', condition: 'channel-stopped', webhook: 'opz' }] })
  expect(await run(args, t.io)).toBe(1)
  expect(t.err.join('\n')).toContain(`${join(dir.path, 'alerts.json')}#/alerts/0/webhook: unknown webhook "opz"; did you mean "ops"?; defined: ops`)
})

it('weir run --alerts notifies when a channel stops on error', async () => {
  const api = await startApi(() => ({ status: 400 }))
  const hook = await webhookReceiver()
  try {
    const t = io()
    const args = await files(api.url, { checkIntervalMs: 20, webhooks: { ops: fastWebhook(hook.url) }, alerts: [{ name: 'stopped', condition: 'channel-stopped', webhook: 'ops' }] })
    const done = run(args, t.io)
    await until(async () => (await readFile(join(dir.path, 'orders.port'), 'utf8').catch(() => '')) !== '', 10_000, 'source listening')
    const port = Number(await readFile(join(dir.path, 'orders.port'), 'utf8'))
    await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' })
    expect(await done).toBe(1)
    expect(hook.accepted.map((n) => [n.alert, n.state, n.channel, n.summary])).toEqual([['stopped', 'firing', 'orders', 'channel orders is stopped']])
  } finally {
    await hook.close()
    await api.close()
  }
})

it('weir run refuses a channel named like the engine\'s own alert channels', async () => {
  const t = io()
  await writeFile(join(dir.path, 'sneaky.json'), JSON.stringify({
    name: 'weir-alerts.ops',
    source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'sneaky.port' } },
    destinations: [{ name: 'api', type: 'http', config: { url: 'http://127.0.0.1:9/in' } }],
  }))
  expect(await run(['sneaky.json', '--data-dir', 'data', '--admin', 'off'], t.io)).toBe(1)
  expect(t.err.join('\n')).toContain(`${join(dir.path, 'sneaky.json')}#/name: channel names starting with "weir-alerts." are the engine's own (alert notifications)`)
})
