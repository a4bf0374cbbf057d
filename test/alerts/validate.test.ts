import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../../engine/cli.ts'
import { loadAlerts, mergeAlerts } from '../../engine/alerts/index.ts'
import { builtinComponents } from '../../components/index.ts'
import { loadChannelObject } from '../../shared/config/load.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { commandIO } from './_alerts.ts'

// Findings: `weir validate alerts.json` checked an alerts file as a channel file; problems of an
// alerts file came in stages (a schema error hid the rule checks); and a channel's own alerts block
// naming a destination or credential it does not have was caught by weir run, not weir validate.

let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { dir = await tempDir('weir-alerts-validate-') })
afterEach(() => dir.remove())

const hook = { url: 'https://ops.example.com/hook' }
const ok = { webhooks: { ops: hook }, alerts: [{ name: 'stopped', condition: 'channel-stopped', webhook: 'ops' }] }
/** Three problems of two kinds: a schema error (condition), and two the schema cannot see (maxAgeSeconds, a duplicate name). */
const staged = {
  webhooks: { ops: hook },
  alerts: [
    { name: 'a', condition: 'down', webhook: 'ops' },
    { name: 'old', condition: 'queue-age', webhook: 'ops' },
    { name: 'old', condition: 'channel-stopped', webhook: 'ops' },
  ],
}
const stagedProblems = [
  '/alerts/0/condition: must be one of "destination-failing", "messages-failing", "queue-age", "credential-fail-fast", "channel-stopped", "channel-refusing"',
  '/alerts/1: must have required property "maxAgeSeconds" (condition "queue-age")',
  '/alerts/2/name: duplicate alert name "old" (also /alerts/1/name)',
]

async function validate(args: string[], files: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir.path, name), JSON.stringify(content, null, 2))
  const t = commandIO(dir.path, env)
  const status = await main(['validate', ...args], t.io)
  return { status, out: t.out.join('\n'), err: t.err.join('\n') }
}

const orders = (alerts?: unknown) => ({
  name: 'orders',
  credentials: { epic: { grant: 'client_credentials', tokenUrl: 'https://auth.example.org/token', clientId: 'weir', clientAuth: { method: 'client_secret_basic', secret: { $env: 'S' } } } },
  source: { type: 'http-listener', config: { host: '127.0.0.1', port: 7001 } },
  destinations: [
    { name: 'fhir', type: 'http', config: { url: 'https://fhir.example.org/Patient', credential: 'epic' } },
    { name: 'audit', type: 'http', config: { url: 'https://audit.example.org/in' } },
  ],
  ...(alerts ? { alerts } : {}),
})

describe('weir validate: an alerts file', () => {
  it('is recognised by its shape (webhooks/alerts, no name or source) and checked with the loader of weir run --alerts', async () => {
    const r = await validate(['alerts.json'], { 'alerts.json': ok })
    expect([r.status, r.err]).toEqual([0, ''])
    expect(r.out).toBe('ok alerts.json: alerts file, 1 alert(s), webhooks ops')
  })

  it('reports every problem at once, with JSON pointers, not as a channel file', async () => {
    const r = await validate(['alerts.json'], { 'alerts.json': staged })
    expect(r.status).toBe(1)
    const file = join(dir.path, 'alerts.json')
    expect(r.err.split('\n')).toEqual([...stagedProblems.map((p) => `${file}#${p}`), '0 valid, 1 invalid'])
    expect(r.err).not.toContain('required property "name"')
  })

  it('--alerts FILE checks a file as an alerts file whatever its shape, beside channel files', async () => {
    const r = await validate(['orders.json', '--alerts', 'odd.json'], { 'orders.json': orders(), 'odd.json': { name: 'x', ...ok } }, { S: 's' })
    expect(r.status).toBe(1)
    expect(r.err).toContain(`${join(dir.path, 'odd.json')}#/name: unknown property "name"`)
    expect(r.out).toContain('ok orders.json: channel "orders"')
    expect(r.err).toContain('1 valid, 1 invalid')
  })

  it('loadAlerts itself reports the schema error and the rule problems together', async () => {
    await writeFile(join(dir.path, 'alerts.json'), JSON.stringify(staged))
    const err = await loadAlerts(join(dir.path, 'alerts.json')).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.message.split('\n')).toEqual(stagedProblems.map((p) => `${join(dir.path, 'alerts.json')}#${p}`))
  })
})

describe('loadAlerts with a schema problem in one webhook', () => {
  it('reports it once, with the rules\' own problems and the other webhooks\'', async () => {
    await writeFile(join(dir.path, 'alerts.json'), JSON.stringify({
      webhooks: { ops: { timeoutMs: 1000 }, pager: { url: hook.url, secretHeaders: { 'x-key': { $env: 'UNSET' } } } },
      alerts: [{ name: 'a', condition: 'channel-stopped', webhook: 'opps' }, { name: 'b', condition: 'channel-stopped', webhook: 'ops' }],
    }))
    const err = await loadAlerts(join(dir.path, 'alerts.json'), { env: {} }).catch((e) => e)
    expect(err.problems.map((p: { pointer: string; message: string }) => `${p.pointer}: ${p.message}`)).toEqual(['/webhooks/ops: must have required property "url"', '/alerts/0/webhook: unknown webhook "opps"; did you mean "ops"?; defined: ops, pager', '/webhooks/pager/secretHeaders/x-key: environment variable "UNSET" is not set'])
  })
})

describe('weir validate: a channel\'s own alerts block naming what the channel does not have', () => {
  it.each([
    [{ name: 'down', condition: 'destination-failing', destination: 'audti', webhook: 'ops' },
      '/alerts/alerts/0/destination: unknown destination "audti"; did you mean "audit"?; destinations of channel orders: fhir, audit'],
    [{ name: 'token', condition: 'credential-fail-fast', credential: 'epci', webhook: 'ops' },
      '/alerts/alerts/0/credential: unknown credential "epci"; did you mean "epic"?; credentials of channel orders: epic'],
  ])('%j: reported once at its pointer in the channel file', async (rule, problem) => {
    const r = await validate(['orders.json'], { 'orders.json': orders({ webhooks: { ops: hook }, alerts: [rule] }) }, { S: 's' })
    expect(r.status).toBe(1)
    expect(r.err.split('\n').filter((l) => l.includes('#/alerts/'))).toEqual([`${join(dir.path, 'orders.json')}#${problem}`])
  })

  it('a destination that itself has a problem is still known by its name', async () => {
    const ch = orders({ webhooks: { ops: hook }, alerts: [{ name: 'down', condition: 'destination-failing', destination: 'audit', webhook: 'ops' }] })
    ch.destinations[1] = { name: 'audit', type: 'http', config: { url: 'ftp://nope' } }
    const r = await validate(['orders.json'], { 'orders.json': ch }, { S: 's' })
    expect(r.status).toBe(1)
    expect(r.err).not.toContain('unknown destination')
  })
})

describe('mergeAlerts and a channel loaded without checkAlerts', () => {
  it('reports a wrong reference of the channel\'s block once (channelAlerts checks it, mergeAlerts does not again)', async () => {
    const raw = orders({ webhooks: { ops: hook }, alerts: [{ name: 'down', condition: 'destination-failing', destination: 'audti', webhook: 'ops' }] })
    const ch = await loadChannelObject(raw, { file: join(dir.path, 'orders.json'), env: { S: 's' }, registry: createRegistry(builtinComponents) })
    const err = await mergeAlerts(undefined, [ch], { S: 's' }).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.problems.map((p: { pointer: string }) => p.pointer)).toEqual(['/alerts/alerts/0/destination'])
  })
})
