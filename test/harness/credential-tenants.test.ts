import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadChannel } from '../../engine/load.ts'
import { runChannelTest, unknownClientsOfFile } from '../../engine/harness/run.ts'
import { loadTestFile } from '../../engine/harness/test-file.ts'
import { runCli } from '../_cli.ts'

// Each token endpoint a channel names is a tenant of the embedded authorization server: one client
// id at two endpoints (two providers, or two tenants of one) is two clients with their own secrets.
const DIR = mkdtempSync(join(tmpdir(), 'weir-harness-tenants-'))
afterAll(() => rmSync(DIR, { recursive: true, force: true }))
const write = (name: string, data: unknown) => {
  const p = join(DIR, name)
  mkdirSync(resolve(p, '..'), { recursive: true })
  writeFileSync(p, typeof data === 'string' ? data : JSON.stringify(data))
  return p
}
write('east-secret.txt', 'test-material:east-secret\n')
write('west-secret.txt', 'test-material:west-secret\n')

/** A credential of client `weir-test-shared`: its own secret, at `tokenUrl` or discovered from `issuer`. */
const cred = (secretFile: string, endpoint: { tokenUrl: string } | { issuer: string }, method = 'client_secret_post') =>
  ({ ...endpoint, clientId: 'weir-test-shared', clientAuth: { method, secret: { $file: secretFile } }, scope: 'orders.write' })
const destination = (name: string, credential: string) =>
  ({ name, type: 'http', config: { url: `https://api.orders.example/v1/${name}`, method: 'POST', credential }, retry: { initialDelayMs: 100 } })
const channel = (credentials: Record<string, unknown>) => ({
  name: 'orders',
  credentials,
  source: { type: 'http-listener', config: { port: 7997, path: '/orders' } },
  destinations: [destination('east', 'east'), destination('west', 'west')],
})
const twoProviders = write('two-providers.json', channel({
  east: cred('east-secret.txt', { tokenUrl: 'https://login.east.example/oauth2/token' }),
  west: cred('west-secret.txt', { tokenUrl: 'https://login.west.example/oauth2/token' }),
}))
const api = [{ method: 'POST', path: '/v1/east', answers: [{ status: 201 }] }, { method: 'POST', path: '/v1/west', answers: [{ status: 201 }] }]
const send = [{ send: { body: { id: 1 } } }]
const bothDelivered = { status: 'delivered', destinations: { east: 'delivered', west: 'delivered' } }

const failuresOf = async (file: string) => (await runChannelTest(file)).cases.map((c) => c.failures)

describe('weir test: one client id at two token endpoints', () => {
  it('two credentials of one client id with different secrets and token URLs both deliver, each counted as its own', async () => {
    const t = write('two-providers.test.json', {
      channel: 'two-providers.json', api,
      cases: [{
        name: 'both deliver', steps: send,
        expect: {
          messages: [bothDelivered],
          tokenRequests: [
            { credential: 'east', count: 1, errors: 0 },
            { credential: 'west', count: 1, errors: 0 },
          ],
        },
      }],
    })
    expect(await failuresOf(t)).toEqual([[]])
  })

  it('so do two discovered from two issuers', async () => {
    write('two-issuers.json', channel({
      east: cred('east-secret.txt', { issuer: 'https://login.example/tenants/east' }),
      west: cred('west-secret.txt', { issuer: 'https://login.example/tenants/west' }, 'client_secret_basic'),
    }))
    const t = write('two-issuers.test.json', {
      channel: 'two-issuers.json', api,
      cases: [{
        name: 'both deliver', steps: send,
        expect: { messages: [bothDelivered], tokenRequests: [{ credential: 'east', count: 1, errors: 0, authMethod: 'client_secret_post' }, { credential: 'west', count: 1, errors: 0, authMethod: 'client_secret_basic' }] },
      }],
    })
    expect(await failuresOf(t)).toEqual([[]])
  })

  it('a secret registered for one of them (server.clients) leaves the other\'s registration alone', async () => {
    const t = write('one-rotated.test.json', {
      channel: 'two-providers.json', api, server: { clients: { west: { secret: 'test-material:rotated' } } },
      cases: [{
        name: 'west refused', steps: send,
        expect: {
          messages: [{ status: 'retrying', destinations: { east: 'delivered', west: 'retrying' } }],
          tokenRequests: [{ credential: 'east', count: 1, errors: 0 }, { credential: 'west', count: 1, errors: 1, error: '^invalid_client: client secret mismatch$' }],
        },
      }],
    })
    expect(await failuresOf(t)).toEqual([[]])
  })
})

