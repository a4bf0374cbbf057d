import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../_cli.ts'
import { tempDir } from '../_setup.ts'

// Finding: weir validate reported a channel's problems in stages: first the schema problems of a
// component's config, only once those were fixed the secret files that config names and the
// credential it names, and only once the channel loaded the names its test file gives. A user fixing
// a channel ran it again and again. Every problem a run can find is now reported by that run.
let scratch: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { scratch = await tempDir('weir-validate-all-at-once-') })
afterAll(async () => { await scratch.cleanup() })

const write = async (name: string, data: unknown) => {
  const path = join(scratch.dir, name)
  await writeFile(path, typeof data === 'string' ? data : JSON.stringify(data, null, 2))
  return path
}

/** A channel with a CRM credential, an http destination using it and an mllp destination, each value as `over` replaces it. */
const channel = (over: { secretFile?: string; timeoutMs?: unknown; credential?: string; keyFile?: string } = {}) => ({
  name: 'orders',
  credentials: { crm: { tokenUrl: 'https://login.orders.example/oauth2/token', clientId: 'weir-orders', clientAuth: { method: 'client_secret_post', secret: { $file: over.secretFile ?? 'crm-secret.txt' } }, scope: 'orders.write' } },
  source: { type: 'http-listener', config: { port: 7998, path: '/orders', contentTypes: ['x-application/hl7-v2+er7'] } },
  destinations: [
    { name: 'api', type: 'http', config: { url: 'https://api.orders.example/v1/orders', method: 'POST', credential: over.credential ?? 'crm', timeoutMs: over.timeoutMs ?? 5000, secretHeaders: { 'x-api-key': { $file: over.keyFile ?? 'api-key.txt' } } } },
    { name: 'lab', type: 'mllp', config: { host: '127.0.0.1', port: 2575 } },
  ],
})

/** A test file of `channelFile` registering `client` and scripting the mllp destination `mllp`. */
const testFile = (channelFile: string, client: string, mllp: string) => ({
  channel: channelFile,
  server: { clients: { [client]: { scopes: ['orders.write'] } } },
  mllp: { destinations: { [mllp]: { answers: [{ ack: 'AE' }] } } },
  cases: [{ name: 'one', steps: [{ send: { body: 'MSH|^~\\&|A', contentType: 'x-application/hl7-v2+er7' } }], expect: {} }],
})

/** weir validate --quiet on `files`: exit status and the lines it printed, the path of the scratch directory written as `<dir>`. */
async function validate(...files: string[]): Promise<{ code: number; lines: string[] }> {
  const r = await runCli(['validate', ...files, '--quiet'], {})
  expect(r.out).toBe('')
  return { code: r.code, lines: r.err.trim().split('\n').map((l) => l.replaceAll(scratch.dir, '<dir>')) }
}

describe('weir validate: every problem in one run', () => {
  beforeAll(async () => {
    await write('crm-secret.txt', 'test-material:crm-secret\n')
  })

  it('a channel with a schema problem, a missing $file secret and an unknown credential in that config, and a test file with an unknown client and mllp destination: all of them, each at its pointer', async () => {
    // The http destination's config has a schema problem (timeoutMs); the secret file its header
    // names and the credential it names are wrong too; the credential's own secret file is missing.
    const ch = await write('broken.json', channel({ secretFile: 'missing-crm-secret.txt', timeoutMs: 'slow', credential: 'cmr' }))
    const t = await write('broken.test.json', testFile('broken.json', 'cmr', 'labb'))
    const secret = '<dir>/broken.json#/credentials/crm/clientAuth/secret: secret file "missing-crm-secret.txt" not found (looked for <dir>/missing-crm-secret.txt)'
    const schema = '<dir>/broken.json#/destinations/0/config/timeoutMs: must be integer'
    const header = '<dir>/broken.json#/destinations/0/config/secretHeaders/x-api-key: secret file "api-key.txt" not found (looked for <dir>/api-key.txt)'
    const credential = '<dir>/broken.json#/destinations/0/config/credential: unknown credential "cmr"; did you mean "crm"?; defined: crm'
    // By file (the one checked first), then in the order of the file.
    const channelLines = [secret, credential, schema, header]
    expect(await validate(ch)).toEqual({ code: 1, lines: [...channelLines, '0 valid, 1 invalid'] })
    expect(await validate(t)).toEqual({
      code: 1,
      lines: [
        '<dir>/broken.test.json#/server/clients/cmr: the channel has no OAuth credential "cmr"; did you mean "crm"? (its OAuth credentials: "crm")',
        '<dir>/broken.test.json#/mllp/destinations/labb: the channel has no mllp destination "labb" (its mllp destinations: "lab")',
        ...channelLines,
        '0 valid, 1 invalid',
      ],
    })

    // Fixing what was reported leaves nothing to report.
    await write('api-key.txt', 'test-material:api-key\n')
    await write('fixed.json', channel())
    const fixed = await write('fixed.test.json', testFile('fixed.json', 'crm', 'lab'))
    expect(await validate(fixed)).toEqual({ code: 0, lines: [''] })
  })

  it('the test file\'s own schema problems do not hide its channel\'s', async () => {
    await write('typo.json', channel({ timeoutMs: 'slow', keyFile: 'crm-secret.txt' }))
    const t = await write('typo.test.json', { ...testFile('typo.json', 'crm', 'lab'), sever: {} })
    expect(await validate(t)).toEqual({
      code: 1,
      lines: [
        '<dir>/typo.test.json#/sever: unknown property "sever" (did you mean "server"?)',
        '<dir>/typo.json#/destinations/0/config/timeoutMs: must be integer',
        '0 valid, 1 invalid',
      ],
    })
  })

  it('a channel that does not parse: its JSON problem only, nothing said of the names its test file gives', async () => {
    await write('unparsed.json', '{ "name": "orders", }')
    const t = await write('unparsed.test.json', testFile('unparsed.json', 'cmr', 'labb'))
    expect(await validate(t)).toEqual({ code: 1, lines: [expect.stringMatching(/^<dir>\/unparsed\.json#: invalid JSON at line 1, column 21: /), '0 valid, 1 invalid'] })
  })
})
