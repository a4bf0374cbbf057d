import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { spawnSync } from 'node:child_process'
import { join, resolve } from 'node:path'
import { runCli } from '../_cli.ts'
import { tempDir } from '../_setup.ts'

// Finding: `weir validate` said nothing about http:// token, JWKS and API URLs to other hosts, nor
// about a listener on 0.0.0.0 without authentication or TLS.
let d: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { d = await tempDir('weir-sec-validate-') })
afterAll(async () => { await d.cleanup() })

async function channel(name: string, body: Record<string, unknown>): Promise<string> {
  const file = join(d.dir, `${name}.json`)
  await writeFile(file, JSON.stringify({ name, ...body }))
  return file
}

const credential = (tokenUrl: string) => ({ tokenUrl, clientId: 'c', clientAuth: { method: 'client_secret_post', secret: { $env: 'S' } } })

describe('weir validate warns about clear-text transport (stderr, exit 0)', () => {
  it('http:// token, JWKS, issuer and API URLs to hosts that are not loopback, each by JSON pointer', async () => {
    const file = await channel('cleartext', {
      credentials: { api: credential('http://login.example.org/token'), local: credential('http://127.0.0.1:8080/token') },
      source: { type: 'http-listener', config: { port: 0, jwt: { issuer: 'http://idp.example.org', audience: 'weir', jwksUrl: 'http://idp.example.org/jwks' } } },
      destinations: [
        { name: 'out', type: 'http', config: { url: 'http://fhir.example.org/Patient', credential: 'api' } },
        { name: 'dev', type: 'http', config: { url: 'http://localhost:9000/in', credential: 'local' } },
        { name: 'safe', type: 'http', config: { url: 'https://fhir.example.org/Patient', credential: 'api' } },
      ],
    })
    const r = await runCli(['validate', file, '--quiet'], { S: 'x' })
    expect(r.code).toBe(0)
    const why = 'http:// to a host that is not loopback: tokens, secrets and messages travel unencrypted; use https'
    expect(r.err.trim().split('\n').sort()).toEqual([
      `warning: ${file}#/credentials/api/tokenUrl: ${why}`,
      `warning: ${file}#/destinations/0/config/url: ${why}`,
      `warning: ${file}#/source/config/jwt/issuer: ${why}`,
      `warning: ${file}#/source/config/jwt/jwksUrl: ${why}`,
    ].sort())
  })

  it.each([
    [{}, 'authentication (jwt or apiKey) or TLS: anyone who can reach the port can send messages'],
    [{ apiKey: { value: { $env: 'S' } } }, 'TLS: anyone who can reach the port can read what is sent'],
  ])('host 0.0.0.0 with %j', async (extra, message) => {
    const file = await channel('open', {
      source: { type: 'http-listener', config: { port: 0, host: '0.0.0.0', ...extra } },
      destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }],
    })
    const r = await runCli(['validate', file, '--quiet'], { S: 'x' })
    expect([r.code, r.err]).toEqual([0, `warning: ${file}#/source/config/host: listens on all interfaces without ${message}\n`])
  })

  it('names the file as it was given, in every warning (a relative path stays relative)', async () => {
    await channel('mixed', {
      credentials: { api: { tokenUrl: 'https://login.example.org/token', clientId: 'c', clientAuth: { method: 'client_secret_post', secret: 'literal' } } },
      source: { type: 'http-listener', config: { port: 0, host: '0.0.0.0' } },
      destinations: [{ name: 'out', type: 'http', config: { url: 'http://fhir.example.org/Patient', credential: 'api' } }],
    })
    const r = spawnSync(process.execPath, [resolve('bin/weir.js'), 'validate', 'mixed.json', '--quiet'], { cwd: d.dir, encoding: 'utf8', env: { PATH: process.env.PATH } })
    expect(r.status).toBe(0)
    const files = r.stderr.trim().split('\n').map((l) => /^warning: ([^#]*)#/.exec(l)?.[1])
    expect(files).toEqual(['mixed.json', 'mixed.json', 'mixed.json'])
  })

  it('a loopback listener and https URLs give no warning', async () => {
    const file = await channel('quiet', {
      credentials: { api: credential('https://login.example.org/token') },
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'out', type: 'http', config: { url: 'https://fhir.example.org/Patient', credential: 'api' } }],
    })
    expect(await runCli(['validate', file, '--quiet'], { S: 'x' })).toEqual({ code: 0, out: '', err: '' })
  })
})

describe('weir validate warns about an mllp destination fed JSON (stderr, exit 0)', () => {
  const mllp = { name: 'lab', type: 'mllp', config: { host: '127.0.0.1', port: 2575 } }
  const source = { type: 'mllp-listener', config: { port: 0 } }
  const toJson = { type: 'hl7v2', config: { to: 'json' } }
  const toFhir = { type: 'map', config: { jsonata: "{ 'resourceType': 'Patient' }" } }

  it('a map to JSON last before an mllp destination: one warning naming both pointers', async () => {
    const file = await channel('json-to-mllp', { source, filters: [toJson, toFhir, { type: 'match', config: { jsonata: 'true' } }], destinations: [mllp] })
    const r = await runCli(['validate', file, '--quiet'], {})
    expect([r.code, r.err]).toEqual([0, `warning: ${file}#/destinations/0: mllp sends ER7 text, but the map filter at /filters/1 leaves JSON: every message would go to error; add { "type": "hl7v2", "config": { "to": "er7" } } after it (or deliver the JSON with an http destination)\n`])
  })

  it.each([
    ['no filter (ER7 passes through)', []],
    ['hl7v2 back to er7 after the map', [toJson, toFhir, { type: 'hl7v2', config: { to: 'er7' } }]],
    ['a map whose result is text', [toJson, { type: 'map', config: { jsonata: "'MSH|^~\\\\&|A'", contentType: 'x-application/hl7-v2+er7' } }]],
  ])('%s: no warning', async (_what, filters) => {
    const file = await channel('er7-to-mllp', { source, filters, destinations: [mllp] })
    expect(await runCli(['validate', file, '--quiet'], {})).toEqual({ code: 0, out: '', err: '' })
  })
})
