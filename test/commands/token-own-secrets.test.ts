// `weir token` needs only the secrets of the credential it fetches a token with: another credential's
// `$file` or `$env` that is not set here (in the channel file or in its credentials file) does not
// stop it, nor does one that is unreadable or garbage, nor a component's file; one of the named
// credential's own does, at its pointer; an unknown name lists the known ones.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from '../../engine/cli.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { tempDir } from '../_setup.ts'

let as: AuthorizationServer
let root: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => {
  as = await startAuthorizationServer()
  root = await tempDir('weir-token-secrets-')
  as.registerClient({ clientId: 'token-basic', authMethod: 'client_secret_basic', secret: 'token-basic-secret' })
})
afterAll(async () => {
  await as.close()
  await root.cleanup()
})

/** Runs the CLI in `root.dir` with `env`, capturing what it prints. */
async function weir(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const code = await main(argv, { out: (t) => { out += `${t}\n` }, err: (t) => { err += `${t}\n` }, env, cwd: root.dir, isTTY: false })
  return { code, out, err }
}

/** A channel file in `dir` with `extra` (its credentials, or a credentialsFile). */
async function channel(dir: string, extra: Record<string, unknown>): Promise<string> {
  await mkdir(dir, { recursive: true })
  const file = join(dir, 'channel.json')
  await writeFile(file, JSON.stringify({
    name: 'token-secrets', ...extra,
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
  }))
  return file
}

const env = { TOKEN_SECRET: 'token-basic-secret' }
const api = () => ({ tokenUrl: as.tokenUrl, clientId: 'token-basic', clientAuth: { secret: { $env: 'TOKEN_SECRET' } } })
/** A credential whose signing key file is not on this host. */
const epic = () => ({ tokenUrl: as.tokenUrl, clientId: 'epic', clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid: 'k1', privateKey: { $file: 'keys/missing.pem' } } })

/** `weir token <file> api` fetches a token; `weir token <file> epic` fails naming its key file at `pointer`. */
async function apiWorksEpicDoesNot(file: string, pointer: string): Promise<void> {
  const ok = await weir(['token', file, 'api', '--data-dir', join(root.dir, 'data')], env)
  expect([ok.code, ok.err]).toEqual([0, ''])
  expect(ok.out).toMatch(/^credential api: Bearer token\n/)
  const missing = await weir(['token', file, 'epic', '--data-dir', join(root.dir, 'data')], env)
  expect(missing.code).toBe(1)
  expect(missing.err).toContain(`${pointer}: secret file "keys/missing.pem" not found`)
}

describe('weir token resolves only the named credential\'s secrets', () => {
  it('in the channel file: another credential\'s missing key file does not stop it; its own missing secret does', async () => {
    const file = await channel(join(root.dir, 'own'), { credentials: { api: api(), epic: epic() } })
    await apiWorksEpicDoesNot(file, 'channel.json#/credentials/epic/clientAuth/privateKey')
    // Only the credential asked for is reported.
    const unsetSecret = await weir(['token', file, 'api', '--data-dir', join(root.dir, 'data')], {})
    expect(unsetSecret.code).toBe(1)
    expect(unsetSecret.err).toContain('/credentials/api/clientAuth/secret')
    expect(unsetSecret.err).not.toContain('epic')
  })

  it('in a credentials file: the same, reported in that file', async () => {
    const dir = join(root.dir, 'shared')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'credentials.json'), JSON.stringify({ api: api(), epic: epic() }))
    await apiWorksEpicDoesNot(await channel(dir, { credentialsFile: 'credentials.json' }), 'credentials.json#/epic/clientAuth/privateKey')
  })

  it('another credential\'s garbage, unreadable or missing key file, and a component\'s files, are not read; its own still fail at their pointers', async () => {
    const dir = join(root.dir, 'unread')
    await mkdir(join(dir, 'keys', 'a-directory'), { recursive: true })
    await writeFile(join(dir, 'keys', 'garbage.pem'), 'not a PEM key\n')
    const withKey = (path: string) => ({ ...epic(), clientAuth: { ...epic().clientAuth, privateKey: { $file: path } } })
    const file = await channel(dir, {
      credentials: { api: api(), garbage: withKey('keys/garbage.pem'), unreadable: withKey('keys/a-directory'), missing: withKey('keys/missing.pem') },
    })
    // The source's TLS certificate and key are not on this host either: the command has no use for them.
    const raw = JSON.parse(await readFile(file, 'utf8'))
    raw.source.config.tls = { certFile: 'tls/missing.crt', key: { $file: 'tls/missing.key' } }
    await writeFile(file, JSON.stringify(raw))
    const ok = await weir(['token', file, 'api', '--json', '--data-dir', join(root.dir, 'data')], env)
    expect([ok.code, ok.err]).toEqual([0, ''])
    expect(JSON.parse(ok.out)).toMatchObject({ credential: 'api', tokenType: 'Bearer' })
    const own = async (name: string) => (await weir(['token', file, name, '--data-dir', join(root.dir, 'data')], env))
    const missing = await own('missing')
    expect([missing.code, missing.out]).toEqual([1, ''])
    expect(missing.err).toContain('channel.json#/credentials/missing/clientAuth/privateKey: secret file "keys/missing.pem" not found')
    expect(missing.err).not.toMatch(/garbage|unreadable|tls/)
    expect((await own('unreadable')).err).toContain('channel.json#/credentials/unreadable/clientAuth/privateKey: secret file "keys/a-directory" cannot be read (EISDIR)')
    const garbage = await own('garbage')
    expect(garbage.code).toBe(1)
    expect(garbage.err).toContain('channel.json#/credentials/garbage/clientAuth/privateKey')
    expect(garbage.err).not.toMatch(/missing|unreadable/)
  })

  it('the channel\'s structure is still checked: another credential\'s schema problem is reported at its pointer', async () => {
    const file = await channel(join(root.dir, 'structure'), { credentials: { api: api(), epic: { ...epic(), clientId: 5 } } })
    const r = await weir(['token', file, 'api', '--data-dir', join(root.dir, 'data')], env)
    expect([r.code, r.out]).toEqual([1, ''])
    expect(r.err).toContain('channel.json#/credentials/epic/clientId')
  })

  it('an unknown credential is still named with the known ones', async () => {
    const file = await channel(join(root.dir, 'unknown'), { credentials: { api: api(), epic: epic() } })
    const r = await weir(['token', file, 'nope'], env)
    expect([r.code, r.out, r.err]).toEqual([1, '', 'weir token: channel "token-secrets" has no credential "nope" (it has: api, epic)\n'])
  })
})
