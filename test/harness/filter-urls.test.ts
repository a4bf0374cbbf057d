import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'
import { useLocalService } from './_local-service.ts'

const DIR = mkdtempSync(join(tmpdir(), 'weir-harness-filter-urls-'))
const write = (name: string, data: unknown) => {
  const p = join(DIR, name)
  writeFileSync(p, typeof data === 'string' ? data : JSON.stringify(data))
  return p
}
const LOOKUP = resolve('test/fixtures/harness/lookup-filter.ts')

// Stands for the user's real lookup service on this machine: a case must not reach it unless the test file keeps its URL.
const service = useLocalService(200, '{"from":"the real service"}')
afterAll(() => rmSync(DIR, { recursive: true, force: true }))

const channel = (name: string, filters: unknown[]) => write(`${name}.json`, {
  name: 'patients',
  source: { type: 'http-listener', config: { port: 7999, path: '/in' } },
  filters,
  destinations: [{ name: 'fhir', type: 'http', config: { url: 'https://fhir.example.org/Patient', method: 'POST' }, retry: { maxAttempts: 1 } }],
})
const api = [
  { method: 'GET', path: '/patients', auth: false, answers: [{ status: 200, json: { from: 'the embedded API' } }] },
  { method: 'POST', path: '/Patient', auth: false, answers: [{ status: 201 }] },
]
const looked = {
  name: 'the filter looks the patient up, then the patient is posted',
  steps: [{ send: { body: { mrn: '203713' } } }],
  expect: {
    requests: [
      { method: 'GET', path: '/patients', query: { mrn: '^203713$' }, count: 1 },
      { method: 'POST', path: '/Patient', count: 1, json: { mrn: '203713', found: { from: 'the embedded API' } } },
    ],
    messages: [{ status: 'delivered' }],
  },
}
const failures = async (t: string) => (await runChannelTest(t)).cases.map((c) => c.failures)

describe('weir test and URLs in filter configs', () => {
  it('a custom filter calling ctx.http at a loopback URL of its config reaches the embedded API, never the service listening there', async () => {
    const t = write('loopback.test.json', { channel: channel('loopback', [{ type: LOOKUP, config: { lookupUrl: `${service.url}/patients` } }]), api, cases: [looked] })
    expect(await failures(t)).toEqual([[]])
    expect(service.received).toEqual([])
  })

  it('a custom filter calling ctx.http at a remote URL of its config reaches the embedded API', async () => {
    const t = write('remote.test.json', { channel: channel('remote', [{ type: LOOKUP, config: { lookupUrl: 'https://lookup.hospital.example/patients' } }]), api, cases: [looked] })
    expect(await failures(t)).toEqual([[]])
  })

  it('"keepUrls" keeps a filter\'s loopback origin: the lookup goes to the service listening there', async () => {
    const t = write('kept.test.json', {
      channel: channel('kept', [{ type: LOOKUP, config: { lookupUrl: `${service.url}/patients` } }]), api, keepUrls: [service.url],
      cases: [{ name: 'looked up at the kept service', steps: [{ send: { body: { mrn: '7' } } }], expect: { requests: [{ method: 'POST', path: '/Patient', json: { found: { from: 'the real service' } } }], requestCount: 1 } }],
    })
    expect(await failures(t)).toEqual([[]])
    expect(service.received).toEqual(['GET /patients?mrn=7'])
  })

  it('a URL the component builds at run time (not one of its config) goes to the embedded API too, through ctx.http', async () => {
    const source = `import { defineComponent, withBody } from ${JSON.stringify(resolve('shared/component.ts'))}
export default defineComponent({
  type: 'fixture-built-url', kind: 'filter', description: 'Builds its URL from a host.',
  configSchema: { type: 'object', additionalProperties: false, required: ['host'], properties: { host: { type: 'string', description: 'host:port' } } },
  create: (config, ctx) => ({ process: async (m) => withBody(m, { ...m.body, found: JSON.parse((await ctx.http.request({ url: 'http://' + config.host + '/patients?mrn=' + m.body.mrn })).body) }) }),
})
`
    const module = write('built-url.ts', source)
    const t = write('built.test.json', { channel: channel('built', [{ type: module, config: { host: service.url.slice('http://'.length) } }]), api, cases: [looked] })
    expect(await failures(t)).toEqual([[]])
    expect(service.received).toEqual([])
  })

  it('the script filter\'s options: a script fetching a URL given there reaches the embedded API', async () => {
    write('lookup-script.mjs', `export default async (m, ctx) => {
  const res = await fetch(ctx.options.lookupUrl + '?mrn=' + m.body.mrn)
  return { body: { ...m.body, found: await res.json() } }
}
`)
    const t = write('script.test.json', { channel: channel('script', [{ type: 'script', config: { module: './lookup-script.mjs', options: { lookupUrl: `${service.url}/patients` } } }]), api, cases: [looked] })
    expect(await failures(t)).toEqual([[]])
    expect(service.received).toEqual([])
  })

  it('the validate filter\'s JSON Schema is left as written: "$schema" and "$id" are names, not URLs to call', async () => {
    const schema = { $schema: 'http://json-schema.org/draft-07/schema#', $id: 'https://schemas.hospital.example/patient.json', type: 'object', required: ['mrn'] }
    const t = write('validate.test.json', {
      channel: channel('validate', [{ type: 'validate', config: { schema } }]), api: [{ method: 'POST', path: '/Patient', auth: false, answers: [{ status: 201 }] }],
      cases: [
        { name: 'valid', steps: [{ send: { body: { mrn: '1' } } }], expect: { messages: [{ status: 'delivered' }] } },
        { name: 'invalid', steps: [{ send: { body: { name: 'x' } } }], expect: { requestCount: 0, messages: [{ status: 'error', error: 'mrn' }] } },
      ],
    })
    expect(await failures(t)).toEqual([[], []])
  })
})
