import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../_cli.ts'
import { tempDir } from '../_setup.ts'

// Findings: `"orderBy": "PID-3.1"` (an HL7 field written with a dash) on an mllp-listener channel was
// accepted; every message then went to error after its AA. And an http-listener feeding an mllp
// destination with no filter sent the JSON it accepts to the mllp destination without a warning.
let scratch: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { scratch = await tempDir('weir-validate-content-') })
afterAll(async () => { await scratch.cleanup() })

const mllpSource = { type: 'mllp-listener', config: { port: 0 } }
const file = { name: 'out', type: 'file', config: { directory: 'out' } }
const mllp = { name: 'lab', type: 'mllp', config: { host: '127.0.0.1', port: 2575 } }

/** Writes the channel `name` and runs weir validate on it: its path and the warnings (exit 0, nothing on stdout). */
async function validate(name: string, channel: Record<string, unknown>): Promise<{ path: string; warnings: string[] }> {
  const path = join(scratch.dir, `${name}.json`)
  await writeFile(path, JSON.stringify({ name, ...channel }))
  const r = await runCli(['validate', path, '--quiet'], {})
  expect([r.code, r.out]).toEqual([0, ''])
  return { path, warnings: r.err.trim().split('\n').filter(Boolean) }
}

describe('weir validate: an HL7 field written with a dash in orderBy or searchKeys of an mllp-listener channel', () => {
  it.each([
    ['PID-3.1', 'PID.3.1'],
    ['PID-3', 'PID.3'],
    ['MSH-10', 'MSH.10'],
    ['OBX[2]-5', 'OBX[2].5'],
  ])('orderBy %s: a warning naming /options/orderBy and suggesting %s', async (written, terse) => {
    const { path, warnings } = await validate('dash-order', { source: mllpSource, destinations: [file], options: { orderBy: written } })
    expect(warnings).toEqual([
      `warning: ${path}#/options/orderBy: ${JSON.stringify(written)} is not an HL7 terse path: on the ER7 messages of the mllp-listener it is JSONata and gives no value, so every message would go to error (or under orderByDefault); write ${JSON.stringify(terse)}`,
    ])
  })

  it('a search key: a warning naming its pointer; terse paths and JSONata get none', async () => {
    const { path, warnings } = await validate('dash-keys', { source: mllpSource, destinations: [file], options: { orderBy: 'PID.3.1', searchKeys: { mrn: 'PID-3.1', visit: 'PV1.19', kind: '$message.attributes.trigger' } } })
    expect(warnings).toEqual([
      `warning: ${path}#/options/searchKeys/mrn: "PID-3.1" is not an HL7 terse path: on the ER7 messages of the mllp-listener it is JSONata and gives no value, so the key would never get a value; write "PID.3.1"`,
    ])
  })

  it('a JSONata path into the hl7v2 JSON shape (PID[0].`3`…): a warning to write a terse path', async () => {
    const { path, warnings } = await validate('jsonata-order', { source: mllpSource, destinations: [file], options: { orderBy: 'PID[0].`3`[0].`1`', searchKeys: { msh: 'MSH.`10`' } } })
    expect(warnings).toEqual([
      `warning: ${path}#/options/orderBy: "PID[0].\`3\`[0].\`1\`" is not an HL7 terse path: on the ER7 messages of the mllp-listener it is JSONata and gives no value, so every message would go to error (or under orderByDefault); write an HL7 terse path such as "PID.3.1"`,
      `warning: ${path}#/options/searchKeys/msh: "MSH.\`10\`" is not an HL7 terse path: on the ER7 messages of the mllp-listener it is JSONata and gives no value, so the key would never get a value; write an HL7 terse path such as "PID.3.1"`,
    ])
  })

  it('the same orderBy on a channel whose source is not an mllp-listener: no warning (JSON bodies, JSONata)', async () => {
    const { warnings } = await validate('dash-http', { source: { type: 'http-listener', config: { port: 0 } }, destinations: [file], options: { orderBy: 'PID-3.1' } })
    expect(warnings).toEqual([])
  })
})

