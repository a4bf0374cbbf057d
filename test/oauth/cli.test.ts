import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { run as keys } from '../../engine/commands/keys.ts'
import { run as token, fetchTokenSummary } from '../../engine/commands/token.ts'
import { run as credentials } from '../../engine/commands/credentials.ts'
import { createRefreshTokenStore, createTokenProvider, TokenCache } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { loadChannel } from '../../engine/load.ts'
import type { ConfigError } from '../../shared/errors.ts'
import type { CommandIO } from '../../engine/cli-io.ts'
import { runCli } from '../_cli.ts'

let as: AuthorizationServer
let dir: string
beforeAll(async () => {
  as = await startAuthorizationServer()
  dir = await mkdtemp(join(tmpdir(), 'weir-cli-'))
})
afterAll(async () => {
  await as.close()
  await rm(dir, { recursive: true, force: true })
})

function io(env: NodeJS.ProcessEnv = {}): CommandIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = []
  const stderr: string[] = []
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t), env, cwd: dir, isTTY: false }
}

async function channel(credentials: Record<string, unknown>): Promise<string> {
  const file = join(dir, `ch-${Math.random().toString(36).slice(2)}.json`)
  await writeFile(file, JSON.stringify({
    name: 'cli-test', credentials,
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
  }))
  return file
}

describe('weir keys generate', () => {
  it('writes a 0600 PKCS#8 key and a JWKS that the authorization server accepts', async () => {
    const o = io()
    expect(await keys(['generate', '--alg', 'ES384', '--kid', 'cli-key', '--out', 'keys'], o)).toBe(0)
    const pemFile = join(dir, 'keys', 'cli-key.private.pem')
    expect((await stat(pemFile)).mode & 0o777).toBe(0o600)
    const pem = await readFile(pemFile, 'utf8')
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----/)
    expect(o.stdout.join('\n')).not.toContain('PRIVATE KEY-----')
    const jwks = JSON.parse(await readFile(join(dir, 'keys', 'cli-key.jwks.json'), 'utf8'))
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-384', alg: 'ES384', kid: 'cli-key', use: 'sig' })
    expect(jwks.keys[0].d).toBeUndefined()
    as.registerClient({ clientId: 'cli-client', authMethod: 'private_key_jwt', jwks })
    const p = createTokenProvider('k', { tokenUrl: as.tokenUrl, clientId: 'cli-client', clientAuth: { privateKey: new Secret(pem), alg: 'ES384', kid: 'cli-key' } }, { cache: new TokenCache() })
    expect((await fetchTokenSummary(p)).tokenType).toBe('Bearer')
    // Never overwrites.
    const again = await keys(['generate', '--alg', 'ES384', '--kid', 'cli-key', '--out', 'keys'], io()).catch((e) => e)
    expect([again.code, again.message]).toEqual(['ERR_FILE_ACCESS', `${pemFile} already exists; not overwriting it`])
  })

  it('--out naming a regular file is a user error naming it (exit 1, no stack), not an internal error', async () => {
    const file = join(dir, 'not-a-dir')
    await writeFile(file, 'x')
    const r = await runCli(['keys', 'generate', '--alg', 'RS256', '--out', file])
    expect([r.code, r.err.trim()]).toEqual([1, `weir keys: --out ${file}: cannot create the directory: EEXIST`])
  })

  it('rejects an unknown algorithm', async () => {
    const e = await keys(['generate', '--alg', 'HS256'], io()).catch((x) => x)
    expect([e.userError, e.message]).toEqual([true, '--alg must be one of RS256, RS384, PS256, ES256, ES384, EdDSA; got HS256'])
  })
})

