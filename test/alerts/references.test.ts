import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { main } from '../../engine/cli.ts'
import { loadAlerts, mergeAlerts } from '../../engine/alerts/index.ts'
import { loadChannel } from '../../engine/load.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { commandIO } from './_alerts.ts'

// A rule's `destination`, `credential` and `channels` must name what the channels being run have:
// a typo would otherwise be accepted and the alert would never fire.

const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')
const env = { ORDERS_SECRET: 's3cret' }
let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { dir = await tempDir('weir-alerts-refs-') })
afterEach(() => dir.remove())

/** orders.json (destinations fhir and audit, credential epic used by fhir) and labs.json (destination lis); `alerts` as the channel block of orders. */
async function channels(ordersAlerts?: unknown) {
  const source = (name: string) => ({ type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: `${name}.port` } })
  await writeFile(join(dir.path, 'orders.json'), JSON.stringify({
    name: 'orders',
    credentials: { epic: { grant: 'client_credentials', tokenUrl: 'https://auth.example.org/token', clientId: 'weir', clientAuth: { method: 'client_secret_basic', secret: { $env: 'ORDERS_SECRET' } } } },
    source: source('orders'),
    destinations: [
      { name: 'fhir', type: 'http', config: { url: 'http://127.0.0.1:9/fhir', credential: 'epic' } },
      { name: 'audit', type: 'http', config: { url: 'http://127.0.0.1:9/audit' } },
    ],
    ...(ordersAlerts ? { alerts: ordersAlerts } : {}),
  }))
  await writeFile(join(dir.path, 'labs.json'), JSON.stringify({
    name: 'labs', source: source('labs'), destinations: [{ name: 'lis', type: 'http', config: { url: 'http://127.0.0.1:9/lis' } }],
  }))
  return ['orders.json', 'labs.json']
}

const hook = { url: 'http://127.0.0.1:9/hook' }
const alertsFile = (alerts: unknown[]) => ({ webhooks: { ops: hook }, alerts })
const ok = [
  { name: 'stopped', condition: 'channel-stopped', webhook: 'ops' },
  { name: 'old', condition: 'queue-age', channels: ['labs'], maxAgeSeconds: 60, webhook: 'ops' },
]

/** `weir run <channels> --alerts alerts.json` through the CLI's main(), as a user runs it: its status and stderr. */
async function weirRun(alerts: unknown, ordersAlerts?: unknown) {
  const files = await channels(ordersAlerts)
  await writeFile(join(dir.path, 'alerts.json'), JSON.stringify(alerts))
  const t = commandIO(dir.path, env)
  // Should the engine start after all, stop it as SIGTERM does (run's own handler) rather than hang the test.
  const deadline = setTimeout(() => process.emit('SIGTERM', 'SIGTERM'), 10_000)
  const status = await main(['run', ...files, '--alerts', 'alerts.json', '--data-dir', 'data', '--admin', 'off'], t.io).finally(() => clearTimeout(deadline))
  return { status, err: t.err.join('\n') }
}

describe('weir run --alerts refuses a rule naming what the channels do not have', () => {
  it.each([
    ['a mistyped destination', { name: 'fhir-down', condition: 'destination-failing', channels: ['orders'], destination: 'fhri', webhook: 'ops' },
      '/alerts/2/destination: unknown destination "fhri"; did you mean "fhir"?; destinations of channel orders: fhir, audit'],
    ['a mistyped destination on every channel', { name: 'fhir-down', condition: 'destination-failing', destination: 'fhri', webhook: 'ops' },
      '/alerts/2/destination: unknown destination "fhri"; did you mean "fhir"?; destinations of channels orders, labs: fhir, audit, lis'],
    ['a mistyped credential', { name: 'token', condition: 'credential-fail-fast', channels: ['orders'], credential: 'epci', webhook: 'ops' },
      '/alerts/2/credential: unknown credential "epci"; did you mean "epic"?; credentials of channel orders: epic'],
    ['a credential of another channel', { name: 'token', condition: 'credential-fail-fast', channels: ['labs'], credential: 'epic', webhook: 'ops' },
      '/alerts/2/credential: unknown credential "epic"; credentials of channel labs: (none)'],
    ['a mistyped channel', { name: 'stopped-orders', condition: 'channel-stopped', channels: ['labs', 'ordres'], webhook: 'ops' },
      '/alerts/2/channels/1: unknown channel "ordres"; did you mean "orders"?; channels run: orders, labs'],
  ])('%s: its JSON pointer, the value and a suggestion; status 1, no stack', async (_what, rule, problem) => {
    const { status, err } = await weirRun(alertsFile([...ok, rule]))
    expect(status).toBe(1)
    expect(err.split('\n')).toContain(`${join(dir.path, 'alerts.json')}#${problem}`)
    expect(err).not.toMatch(/internal error|\n\s+at /)
  })

  it('a mistyped destination in a channel\'s own alerts block, at its pointer in the channel file', async () => {
    const block = { webhooks: { ops: hook }, alerts: [{ name: 'down', condition: 'destination-failing', destination: 'audti', webhook: 'ops' }] }
    const { status, err } = await weirRun(alertsFile(ok), block)
    expect(status).toBe(1)
    expect(err.split('\n')).toContain(`${join(dir.path, 'orders.json')}#/alerts/alerts/0/destination: unknown destination "audti"; did you mean "audit"?; destinations of channel orders: fhir, audit`)
    expect(err.split('\n').filter((l) => l.includes('#/alerts/alerts/0/destination'))).toHaveLength(1)
    expect(err).not.toMatch(/internal error|\n\s+at /)
  })

  it('reports every wrong reference at once', async () => {
    const { status, err } = await weirRun(alertsFile([
      { name: 'a', condition: 'destination-failing', destination: 'fhri', webhook: 'ops' },
      { name: 'b', condition: 'credential-fail-fast', credential: 'epci', webhook: 'ops' },
    ]))
    expect(status).toBe(1)
    expect(err).toContain('#/alerts/0/destination: unknown destination "fhri"')
    expect(err).toContain('#/alerts/1/credential: unknown credential "epci"')
  })
})

describe('an alerts file whose references are right', () => {
  it('loads with the channels being run', async () => {
    const files = await channels()
    const rules = [
      ...ok,
      { name: 'fhir-down', condition: 'destination-failing', channels: ['orders'], destination: 'fhir', webhook: 'ops' },
      { name: 'lis-down', condition: 'destination-failing', destination: 'lis', webhook: 'ops' },
      { name: 'token', condition: 'credential-fail-fast', credential: 'epic', webhook: 'ops' },
    ]
    await writeFile(join(dir.path, 'alerts.json'), JSON.stringify(alertsFile(rules)))
    const loaded = await Promise.all(files.map((f) => loadChannel(join(dir.path, f), { env })))
    const merged = await mergeAlerts(await loadAlerts(join(dir.path, 'alerts.json'), { env }), loaded, env)
    expect(merged!.alerts.map((a) => a.name)).toEqual(['stopped', 'old', 'fhir-down', 'lis-down', 'token'])
  })
})
