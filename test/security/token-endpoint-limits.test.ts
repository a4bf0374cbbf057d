import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../_cli.ts'
import { tempDir, until } from '../_setup.ts'
import { createTokenProvider, discover, TokenCache } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'

const MB = 1024 * 1024
const STREAMED = 50 * MB

// A token endpoint and issuer misbehaving on purpose: a 50 MB body (streamed with backpressure, so
// `sent` counts what the client really took), an absurd lifetime, an error text with escape sequences.
let server: Server
let origin: string
let sent = 0
let closed = false
let closedEarly = false
let d: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => {
  d = await tempDir('weir-sec-token-')
  server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const path = req.url ?? ''
      if (path === '/huge/token' || path === '/.well-known/oauth-authorization-server/huge') return streamHuge(res)
      res.setHeader('content-type', 'application/json')
      if (path === '/forever/token') return res.end(JSON.stringify({ access_token: 'forever-token-value', token_type: 'Bearer', expires_in: 1e300 }))
      res.statusCode = 400
      res.end(JSON.stringify({ error: `invalid_client\x1b[2J${'x'.repeat(500)}`, error_description: 'no\x1b]0;pwned\x07 such client\r\nforged: log line' }))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
  await d.cleanup()
})

function streamHuge(res: import('node:http').ServerResponse) {
  sent = 0
  closed = false
  closedEarly = false
  res.setHeader('content-type', 'application/json')
  const chunk = Buffer.alloc(64 * 1024, 'a')
  res.on('close', () => { closed = true; closedEarly = sent < STREAMED })
  const pump = () => {
    while (sent < STREAMED && !res.destroyed) {
      sent += chunk.length
      if (!res.write(chunk)) return void res.once('drain', pump)
    }
    if (!res.destroyed) res.end()
  }
  pump()
}

const provider = (path: string) => createTokenProvider('huge', {
  tokenUrl: `${origin}${path}`, clientId: 'c', clientAuth: { method: 'client_secret_post', secret: new Secret('client-secret-value') }, maxAttempts: 1,
}, { cache: new TokenCache() })

describe('token endpoint and discovery responses are read only up to 1 MiB', () => {
  it('a 50 MB token response: reading stops past 1 MiB, the connection is dropped, memory stays bounded', async () => {
    const p = provider('/huge/token')
    global.gc?.()
    const before = process.memoryUsage().rss
    const err = await p.getToken().catch((e) => e)
    const growth = process.memoryUsage().rss - before
    await p.close()
    expect([err.code, err.message]).toEqual(['ERR_OAUTH_RESPONSE', `token endpoint ${origin}/huge/token answered 200 with a body over 1048576 bytes; stopped reading it`])
    await until(() => closed, 10_000, 'the server sees the connection close')
    expect(closedEarly).toBe(true)
    // What the client took, plus socket buffers; far below the 50 MB the server had to give.
    expect(sent).toBeLessThan(16 * MB)
    expect(growth).toBeLessThan(40 * MB)
  })

  it('a 50 MB discovery document: reading stops past 1 MiB', async () => {
    const err = await discover(`${origin}/huge`).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_OAUTH_DISCOVERY', `issuer discovery at ${origin}/.well-known/oauth-authorization-server/huge answered 200 with a body over 1048576 bytes; stopped reading it`])
    await until(() => closed, 10_000, 'the server sees the connection close')
    expect(closedEarly).toBe(true)
    expect(sent).toBeLessThan(16 * MB)
  })
})

describe('absurd lifetimes and hostile error text', () => {
  async function channel(path: string): Promise<string> {
    const file = join(d.dir, `ch${path.replace(/\W/g, '-')}.json`)
    await writeFile(file, JSON.stringify({
      name: 'sec-token',
      credentials: { api: { tokenUrl: `${origin}${path}`, clientId: 'c', clientAuth: { method: 'client_secret_post', secret: { $env: 'SECRET' } } } },
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }],
    }))
    return file
  }

  it('expires_in 1e300 is clamped to one year: weir token prints the expiry instead of crashing', async () => {
    const r = await runCli(['token', await channel('/forever/token'), 'api', '--json', '--data-dir', join(d.dir, 'data')], { SECRET: 'client-secret-value' })
    expect([r.code, r.err]).toEqual([0, ''])
    expect(JSON.parse(r.out).expiresInSec).toBeGreaterThan(365 * 24 * 3600 - 60)
    expect(JSON.parse(r.out).expiresInSec).toBeLessThanOrEqual(365 * 24 * 3600)
  })

  it("the server's error code and description are cut and their control characters escaped before printing", async () => {
    const r = await runCli(['token', await channel('/broken/token'), 'api', '--data-dir', join(d.dir, 'data')], { SECRET: 'client-secret-value' })
    expect(r.code).toBe(1)
    const first = r.err.split('\n')[0]!
    expect(first).not.toMatch(/[\x00-\x1f]/)
    expect(first).toContain('answered 400 invalid_client\\x1b[2Jxxx')
    expect(first).toContain('no\\x1b]0;pwned\\x07 such client forged: log line')
    expect(first.length).toBeLessThan(500)
  })
})