describe('weir token and weir credentials', () => {
  it('token: shows type, scope and expiry, the token only with --show', async () => {
    as.registerClient({ clientId: 'cli-basic', authMethod: 'client_secret_basic', secret: 'cli-basic-secret', scopes: ['read'] })
    const file = await channel({ api: { tokenUrl: as.tokenUrl, clientId: 'cli-basic', clientAuth: { secret: { $env: 'CLI_SECRET' } }, scope: 'read' } })
    const o = io({ CLI_SECRET: 'cli-basic-secret' })
    expect(await token([file, 'api', '--data-dir', 'data'], o), o.stderr.join('\n')).toBe(0)
    const text = o.stdout.join('\n')
    expect(text).toMatch(/^credential api: Bearer token\n {2}scope: {3}read\n {2}expires: \S+ \(in 300 s\)/)
    expect(text).toContain('"authorization": "Basic [REDACTED]"')
    expect(text).not.toMatch(/eyJ/)
    expect(text).not.toContain('cli-basic-secret')
    const shown = io({ CLI_SECRET: 'cli-basic-secret' })
    expect(await token([file, 'api', '--show', '--json'], shown)).toBe(0)
    const json = JSON.parse(shown.stdout.join('\n'))
    expect(json).toMatchObject({ credential: 'api', tokenType: 'Bearer', scope: 'read', expiresInSec: 300 })
    expect(json.token).toMatch(/^eyJ/)
  })

  it('token: a provider error is one line, exit 1', async () => {
    const file = await channel({ api: { tokenUrl: as.tokenUrl, clientId: 'nobody', clientAuth: { secret: { $env: 'CLI_SECRET' } } } })
    const o = io({ CLI_SECRET: 'not-the-secret' })
    expect(await token([file, 'api'], o)).toBe(1)
    expect(o.stderr[0]).toBe(`weir token: credential "api": token endpoint ${as.tokenUrl} answered 401 invalid_client: unknown client`)
    expect(o.stderr.join('\n')).not.toContain('not-the-secret')
  })

  it('credentials import stores the refresh token where providers read it; explain redacts', async () => {
    as.registerClient({ clientId: 'cli-rt', authMethod: 'client_secret_post', secret: 'cli-rt-secret' })
    const rt = as.issueRefreshToken('cli-rt')
    await writeFile(join(dir, 'rt.txt'), rt + '\n')
    const cred = { grant: 'refresh_token', tokenUrl: as.tokenUrl, clientId: 'cli-rt', clientAuth: { method: 'client_secret_post', secret: { $env: 'RT_SECRET' } } }
    const file = await channel({ ehr: cred })
    const env = { RT_SECRET: 'cli-rt-secret', WEIR_SECRET_KEY: 'cli-test-secret-key' }
    const o = io(env)
    expect(await credentials(['import', file, 'ehr', '--refresh-token-file', 'rt.txt', '--data-dir', 'data'], o)).toBe(0)
    expect(o.stdout).toEqual(['stored the refresh token of credential "ehr" (store key "ehr", version 1); it was not printed'])
    const store = createRefreshTokenStore({ dir: join(dir, 'data', 'oauth'), key: 'cli-test-secret-key' })
    expect((await store.read('ehr'))?.refreshToken).toBe(rt)
    const p = createTokenProvider('ehr', { ...cred, clientAuth: { method: 'client_secret_post', secret: 'cli-rt-secret' } } as never, { store, cache: new TokenCache() })
    expect((await p.getToken()).tokenType).toBe('Bearer')
    const x = io(env)
    expect(await credentials(['explain', file, 'ehr'], x)).toBe(0)
    expect(JSON.parse(x.stdout.join('\n'))).toMatchObject({ method: 'POST', url: as.tokenUrl, form: { grant_type: 'refresh_token', refresh_token: '[REDACTED]', client_id: 'cli-rt', client_secret: '[REDACTED]' } })
    const missing = await credentials(['explain', file, 'nope'], io(env)).catch((e) => e)
    expect(missing.message).toBe('channel "cli-test" has no credential "nope" (it has: ehr)')
  })

  it('credentials import and explain need no secret set (they never send one); run-time loading still does', async () => {
    as.registerClient({ clientId: 'cli-rt2', authMethod: 'client_secret_post', secret: 'cli-rt2-secret' })
    const rt = as.issueRefreshToken('cli-rt2')
    await writeFile(join(dir, 'rt2.txt'), rt)
    const file = await channel({
      ehr: { grant: 'refresh_token', tokenUrl: as.tokenUrl, clientId: 'cli-rt2', clientAuth: { method: 'client_secret_post', secret: { $env: 'UNSET_RT_SECRET' } } },
      // Another credential whose key file is missing: not parsed, not a problem for these commands.
      epic: { tokenUrl: as.tokenUrl, clientId: 'epic', clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid: 'k1', privateKey: { $file: 'keys/missing.pem' } } },
    })
    const env = { WEIR_SECRET_KEY: 'cli-test-secret-key' }
    const o = io(env)
    expect(await credentials(['import', file, 'ehr', '--refresh-token-file', 'rt2.txt', '--data-dir', 'data2'], o)).toBe(0)
    expect((await createRefreshTokenStore({ dir: join(dir, 'data2', 'oauth'), key: 'cli-test-secret-key' }).read('ehr'))?.refreshToken).toBe(rt)
    const x = io(env)
    expect(await credentials(['explain', file, 'ehr'], x)).toBe(0)
    expect(JSON.parse(x.stdout.join('\n'))).toMatchObject({ form: { grant_type: 'refresh_token', client_secret: '[REDACTED]' } })
    // A client assertion's header needs its key: explaining that credential names the key that is not set.
    const needsKey = await credentials(['explain', file, 'epic'], io(env)).catch((e: ConfigError) => e.problems.map((p) => [p.pointer, p.message]))
    expect(needsKey).toEqual([['/credentials/epic/clientAuth/privateKey', `secret file "keys/missing.pem" not found (looked for ${join(dir, 'keys/missing.pem')})`]])
    const loading = await loadChannel(file, { env }).catch((e: ConfigError) => e.problems.map((p) => p.pointer))
    expect(loading).toEqual(['/credentials/ehr/clientAuth/secret', '/credentials/epic/clientAuth/privateKey'])
  })

  it('credentials explain reads only the named credential: another\'s garbage key file is not parsed', async () => {
    await writeFile(join(dir, 'garbage.pem'), 'not a PEM key\n')
    const file = await channel({
      api: { tokenUrl: as.tokenUrl, clientId: 'api', clientAuth: { secret: 'literal-secret' } },
      epic: { tokenUrl: as.tokenUrl, clientId: 'epic', clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid: 'k1', privateKey: { $file: 'garbage.pem' } } },
    })
    const x = io()
    expect(await credentials(['explain', file, 'api'], x)).toBe(0)
    expect(JSON.parse(x.stdout.join('\n'))).toMatchObject({ url: as.tokenUrl, headers: { authorization: 'Basic [REDACTED]' } })
    const own = await credentials(['explain', file, 'epic'], io()).catch((e: ConfigError) => e.problems.map((p) => p.pointer))
    expect(own).toEqual(['/credentials/epic/clientAuth/privateKey'])
  })
})