describe('weir validate: an http-listener that accepts JSON feeding an mllp destination', () => {
  const warning = (path: string, types: string) =>
    `warning: ${path}#/destinations/0: mllp sends ER7 text, but the http-listener at /source accepts JSON (${types}) and no filter turns it into ER7: a JSON message would go to error; set its contentTypes to ["x-application/hl7-v2+er7"], or map the JSON to the HL7 v2 shape and add { "type": "hl7v2", "config": { "to": "er7" } }`

  it.each([
    ['the default contentTypes', {}, 'application/json, application/*+json'],
    ['JSON only', { contentTypes: ['application/fhir+json'] }, 'application/fhir+json'],
    ['any type', { contentTypes: ['*/*'] }, '*/*'],
  ])('%s, no filter: one warning', async (_what, config, types) => {
    const { path, warnings } = await validate('http-to-mllp', { source: { type: 'http-listener', config: { port: 0, ...config } }, filters: [{ type: 'match', config: { jsonata: 'true' } }], destinations: [mllp] })
    expect(warnings).toEqual([warning(path, types)])
  })

  it.each([
    ['ER7 only', { contentTypes: ['x-application/hl7-v2+er7'] }, []],
    ['JSON turned into ER7', {}, [{ type: 'hl7v2', config: { to: 'er7' } }]],
  ])('%s: no warning', async (_what, config, filters) => {
    const { warnings } = await validate('http-er7-to-mllp', { source: { type: 'http-listener', config: { port: 0, ...config } }, filters, destinations: [mllp] })
    expect(warnings).toEqual([])
  })
})

// Finding: a file with an error showed none of its warnings (`if (problems.length) throw` came
// first), so fixing a typo brought a second round: the orderBy that would send every message to error.
describe('weir validate: a channel with errors still gets its warnings', () => {
  it('the warnings of the parts without problems come with the errors, exit 1', async () => {
    const path = join(scratch.dir, 'warn-and-fail.json')
    await writeFile(path, JSON.stringify({
      name: 'warn-and-fail', source: mllpSource,
      credentials: { api: { tokenUrl: 'http://auth.example.com/token', clientId: 'c', clientAuth: { secret: 'literal-secret-value' } } },
      destinations: [file, { name: 'api', type: 'http', config: { url: 'http://api.example.com/in', credential: 'api' } }, { name: 'broken', type: 'http', config: { url: 'http://broken.example.com/in', timeoutMs: 'soon' } }],
      options: { orderBy: 'PID-3.1', concurency: 4 },
    }))
    const r = await runCli(['validate', path], {})
    expect(r.code).toBe(1)
    const lines = r.err.trim().split('\n')
    const warnings = lines.filter((l) => l.startsWith('warning: '))
    expect(warnings).toEqual(expect.arrayContaining([
      `warning: ${path}#/credentials/api/clientAuth/secret: literal secret in the channel file; use {"$env": "NAME"} or {"$file": "path"}`,
      `warning: ${path}#/credentials/api/tokenUrl: http:// to a host that is not loopback: tokens, secrets and messages travel unencrypted; use https`,
      `warning: ${path}#/destinations/1/config/url: http:// to a host that is not loopback: tokens, secrets and messages travel unencrypted; use https`,
      expect.stringMatching(new RegExp(`^warning: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}#/options/orderBy: "PID-3.1" is not an HL7 terse path`)),
    ]))
    // The destination with a problem of its own is not read for warnings; the errors are all there.
    expect(warnings.some((w) => w.includes('/destinations/2'))).toBe(false)
    expect(lines.filter((l) => !l.startsWith('warning: ')).join('\n')).toMatch(/#\/destinations\/2\/config\/timeoutMs: must be integer\n.*#\/options\/concurency: unknown property/)
    expect(r.err).not.toContain('literal-secret-value')
  })
})
