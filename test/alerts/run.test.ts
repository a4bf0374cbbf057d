import { afterEach, beforeEach, expect, it } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { run } from '../../engine/commands/run.ts'
import { run as validate } from '../../engine/commands/validate.ts'
import { startApi, tempDir, until } from '../runtime/_helpers.ts'
import { commandIO, fastWebhook, webhookReceiver } from './_alerts.ts'

const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')
let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { dir = await tempDir('weir-alerts-run-') })
afterEach(() => dir.remove())

const io = () => commandIO(dir.path)

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

it('weir run --alerts notifies when a channel stops on error; with every channel stopped the engine stays up (a restart would start them again) until told to stop, then exits 1', async () => {
  const api = await startApi(() => ({ status: 400 }))
  const hook = await webhookReceiver()
  try {
    const t = io()
    const args = await files(api.url, { checkIntervalMs: 20, webhooks: { ops: fastWebhook(hook.url) }, alerts: [{ name: 'stopped', condition: 'channel-stopped', webhook: 'ops' }] })
    const stop = new AbortController()
    let exited = false
    const done = run(args, t.io, { signal: stop.signal }).finally(() => { exited = true })
    await until(async () => (await readFile(join(dir.path, 'orders.port'), 'utf8').catch(() => '')) !== '', 10_000, 'source listening')
    const port = Number(await readFile(join(dir.path, 'orders.port'), 'utf8'))
    await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' })
    await until(() => t.out.some((l) => l.includes('every channel has stopped; weir stays up')), 10_000, 'the engine says it stays up')
    await until(() => hook.accepted.length === 1, 10_000, 'the alert')
    await new Promise((r) => setTimeout(r, 300))
    expect(exited).toBe(false)
    stop.abort()
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

/** A channel file `<name>.json` whose source listens on a port written to `<name>.port` and which stops on its first error. */
async function channelFile(name: string, apiUrl: string, alerts?: unknown) {
  await writeFile(join(dir.path, `${name}.json`), JSON.stringify({
    name,
    source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: `${name}.port` } },
    destinations: [{ name: 'api', type: 'http', config: { url: apiUrl }, retry: { maxAttempts: 1 } }],
    options: { onError: 'stop' },
    ...(alerts ? { alerts } : {}),
  }))
  return `${name}.json`
}

async function post(name: string) {
  await until(async () => (await readFile(join(dir.path, `${name}.port`), 'utf8').catch(() => '')) !== '', 10_000, `${name} listening`)
  const port = Number(await readFile(join(dir.path, `${name}.port`), 'utf8'))
  await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' })
}

const stopped = (url: string) => ({ webhooks: { ops: fastWebhook(url) }, alerts: [{ name: 'stopped', condition: 'channel-stopped', webhook: 'ops' }] })

it.each([
  ['without --alerts: the channel\'s own alerts run', false, [['stopped', 'a']]],
  ['with --alerts: both the file\'s and the channel\'s', true, [['stopped', 'a'], ['stopped', 'b']]],
])('weir run a.json b.json with alerts in a.json, %s', async (_what, withFile, expected) => {
  const api = await startApi(() => ({ status: 400 }))
  const hook = await webhookReceiver()
  try {
    const t = io()
    const args = [await channelFile('a', api.url, stopped(hook.url)), await channelFile('b', api.url), '--data-dir', 'data', '--admin', 'off']
    if (withFile) {
      await writeFile(join(dir.path, 'alerts.json'), JSON.stringify({ ...stopped(hook.url), alerts: [{ ...stopped(hook.url).alerts[0], channels: ['b'] }] }))
      args.push('--alerts', 'alerts.json')
    }
    const stop = new AbortController()
    const done = run(args, t.io, { signal: stop.signal })
    await post('a')
    await post('b')
    await until(() => hook.accepted.length === expected.length, 10_000, 'the alerts')
    stop.abort()
    expect(await done).toBe(1)
    expect(hook.accepted.map((n) => [n.alert, n.channel]).sort()).toEqual(expected)
    expect(hook.accepted.every((n) => n.state === 'firing')).toBe(true)
  } finally {
    await hook.close()
    await api.close()
  }
})

it('weir validate reports a channel alert on another channel at its JSON pointer', async () => {
  const t = io()
  const file = await channelFile('a', 'http://127.0.0.1:9/in', { webhooks: { ops: { url: 'http://127.0.0.1:9/hook' } }, alerts: [{ name: 'x', condition: 'channel-stopped', channels: ['b'], webhook: 'ops' }] })
  expect(await validate([join(dir.path, file)], t.io)).toBe(1)
  expect(t.err).toEqual([`${join(dir.path, 'a.json')}#/alerts/alerts/0/channels/0: an alert in a channel file watches only its own channel "a", not "b"; put alerts on other channels in their files or in the --alerts file`, '0 valid, 1 invalid'])
})
