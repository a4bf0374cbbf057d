import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fetch } from 'undici'
import type { CommandIO } from '../../engine/cli-io.ts'
import { run as keys } from '../../engine/commands/keys.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { channelSigningKeys, jwksDocuments, startJwksServer, type JwksServer } from '../../engine/jwks-server.ts'
import { pruneKeys, type RawSigningBlock } from '../../engine/key-rotation.ts'
import { loadChannel } from '../../engine/load.ts'
import { checkCredential, createTokenProvider, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { CLIENT_ASSERTION_TYPE } from '../../shared/oauth/token-endpoint.ts'
import { loadSigningKey, loadSigningKeys, publicJwk, signJwt, signingKeyAt } from '../../shared/oauth/keys.ts'
import { Secret } from '../../shared/secret.ts'

const pem = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }).toString()
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
const T0 = Date.parse('2030-01-01T00:00:00Z')
const HOUR = 3_600_000

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'weir-rotation-')) })
afterAll(() => rm(dir, { recursive: true, force: true }))

function io(): CommandIO & { stdout: string[] } {
  const stdout: string[] = []
  return { stdout, out: (t) => stdout.push(t), err: (t) => stdout.push(t), env: {}, cwd: dir, isTTY: false }
}

describe('a credential with a key list', () => {
  const key = (kid: string, extra: object = {}) => ({ kid, privateKey: { $file: `${kid}.pem` }, ...extra })
  const base = { tokenUrl: 'https://p.example/token', clientId: 'c' }
  it.each([
    ['a list with the block alg', { ...base, clientAuth: { alg: 'RS384', keys: [key('a'), key('b', { alg: 'ES256', signFrom: '2030-01-02T00:00:00Z' })] } }, []],
    ['epic with keys instead of kid', { ...base, preset: 'epic-backend', scope: 'system/Patient.rs', clientAuth: { keys: [key('a')] } }, []],
    ['keys beside a single key', { ...base, clientAuth: { alg: 'RS384', privateKey: 'x', kid: 'a', keys: [key('b')] } }, [['/clientAuth/keys', 'keys replaces privateKey, kid; keep one form (each key of the list has its own kid and privateKey)']]],
    ['a kid twice', { ...base, clientAuth: { alg: 'RS384', keys: [key('a'), key('a')] } }, [['/clientAuth/keys/1/kid', 'kid "a" is already used by clientAuth.keys[0]']]],
    ['a key without an algorithm', { ...base, clientAuth: { keys: [key('a', { alg: 'ES256' }), key('b')] } }, [['/clientAuth/keys/1/alg', 'an algorithm is required (keys[1].alg or clientAuth.alg)']]],
    ['an algorithm the provider refuses', { ...base, preset: 'epic-backend', scope: 'system/Patient.rs', clientAuth: { keys: [key('a'), key('b', { alg: 'ES256' })] } }, [['/clientAuth/keys/1/alg', 'the provider accepts RS384 or ES384; got ES256']]],
    ['jwt_bearer assertion keys', { ...base, grant: 'jwt_bearer', assertion: { alg: 'RS256', keys: [key('a')] } }, []],
  ])('%s', (_name, config, problems) => {
    expect(checkCredential(config as unknown as CredentialConfig)).toEqual(problems)
  })

  it('signs with the newest key whose signFrom has come; none yet is an error naming the list', () => {
    const keys = loadSigningKeys({
      alg: 'RS384',
      keys: [
        { kid: 'next', privateKey: new Secret(pem(ec)), alg: 'ES256', signFrom: new Date(T0 + 24 * HOUR).toISOString() },
        { kid: 'first', privateKey: new Secret(pem(rsa)) },
      ],
    }, 'credential "x" #/clientAuth')
    expect(keys.map((k) => [k.kid, k.alg, k.headers])).toEqual([['first', 'RS384', { kid: 'first' }], ['next', 'ES256', { kid: 'next' }]])
    expect(signingKeyAt(keys, T0, 'w').kid).toBe('first')
    expect(signingKeyAt(keys, T0 + 24 * HOUR - 1, 'w').kid).toBe('first')
    expect(signingKeyAt(keys, T0 + 24 * HOUR, 'w').kid).toBe('next')
    const err = (() => { try { return signingKeyAt(keys.slice(1), T0, 'credential "x" #/clientAuth/keys') } catch (e) { return e } })() as { code: string; message: string }
    expect([err.code, err.message]).toEqual(['ERR_CONFIG_INVALID', 'credential "x" #/clientAuth/keys: no key signs yet; the earliest signFrom is 2030-01-02T00:00:00.000Z'])
  })

  it('a bad key in the list is named by its pointer, never quoted', () => {
    const err = (() => { try { return loadSigningKeys({ alg: 'RS384', keys: [{ kid: 'a', privateKey: new Secret(pem(rsa)) }, { kid: 'b', privateKey: new Secret('not-a-key-material') }] }, 'credential "x" #/clientAuth') } catch (e) { return e } })() as Error
    expect(err.message).toBe('credential "x" #/clientAuth/keys/1/privateKey: not a private key (expected PKCS#8 PEM or a private JWK)')
  })
})

