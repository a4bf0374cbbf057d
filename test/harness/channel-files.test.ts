import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'
import { runCli } from '../_cli.ts'

const DIR = mkdtempSync(join(tmpdir(), 'weir-harness-files-'))
const write = (name: string, data: unknown) => {
  const p = join(DIR, name)
  mkdirSync(resolve(p, '..'), { recursive: true })
  writeFileSync(p, typeof data === 'string' ? data : JSON.stringify(data))
  return p
}

// Stands for the real provider a channel names: a case must never reach it.
let decoy: Server
let decoyUrl = ''
let decoyHits = 0
beforeAll(async () => {
  decoy = createServer((req, res) => { decoyHits++; req.resume(); res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_client","error_description":"the real provider"}') })
  await new Promise<void>((r) => decoy.listen(0, '127.0.0.1', r))
  decoyUrl = `http://127.0.0.1:${(decoy.address() as AddressInfo).port}`
})
afterAll(async () => {
  decoy.closeAllConnections()
  await new Promise((r) => decoy.close(r))
  rmSync(DIR, { recursive: true, force: true })
})

const channel = (extra: Record<string, unknown>) => ({
  name: 'orders',
  source: { type: 'http-listener', config: { port: 7999, path: '/orders' } },
  destinations: [{ name: 'api', type: 'http', config: { url: 'https://api.orders.example/v1/orders', method: 'POST', credential: 'crm' }, retry: { maxAttempts: 1 } }],
  ...extra,
})
const secretCred = () => ({ tokenUrl: `${decoyUrl}/oauth2/token`, clientId: 'weir-test-orders', clientAuth: { method: 'client_secret_post', secret: { $file: 'orders-secret.txt' } }, scope: 'orders.write' })
const api = [{ method: 'POST', path: '/v1/orders', answers: [{ status: 201 }] }]
const delivered = { name: 'delivered with a token from the embedded server', steps: [{ send: { body: { id: 1 } } }], expect: { requestCount: 1, messages: [{ status: 'delivered' }], tokenRequests: { credential: 'crm', count: 1, authMethod: 'client_secret_post' } } }
const failures = async (testFile: string) => (await runChannelTest(testFile)).cases.map((c) => c.failures)

describe('a channel whose credentials come from a "credentialsFile"', () => {
  it('runs against the embedded authorization server, never the token URL in the file; $file paths stay relative to that file', async () => {
    // The secret lives beside the credentials file only: a path resolved against the channel would not find it.
    write('shared/orders-secret.txt', 'test-material:orders-secret\n')
    write('shared/creds.json', { crm: secretCred() })
    const ch = write('cf/channel.json', channel({ credentialsFile: '../shared/creds.json' }))
    const t = write('cf/channel.test.json', { channel: ch, api, cases: [delivered] })
    decoyHits = 0
    expect(await failures(t)).toEqual([[]])
    expect(decoyHits).toBe(0)
  })

  it('a credential named both in the channel and in the file is an error, as when the engine loads it', async () => {
    write('shared/orders-secret.txt', 'test-material:orders-secret\n')
    write('shared/creds.json', { crm: secretCred() })
    const ch = write('clash/channel.json', channel({ credentialsFile: '../shared/creds.json', credentials: { crm: { grant: 'static', token: 'test-material' } } }))
    const t = write('clash/channel.test.json', { channel: ch, api, cases: [delivered] })
    expect(await failures(t)).toEqual([[`${ch}#/credentials/crm: credential "crm" is also defined in ${join(DIR, 'shared/creds.json')}; use one`]])
  })

  it('a missing credentials file fails every case, naming the file', async () => {
    const ch = write('missing/channel.json', channel({ credentialsFile: 'nope.json' }))
    const t = write('missing/channel.test.json', { channel: ch, api, cases: [delivered, { ...delivered, name: 'second' }] })
    expect(await failures(t)).toEqual([[`${join(DIR, 'missing/nope.json')}#: credentials file not found`], [`${join(DIR, 'missing/nope.json')}#: credentials file not found`]])
  })
})

describe('tokenRequests expectations over no requests', () => {
  write('inline/orders-secret.txt', 'test-material:orders-secret\n')
  // Once the decoy listens: a channel written before would name no valid token URL.
  let ch = ''
  beforeAll(() => { ch = write('inline/channel.json', channel({ credentials: { crm: secretCred() } })) })
  const idle = { steps: [{ waitMs: 0 }] }

  it('"grant", "authMethod", "scope" and "assertion" fail when no token was fetched, unless "count" says none', async () => {
    const t = write('inline/none.test.json', {
      channel: ch, api,
      cases: [
        { name: 'assertion', ...idle, expect: { tokenRequests: { assertion: { header: { alg: 'RS384' } } } } },
        { name: 'all four, for a credential', ...idle, expect: { tokenRequests: [{ credential: 'crm', grant: 'client_credentials', authMethod: 'client_secret_post', scope: 'orders', assertion: { claims: {} } }] } },
        { name: 'count 0', ...idle, expect: { tokenRequests: { count: 0, grant: 'client_credentials', assertion: { header: { alg: 'RS384' } } } } },
      ],
    })
    const hint = '(give "count": 0 to expect none)'
    expect(await failures(t)).toEqual([
      [`expect.tokenRequests.assertion: no token request was made, so there is none to check ${hint}`],
      [
        `expect.tokenRequests[0].grant: no token request for "crm" was made, so there is none to check ${hint}`,
        `expect.tokenRequests[0].assertion: no token request for "crm" was made, so there is none to check ${hint}`,
        `expect.tokenRequests[0].authMethod: no token request for "crm" was accepted, so there is none to check ${hint}`,
        `expect.tokenRequests[0].scope: no token request for "crm" was accepted, so there is none to check ${hint}`,
      ],
      [],
    ])
  })

  it('"authMethod" and "scope" fail when every token request was refused', async () => {
    const t = write('inline/refused.test.json', {
      channel: ch, api, server: { clients: { crm: { secret: 'test-material:rotated' } } },
      cases: [{ name: 'refused', steps: [{ send: { body: { id: 1 } } }], expect: { messages: [{ status: 'retrying' }], tokenRequests: { authMethod: 'client_secret_post', scope: 'orders' } } }],
    })
    const [f] = await failures(t)
    expect(f!.slice(0, 2)).toEqual([
      'expect.tokenRequests.authMethod: no token request was accepted, so there is none to check (1 refused)',
      'expect.tokenRequests.scope: no token request was accepted, so there is none to check (1 refused)',
    ])
  })
})

describe('server.clients', () => {
  write('clients/orders-secret.txt', 'test-material:orders-secret\n')
  let ch = ''
  beforeAll(() => { ch = write('clients/channel.json', channel({ credentials: { crm: secretCred() } })) })
  const registered = { name: 'registered scopes only', steps: [{ send: { body: { id: 1 } } }], expect: { messages: [{ status: 'delivered' }] } }

  it('a registration restricts the credential it names', async () => {
    const t = write('clients/right.test.json', { channel: ch, api, server: { clients: { crm: { scopes: ['orders.read'] } } }, cases: [registered] })
    const [f] = await failures(t)
    expect(f![0]).toMatch(/^message 1: status retrying, expected delivered .*invalid_scope/)
  })

  it('a name the channel has no OAuth credential for (the file\'s or a case\'s) fails the case at its JSON pointer, naming those it has', async () => {
    const t = write('clients/typo.test.json', {
      channel: ch, api, server: { clients: { cmr: { scopes: ['orders.read'] } } },
      cases: [registered, { ...registered, name: 'case typo', server: { clients: { 'c/rm': { secret: 'x' } } } }],
    })
    const problem = (at: string, name: string) => `${t}#${at}: the channel has no OAuth credential "${name}"; did you mean "crm"? (its OAuth credentials: "crm")`
    expect(await failures(t)).toEqual([
      [problem('/server/clients/cmr', 'cmr')],
      [problem('/server/clients/cmr', 'cmr'), problem('/cases/1/server/clients/c~1rm', 'c/rm')],
    ])
    // weir validate reports the same, each once, before any case runs.
    const v = await runCli(['validate', t, '--quiet'])
    expect([v.code, v.err.trim().split('\n')]).toEqual([1, [problem('/server/clients/cmr', 'cmr'), problem('/cases/1/server/clients/c~1rm', 'c/rm'), '0 valid, 1 invalid']])
  })
})

describe('a channel that cannot be read', () => {
  it('names the file as displayPath does and gives the errno code', async () => {
    const t = write('unreadable/missing.test.json', { channel: 'missing.json', api, cases: [delivered] })
    expect(await failures(t)).toEqual([[`cannot read channel ${join(DIR, 'unreadable/missing.json')} (ENOENT)`]])
    mkdirSync(join(DIR, 'unreadable/dir.json'), { recursive: true })
    const d = write('unreadable/dir.test.json', { channel: 'dir.json', api, cases: [delivered] })
    expect(await failures(d)).toEqual([[`cannot read channel ${join(DIR, 'unreadable/dir.json')} (EISDIR)`]])
  })

  it('invalid JSON is reported against the path displayPath gives (absolute outside the working directory)', async () => {
    write('unreadable/bad.json', '{ "name": ')
    const t = write('unreadable/bad.test.json', { channel: 'bad.json', api, cases: [delivered] })
    const [[reason]] = await failures(t) as [[string]]
    expect(reason.startsWith(`${join(DIR, 'unreadable/bad.json')}#: invalid JSON at line 1`)).toBe(true)
  })
})
