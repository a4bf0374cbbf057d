// The OAuth commands as an operator uses them against a provider on 127.0.0.1: weir token always
// asks the token endpoint (a rotated client secret is checked for real), says where the token came
// from and what it waits for; weir credentials import refuses a credential that cannot use a refresh
// token; weir keys rotate calls a problem in the file exit 1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../_cli.ts'
import { createRefreshTokenStore } from '../../shared/oauth/index.ts'

const STORE_KEY = 'walkthrough-store-key'
let dir: string
let server: Server
let tokenUrl: string

/** The fake provider: counts token requests, checks the client secret, rotates refresh tokens; `unavailable` answers 503 with Retry-After 1. */
const provider = { requests: 0, refreshToken: 'rt-0', issued: 0, unavailable: false }

function answer(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

function tokenEndpoint(req: IncomingMessage, res: ServerResponse): void {
  let text = ''
  req.on('data', (c: Buffer) => (text += c))
  req.on('end', () => {
    provider.requests++
    const form = new URLSearchParams(text)
    if (provider.unavailable) return answer(res, 503, { error: 'temporarily_unavailable' }, { 'retry-after': '1' })
    if (form.get('client_id') !== 'app' || form.get('client_secret') !== 'right-secret') return answer(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' })
    if (form.get('grant_type') === 'refresh_token') {
      if (form.get('refresh_token') !== provider.refreshToken) return answer(res, 400, { error: 'invalid_grant' })
      provider.refreshToken = `rt-${++provider.issued}`
      return answer(res, 200, { access_token: `at-${provider.issued}`, token_type: 'Bearer', expires_in: 3600, refresh_token: provider.refreshToken })
    }
    answer(res, 200, { access_token: `cc-${++provider.issued}`, token_type: 'Bearer', expires_in: 3600 })
  })
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-walkthrough-'))
  server = createServer(tokenEndpoint)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  tokenUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
  await rm(dir, { recursive: true, force: true })
})

let n = 0
async function channelFile(credentials: Record<string, unknown>, raw?: string): Promise<string> {
  const file = join(dir, `ch-${++n}.json`)
  await writeFile(file, raw ?? JSON.stringify({
    name: 'walkthrough', credentials,
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
  }))
  return file
}

const refreshCred = (secret: string) => ({ grant: 'refresh_token', tokenUrl, clientId: 'app', clientAuth: { method: 'client_secret_post', secret: { $env: secret } } })
const env = { WEIR_SECRET_KEY: STORE_KEY, RIGHT: 'right-secret', WRONG: 'wrong-secret' }

describe('weir token', () => {
  it('asks the token endpoint on every run (rotating the refresh token in the store), and a wrong client secret fails with the endpoint\'s invalid_client', async () => {
    const dataDir = join(dir, 'data-token')
    await writeFile(join(dir, 'rt.txt'), 'rt-0\n')
    const file = await channelFile({ crm: refreshCred('RIGHT'), rotated: { ...refreshCred('WRONG'), storeKey: 'crm' } })
    expect((await runCli(['credentials', 'import', file, 'crm', '--refresh-token-file', join(dir, 'rt.txt'), '--data-dir', dataDir], env)).code).toBe(0)
    const before = provider.requests
    const first = await runCli(['token', file, 'crm', '--data-dir', dataDir], env)
const second = await runCli(['token', file, 'crm', '--data-dir', dataDir], env)
    expect([first.code, second.code, provider.requests - before]).toEqual([0, 0, 2])
    expect(second.out).toContain(`  source:  a new token from ${tokenUrl} (refresh_token grant; the rotated refresh token is stored as the engine stores it)`)
    const stored = await createRefreshTokenStore({ dir: join(dataDir, 'oauth'), key: STORE_KEY }).read('crm')
    expect(stored?.refreshToken).toBe(provider.refreshToken)

    // The rotated (wrong) client secret, same refresh token in the store: the endpoint says so.
    const wrong = await runCli(['token', file, 'rotated', '--data-dir', dataDir], { ...env })
    expect(wrong.code).toBe(1)
    expect(wrong.err).toContain('answered 401 invalid_client')
    expect(wrong.out + wrong.err).not.toContain('right-secret')
  })

  it('says on stderr what it waits for on 503 + Retry-After and gives up after --timeout, naming the last error', async () => {
    const file = await channelFile({ cc: { grant: 'client_credentials', tokenUrl, clientId: 'app', clientAuth: { method: 'client_secret_post', secret: { $env: 'RIGHT' } } } })
    provider.unavailable = true
    try {
      const started = Date.now()
      const r = await runCli(['token', file, 'cc', '--data-dir', join(dir, 'data-503'), '--timeout', '1500ms'], env)
      expect(r.code).toBe(1)
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(r.err).toContain(`weir token: token endpoint ${tokenUrl} answered 503 temporarily_unavailable; Retry-After 1 s: waiting 1 s (attempt 2 of 4)`)
      expect(r.err).toContain(`weir token: credential "cc": no token within 1500 ms; the last error: token endpoint ${tokenUrl} answered 503 temporarily_unavailable`)
    } finally {
      provider.unavailable = false
    }
  })
})

describe('weir credentials import', () => {
  it('refuses a credential whose grant never uses a refresh token, exit 1, storing nothing', async () => {
    await writeFile(join(dir, 'rt-cc.txt'), 'rt-x\n')
    const file = await channelFile({ cc: { grant: 'client_credentials', tokenUrl, clientId: 'app', clientAuth: { method: 'client_secret_post', secret: { $env: 'RIGHT' } } } })
    const r = await runCli(['credentials', 'import', file, 'cc', '--refresh-token-file', join(dir, 'rt-cc.txt'), '--data-dir', join(dir, 'data-cc')], env)
    expect([r.code, r.out]).toEqual([1, ''])
    expect(r.err).toContain('credential "cc" #/grant: weir credentials import stores a refresh token, which only the refresh_token grant uses: it needs grant refresh_token; this credential uses client_credentials')
    expect(await createRefreshTokenStore({ dir: join(dir, 'data-cc', 'oauth'), key: STORE_KEY }).read('cc')).toBeUndefined()
  })
})

describe('weir keys rotate', () => {
  it('a current key without kid is a problem in the file: exit 1', async () => {
    const file = await channelFile({ sf: { grant: 'jwt_bearer', tokenUrl, clientId: 'app', assertion: { alg: 'RS256', privateKey: { $file: 'x.pem' } } } })
    const before = await readFile(file, 'utf8')
    const r = await runCli(['keys', 'rotate', file, 'sf', '--assertion', '--delay', '0', '--kid', 'sf-2'], env)
    expect([r.code, r.err]).toEqual([1, expect.stringContaining('#/credentials/sf/assertion/kid: the current key has no kid')])
    expect(await readFile(file, 'utf8')).toBe(before)
  })
})

describe('weir keys rotate keeps the file\'s text', () => {
  it('changes only the rotated block of a compact one-line-per-credential file; every other byte stays', async () => {
    const keyFile = join(dir, 'sf-1.pem')
    const { generateKeyPairSync } = await import('node:crypto')
    await writeFile(keyFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
    const lines = [
      '{',
      '  "name": "compact",',
      '  "credentials": {',
      `    "cc": {"grant": "client_credentials", "tokenUrl": "${tokenUrl}", "clientId": "app", "clientAuth": {"method": "client_secret_post", "secret": {"$env": "RIGHT"}}},`,
      `    "sf": {"grant": "jwt_bearer", "tokenUrl": "${tokenUrl}", "clientId": "app", "assertion": {"alg": "RS256", "kid": "sf-1", "privateKey": {"$file": "sf-1.pem"}, "sub": "u@x"}},`,
      `    "other": {"grant": "client_credentials", "tokenUrl": "${tokenUrl}", "clientId": "app2", "clientAuth": {"method": "client_secret_post", "secret": {"$env": "RIGHT"}}}`,
      '  },',
      '  "source": {"type": "http-listener", "config": {"port": 0}},',
      `  "destinations": [{"name": "out", "type": "file", "config": {"directory": "${join(dir, 'out')}"}}]`,
      '}',
      '',
    ]
    const file = await channelFile({}, lines.join('\n'))
    const r = await runCli(['keys', 'rotate', file, 'sf', '--assertion', '--delay', '0', '--kid', 'sf-2'], env)
    expect(r.code).toBe(0)
    const after = (await readFile(file, 'utf8')).split('\n')
    expect(after.length).toBe(lines.length)
    expect(after.filter((l, i) => l !== lines[i])).toEqual([
      `    "sf": {"grant": "jwt_bearer", "tokenUrl": "${tokenUrl}", "clientId": "app", "assertion": {"alg": "RS256", "sub": "u@x", "keys": [{"kid": "sf-1", "privateKey": {"$file": "sf-1.pem"}}, {"kid": "sf-2", "privateKey": {"$file": "sf-2.private.pem"}, "signFrom": ${JSON.stringify(JSON.parse(after[4]!.slice(10, -1)).assertion.keys[1].signFrom)}}]}},`,
    ])
  })

  it('an indented file keeps its indentation (4 spaces here) around the rotated block', async () => {
    const keyFile = join(dir, 'ep-1.pem')
    const { generateKeyPairSync } = await import('node:crypto')
    await writeFile(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
    const data = {
      name: 'indented',
      credentials: { epic: { tokenUrl, clientId: 'app', clientAuth: { method: 'private_key_jwt', alg: 'ES384', kid: 'ep-1', privateKey: { $file: 'ep-1.pem' } } } },
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
    }
    const file = await channelFile({}, JSON.stringify(data, null, 4) + '\n')
    expect((await runCli(['keys', 'rotate', file, 'epic', '--delay', '0', '--kid', 'ep-2'], env)).code).toBe(0)
    const text = await readFile(file, 'utf8')
    const parsed = JSON.parse(text)
    expect(text).toBe(JSON.stringify(parsed, null, 4) + '\n')
    expect(parsed.credentials.epic.clientAuth.keys.map((k: { kid: string }) => k.kid)).toEqual(['ep-1', 'ep-2'])
  })
})