describe('weir test: two credentials of one client id at one token endpoint', () => {
  it('are one client, as at the provider: they share one rotating refresh token (one storeKey), and their requests count together', async () => {
    const refresh = (scope: string) => ({ grant: 'refresh_token', tokenUrl: 'https://auth.crm.example/oauth2/token', clientId: 'weir-test-shared', clientAuth: { method: 'client_secret_post', secret: { $file: 'east-secret.txt' } }, storeKey: 'crm', scope })
    write('one-client.json', { ...channel({ east: refresh('orders.write'), west: refresh('refunds.write') }) })
    const scopes = ['orders.write', 'refunds.write']
    const t = write('one-client.test.json', {
      channel: 'one-client.json', api, server: { clients: { east: { importRefreshToken: true, scopes }, west: { scopes } } },
      cases: [{
        name: 'both deliver', steps: send,
        expect: { messages: [bothDelivered], tokenRequests: [{ count: 2, grant: 'refresh_token', errors: 0, spentRefreshTokens: 0 }, { credential: 'east', count: 2 }] },
      }],
    })
    expect(await failuresOf(t)).toEqual([[]])
  })
})

describe('weir test: tokenFailures for one credential', () => {
  it('hit only that credential\'s token requests; a 401 answers invalid_client', async () => {
    const t = write('west-fault.test.json', {
      channel: 'two-providers.json', api,
      cases: [{
        name: 'west refused', steps: send,
        tokenFailures: [{ status: 401, count: 100, credential: 'west' }],
        expect: {
          messages: [{ status: 'retrying', destinations: { east: 'delivered', west: 'retrying' }, error: 'answered 401 invalid_client' }],
          tokenRequests: [{ credential: 'east', count: 1, errors: 0 }, { credential: 'west', count: 1, errors: 1 }],
        },
      }],
    })
    expect(await failuresOf(t)).toEqual([[]])
  })

  it('without "credential", a fault hits whichever credential asks', async () => {
    const t = write('any-fault.test.json', {
      channel: 'two-providers.json', api,
      cases: [{ name: 'both refused', steps: send, tokenFailures: [{ status: 401, count: 100 }], expect: { messages: [{ status: 'retrying', destinations: { east: 'retrying', west: 'retrying' } }], tokenRequests: { count: 2, errors: 2 } } }],
    })
    expect(await failuresOf(t)).toEqual([[]])
  })
})

describe('credential names in tokenRequests and tokenFailures', () => {
  const typos = {
    channel: 'two-providers.json', api,
    cases: [
      { name: 'list', steps: send, tokenFailures: [{ status: 503, credential: 'east' }, { status: 503, credential: 'wset' }], expect: { tokenRequests: [{ credential: 'east', count: 2 }, { credential: 'esat' }] } },
      { name: 'one', steps: send, expect: { tokenRequests: { credential: 'crm' } } },
    ],
  }
  const known = '(its OAuth credentials: "east", "west")'
  const at = (file: string, pointer: string, message: string) => `${file}#${pointer}: the channel has no OAuth credential ${message} ${known}`

  it('an unknown name is a problem at its JSON pointer, with the nearest known name: weir test fails the case with it', async () => {
    const t = write('typos.test.json', typos)
    expect(await failuresOf(t)).toEqual([
      [at(t, '/cases/0/expect/tokenRequests/1/credential', '"esat"; did you mean "east"?'), at(t, '/cases/0/tokenFailures/1/credential', '"wset"; did you mean "west"?')],
      [at(t, '/cases/1/expect/tokenRequests/credential', '"crm"')],
    ])
  })

  it('weir validate reports each of them before any case runs', async () => {
    const t = write('typos-validate.test.json', typos)
    const problems = unknownClientsOfFile(await loadTestFile(t), await loadChannel(twoProviders))
    expect(problems.map((p) => p.pointer)).toEqual(['/cases/0/expect/tokenRequests/1/credential', '/cases/0/tokenFailures/1/credential', '/cases/1/expect/tokenRequests/credential'])
    const v = await runCli(['validate', t, '--quiet'])
    expect(v.code).toBe(1)
    expect(v.err).toContain(at(t, '/cases/0/expect/tokenRequests/1/credential', '"esat"; did you mean "east"?'))
    expect(v.err).toContain(at(t, '/cases/0/tokenFailures/1/credential', '"wset"; did you mean "west"?'))
    expect(v.err).toContain(at(t, '/cases/1/expect/tokenRequests/credential', '"crm"'))
  })
})
