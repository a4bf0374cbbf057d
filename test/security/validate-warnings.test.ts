import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
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

  it('a loopback listener and https URLs give no warning', async () => {
    const file = await channel('quiet', {
      credentials: { api: credential('https://login.example.org/token') },
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'out', type: 'http', config: { url: 'https://fhir.example.org/Patient', credential: 'api' } }],
    })
    expect(await runCli(['validate', file, '--quiet'], { S: 'x' })).toEqual({ code: 0, out: '', err: '' })
  })
})