describe('pruning retired keys', () => {
  const at = (h: number) => new Date(T0 + h * HOUR).toISOString()
  const block = (keys: Array<{ kid: string; signFrom?: string }>): RawSigningBlock => ({ name: 'clientAuth', lifetimeSec: 300, block: { keys: keys.map((k) => ({ ...k, privateKey: { $file: 'k' } })) } })
  it.each([
    ['the old key, retired 5 min + 60 s ago', [{ kid: 'old' }, { kid: 'new', signFrom: at(0) }], T0 + 360_000, ['old'], ['new']],
    ['nothing a second earlier (an assertion of the old key may still be valid)', [{ kid: 'old' }, { kid: 'new', signFrom: at(0) }], T0 + 359_999, [], ['old', 'new']],
    ['never the key signing now nor a key to come', [{ kid: 'a' }, { kid: 'b', signFrom: at(1) }, { kid: 'c', signFrom: at(48) }], T0 + 2 * HOUR, ['a'], ['b', 'c']],
    ['every retired key, whatever the list order', [{ kid: 'c', signFrom: at(2) }, { kid: 'a' }, { kid: 'b', signFrom: at(1) }], T0 + 3 * HOUR, ['a', 'b'], ['c']],
    ['nothing before the new key signs', [{ kid: 'old' }, { kid: 'new', signFrom: at(24) }], T0 + 23 * HOUR, [], ['old', 'new']],
  ])('drops %s', (_name, keys, now, dropped, kept) => {
    const b = block(keys)
    expect(pruneKeys(b, now).sort()).toEqual(dropped)
    expect((b.block.keys as Array<{ kid: string }>).map((k) => k.kid)).toEqual(kept)
  })
})

