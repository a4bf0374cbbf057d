// weir token --store as an operator runs it against a cluster's PostgreSQL store while engines use
// the same OAuth state: the check asks the token endpoint although the state holds a valid access
// token, stores the rotated refresh token there, and a wrong client secret tried by the check does
// not make the engines fail fast.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ServerResponse } from 'node:http'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import { createTokenProvider, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { openPostgresTokenState } from '../../shared/store/postgres/oauth-state.ts'
import { loopbackServer } from '../_setup.ts'
import { runCli } from '../_cli.ts'

const SECRET = 'right-client-secret-value'
const env = { WEIR_SECRET_KEY: randomBytes(32).toString('base64'), RIGHT: SECRET, WRONG: 'wrong-client-secret-value' }
/** The token endpoint: checks the client secret and rotates refresh tokens (rt-N → rt-N+1). */
const idp = { refreshToken: 'rt-0', issued: 0 }
let pg: EmbeddedPostgresServer
let server: Awaited<ReturnType<typeof loopbackServer>>
let tokenUrl: string
let dir: string

function answer(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-token-store-'))
  server = await loopbackServer((req, res) => {
    const form = new URLSearchParams(req.body)
    if (form.get('client_id') !== 'app' || form.get('client_secret') !== SECRET) return answer(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' })
    if (form.get('refresh_token') !== idp.refreshToken) return answer(res, 400, { error: 'invalid_grant' })
    idp.refreshToken = `rt-${++idp.issued}`
    answer(res, 200, { access_token: `at-${idp.issued}`, token_type: 'Bearer', expires_in: 3600, refresh_token: idp.refreshToken })
  })
  tokenUrl = `${server.origin}/token`
  pg = await startEmbeddedPostgres({ volatile: true })
}, 60_000)
afterAll(async () => {
  await server?.close()
  await pg?.stop()
  await rm(dir, { recursive: true, force: true })
})

const refreshCredential = (secretEnv: string) => ({ grant: 'refresh_token', tokenUrl, clientId: 'app', storeKey: 'crm', clientAuth: { method: 'client_secret_post', secret: { $env: secretEnv } } })

describe('weir token --store', () => {
  it('asks the endpoint past the access token the engines share, stores the rotated refresh token there; a wrong secret is not recorded for the engines', async () => {
    const url = await pg.createDatabase('token_check')
    const file = join(dir, 'channel.json')
    await writeFile(file, JSON.stringify({
      name: 'token-store', credentials: { crm: refreshCredential('RIGHT'), rotated: refreshCredential('WRONG') },
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
    }))
    await writeFile(join(dir, 'rt.txt'), 'rt-0\n')
    expect((await runCli(['credentials', 'import', file, 'crm', '--refresh-token-file', join(dir, 'rt.txt'), '--store', url], env)).code).toBe(0)

    const cluster = await openPostgresTokenState({ url, secretKey: env.WEIR_SECRET_KEY })
    const config: CredentialConfig = { grant: 'refresh_token', tokenUrl, clientId: 'app', clientAuth: { method: 'client_secret_post', secret: new Secret(SECRET) } }
    const engine = createTokenProvider('crm', config, { shared: cluster.state, cache: new TokenCache() })
    const later = createTokenProvider('crm', config, { shared: cluster.state, cache: new TokenCache() })
    try {
      const held = await engine.getToken()
      const before = server.requests.length
      const checked = await runCli(['token', file, 'crm', '--store', url, '--json', '--show'], env)
      expect([checked.code, server.requests.length - before]).toEqual([0, 1])
      const token = (JSON.parse(checked.out) as { token: string }).token
      expect(token).not.toBe(held.value.reveal())
      const entry = await cluster.state.read('crm')
      expect([entry?.refreshToken, entry?.accessToken, entry?.failure]).toEqual([idp.refreshToken, token, undefined])
      // The engine goes on with the token it holds.
      expect((await engine.getToken()).value.reveal()).toBe(held.value.reveal())

      const wrong = await runCli(['token', file, 'rotated', '--store', url], env)
      expect(wrong.code).toBe(1)
      expect(wrong.err.split('\n')[0]).toBe(`weir token: credential "rotated": token endpoint ${tokenUrl} answered 401 invalid_client: client authentication failed`)
      expect(wrong.out + wrong.err).not.toContain(SECRET)
      expect((await cluster.state.read('crm'))?.failure).toBeUndefined()
      // Another engine starting now takes the shared token instead of failing fast.
      expect((await later.getToken()).value.reveal()).toBe(token)
      expect(later.status!().failingFastUntil).toBeUndefined()
    } finally {
      await engine.close()
      await later.close()
      await cluster.close()
    }
  }, 60_000)
})