describe('weir keys rotate and prune', () => {
  async function channelFile(credential: object, extra: object = {}): Promise<string> {
    const file = join(dir, `ch-${randomUUID()}.json`)
    await writeFile(file, JSON.stringify({ name: 'rot', credentials: { epic: credential }, source: { type: 'http-listener', config: { port: 0 } }, destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }], ...extra }, null, 2))
    return file
  }

  it('writes a 0600 key whatever the umask, turns the single key into a list and dates the new key now + delay', async () => {
    await writeFile(join(dir, 'epic-old.pem'), pem(rsa))
    const file = await channelFile({ preset: 'epic-backend', tokenUrl: 'https://f.example/token', clientId: 'c', clientAuth: { alg: 'RS384', kid: 'old', privateKey: { $file: 'epic-old.pem' } }, scope: 'system/Patient.rs' })
    const o = io()
    const umask = process.umask(0)
    try {
      expect(await keys(['rotate', file, 'epic', '--kid', 'k2', '--alg', 'ES384', '--out', 'keys', '--delay', '90m'], o, { now: () => T0 })).toBe(0)
    } finally {
      process.umask(umask)
    }
    expect((await stat(join(dir, 'keys', 'k2.private.pem'))).mode & 0o777).toBe(0o600)
    const written = JSON.parse(await readFile(file, 'utf8'))
    expect(written.credentials.epic.clientAuth).toEqual({
      alg: 'RS384',
      keys: [{ kid: 'old', privateKey: { $file: 'epic-old.pem' } }, { kid: 'k2', privateKey: { $file: 'keys/k2.private.pem' }, alg: 'ES384', signFrom: '2030-01-01T01:30:00.000Z' }],
    })
    const text = o.stdout.join('\n')
    expect(text).toContain('new key k2 (ES384) signs from 2030-01-01T01:30:00.000Z')
    expect(text).not.toContain('PRIVATE KEY')
    // The edited channel loads, and keeps the provider's rules.
    expect((await loadChannel(file)).credentials.epic).toBeTruthy()
    // A second rotation defaults to the newest key's algorithm and directory, 24 h ahead.
    expect(await keys(['rotate', file, 'epic', '--kid', 'k3'], io(), { now: () => T0 })).toBe(0)
    expect(JSON.parse(await readFile(file, 'utf8')).credentials.epic.clientAuth.keys[2]).toEqual({ kid: 'k3', privateKey: { $file: 'keys/k3.private.pem' }, alg: 'ES384', signFrom: '2030-01-02T00:00:00.000Z' })
    // Pruned once the old key has been retired for 5 min + 60 s: k2 signs from 01:30.
    const p = io()
    expect(await keys(['prune', file, 'epic'], p, { now: () => T0 + 90 * 60_000 + 359_000 })).toBe(0)
    expect(p.stdout.join('')).toMatch(/^nothing to prune/)
    expect(await keys(['prune', file, 'epic'], p, { now: () => T0 + 90 * 60_000 + 360_000 })).toBe(0)
    expect(p.stdout[1]).toContain('dropped old from')
    expect(JSON.parse(await readFile(file, 'utf8')).credentials.epic.clientAuth.keys.map((k: { kid: string }) => k.kid)).toEqual(['k2', 'k3'])
  })

  it('edits the credentials file when the credential lives there', async () => {
    const credsFile = join(dir, `creds-${randomUUID()}.json`)
    await writeFile(credsFile, JSON.stringify({ shared: { tokenUrl: 'https://f.example/token', clientId: 'c', clientAuth: { alg: 'ES256', keys: [{ kid: 'a', privateKey: { $file: 'epic-old.pem' } }] } } }))
    const file = join(dir, `ch-${randomUUID()}.json`)
    await writeFile(file, JSON.stringify({ name: 'rot', credentialsFile: credsFile, source: { type: 'http-listener', config: { port: 0 } }, destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }] }))
    const before = await readFile(file, 'utf8')
    expect(await keys(['rotate', file, 'shared', '--kid', 'b', '--out', 'keys', '--delay', '0'], io(), { now: () => T0 })).toBe(0)
    expect(await readFile(file, 'utf8')).toBe(before)
    expect(JSON.parse(await readFile(credsFile, 'utf8')).shared.clientAuth.keys[1]).toEqual({ kid: 'b', privateKey: { $file: 'keys/b.private.pem' }, signFrom: '2030-01-01T00:00:00.000Z' })
  })

  it.each([
    ['an unknown credential', { clientAuth: {} }, ['rotate', 'FILE', 'other'], 'credential "other" is not defined in FILE', 'ERR_USAGE'],
    ['a key without a kid', { tokenUrl: 'https://f.example/t', clientId: 'c', clientAuth: { alg: 'RS384', privateKey: { $file: 'x.pem' } } }, ['rotate', 'FILE', 'epic'], 'FILE#/credentials/epic/clientAuth/kid: the current key has no kid; give it the kid it is registered under first', 'ERR_CONFIG_INVALID'],
    ['a kid already in the list', { tokenUrl: 'https://f.example/t', clientId: 'c', clientAuth: { alg: 'RS384', keys: [{ kid: 'a', privateKey: { $file: 'x.pem' } }] } }, ['rotate', 'FILE', 'epic', '--kid', 'a'], 'FILE#/credentials/epic/clientAuth/keys: kid "a" is already in the list', 'ERR_USAGE'],
    ['a secret-only credential', { tokenUrl: 'https://f.example/t', clientId: 'c', clientAuth: { secret: { $env: 'S' } } }, ['rotate', 'FILE', 'epic'], 'FILE#/credentials/epic: no private key in clientAuth or assertion to rotate', 'ERR_CONFIG_INVALID'],
    ['a bad delay', { tokenUrl: 'https://f.example/t', clientId: 'c', clientAuth: { alg: 'RS384', kid: 'a', privateKey: { $file: 'x.pem' } } }, ['rotate', 'FILE', 'epic', '--delay', 'soon'], '--delay must be a duration such as 24h, 90m, 30s or 2d; got "soon"', 'ERR_USAGE'],
  ])('refuses %s, writing nothing', async (_name, credential, argv, message, code) => {
    const file = await channelFile(credential)
    const before = await readFile(file, 'utf8')
    const display = file.startsWith(process.cwd()) ? file.slice(process.cwd().length + 1) : file
    const err = await keys(argv.map((a) => (a === 'FILE' ? file : a)), io(), { now: () => T0 }).catch((e) => e)
    expect([err.code, err.message]).toEqual([code, message.replaceAll('FILE', display)])
    expect(await readFile(file, 'utf8')).toBe(before)
  })
})

describe('a rotation over the embedded authorization server (jwks_uri, fake time)', () => {
  let as: AuthorizationServer
  let jwks: JwksServer
  let now = T0
  beforeAll(async () => {
    as = await startAuthorizationServer({ now: () => now })
    jwks = await startJwksServer({ host: '127.0.0.1', port: 0, documents: new Map() })
    as.registerClient({ clientId: 'rot-client', authMethod: 'private_key_jwt', jwksUri: `${jwks.url}/jwks/epic.json`, allowedAlgs: ['RS384', 'ES256'] })
  })
  afterAll(async () => {
    await as?.close()
    await jwks?.close()
  })

  /** Loads the channel file as `weir run` would, serves its JWK Set, and gives a token provider on the fake clock. */
  async function start(file: string) {
    const ch = await loadChannel(file)
    jwks.setDocuments(await jwksDocuments(channelSigningKeys([ch]), 'per-credential'))
    return createTokenProvider('epic', ch.credentials.epic as CredentialConfig, { now: () => now, cache: new TokenCache() })
  }
  const kids = () => as.requests.map((r) => r.assertion?.header.kid)

  it('the old key signs before signFrom, the new one after; every request succeeds; the JWK Set is fetched twice', async () => {
    await writeFile(join(dir, 'as-old.pem'), pem(rsa))
    const file = join(dir, 'as-channel.json')
    await writeFile(file, JSON.stringify({
      name: 'rotation', credentials: { epic: { tokenUrl: as.tokenUrl, clientId: 'rot-client', clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid: 'old', privateKey: { $file: 'as-old.pem' } } } },
      source: { type: 'http-listener', config: { port: 0 } }, destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
    }))
    const before = await start(file)
    await before.getToken()
    expect([kids(), as.jwksFetches()]).toEqual([['old'], 1])
    await before.close()

    // The rotation: a new key published now, signing in 24 h. The provider's copy of the set predates it.
    expect(await keys(['rotate', file, 'epic', '--alg', 'ES256', '--kid', 'new', '--out', 'as-keys'], io(), { now: () => now })).toBe(0)
    const after = await start(file)
    await after.getToken()
    now += 24 * HOUR - 1000
    await after.getToken()
    expect(kids()).toEqual(['old', 'old', 'old'])
    now += 1000
    after.invalidate(await after.getToken()) // the token fetched a second ago, dropped: the next request is due now
    await after.getToken()
    now += 400_000 // past the token's 300 s
    await after.getToken()
    await after.close()

    expect(kids()).toEqual(['old', 'old', 'old', 'new', 'new'])
    expect(as.requests.map((r) => [r.status, r.assertion?.header.alg])).toEqual([[200, 'RS384'], [200, 'RS384'], [200, 'RS384'], [200, 'ES256'], [200, 'ES256']])
    expect(as.jwksFetches()).toBeLessThanOrEqual(2)
    expect(as.jwksFetches()).toBe(2)
  })
})

describe('the embedded server reading a jwks_uri', () => {
  let as: AuthorizationServer
  let jwksServer: Server
  let served: unknown
  let fetches = 0
  let jwksUrl = ''
  let now = T0
  const key = loadSigningKey({ alg: 'ES256', kid: 'k1', privateKey: new Secret(pem(ec)) }, 'test')

  beforeAll(async () => {
    jwksServer = createServer((_req, res) => { fetches++; res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(served)) })
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r))
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`
    as = await startAuthorizationServer({ now: () => now, jwksRefetchCooldownSec: 60 })
    as.registerClient({ clientId: 'uri-client', authMethod: 'private_key_jwt', jwksUri: jwksUrl })
  })
  afterAll(async () => {
    await as?.close()
    await new Promise((r) => jwksServer.close(r))
  })

  async function tokenRequest(kid: string) {
    const iat = Math.floor(now / 1000)
    const assertion = await signJwt({ ...key, kid, headers: { kid } }, { iss: 'uri-client', sub: 'uri-client', aud: as.tokenUrl, iat, exp: iat + 60, jti: randomUUID() })
    const res = await fetch(as.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'uri-client', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion }).toString() })
    return { status: res.status, body: await res.json() as Record<string, string> }
  }

  it('refetches on an unknown kid at most once per cooldown, then accepts the new key', async () => {
    served = { keys: [{ ...(await publicJwk(ec as KeyObject, 'ES256', 'k0')) }] }
    expect((await tokenRequest('k1')).body).toMatchObject({ error: 'invalid_client', error_description: 'client assertion: no registered key with kid "k1"' })
    expect(fetches).toBe(1)
    for (let i = 0; i < 5; i++) expect((await tokenRequest('k1')).status).toBe(401)
    expect([fetches, as.jwksFetches()]).toEqual([1, 1])
    served = { keys: [await publicJwk(ec as KeyObject, 'ES256', 'k1')] }
    now += 59_000
    expect((await tokenRequest('k1')).status).toBe(401)
    now += 1000
    expect((await tokenRequest('k1')).status).toBe(200)
    expect([fetches, as.jwksFetches()]).toEqual([2, 2])
    expect((await tokenRequest('k1')).status).toBe(200)
    expect(fetches).toBe(2)
  })

  it('refuses a JWK Set that carries private key material', async () => {
    served = { keys: [{ ...ec.export({ format: 'jwk' }), kid: 'k9', alg: 'ES256' }] }
    now += 120_000
    expect((await tokenRequest('k9')).body).toMatchObject({ error: 'invalid_client', error_description: `client assertion: jwks_uri: ${jwksUrl} publishes private key material; refusing it` })
  })
})
