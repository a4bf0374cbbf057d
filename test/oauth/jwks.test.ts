import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { fetch } from 'undici'
import type { CommandIO } from '../../engine/cli-io.ts'
import { run } from '../../engine/commands/run.ts'
import { jwksDocuments, jwksResponse, parseListenAddress, startJwksServer, type CredentialKeys, type JwksServer } from '../../engine/jwks-server.ts'
import { loadSigningKey, publicJwk, signJwt } from '../../shared/oauth/keys.ts'
import { Secret } from '../../shared/secret.ts'

const pem = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }).toString()
/** One key of every type a provider may be given: RSA, EC P-256 and P-384, OKP Ed25519. */
const KEY_TYPES = [
  { alg: 'RS384', key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, members: ['kty', 'n', 'e'] },
  { alg: 'ES256', key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, members: ['kty', 'crv', 'x', 'y'] },
  { alg: 'ES384', key: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, members: ['kty', 'crv', 'x', 'y'] },
  { alg: 'EdDSA', key: generateKeyPairSync('ed25519').privateKey, members: ['kty', 'crv', 'x'] },
] as const
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

const signingKey = (alg: string, key: KeyObject, kid?: string) => loadSigningKey({ alg: alg as never, privateKey: new Secret(pem(key)), ...(kid ? { kid } : {}) }, 'test')

let server: JwksServer
const credentials: CredentialKeys[] = KEY_TYPES.map((t, i) => ({ name: `cred-${i}`, keys: [signingKey(t.alg, t.key, `kid-${t.alg}`)] }))

beforeAll(async () => {
  server = await startJwksServer({ host: '127.0.0.1', port: 0, documents: await jwksDocuments(credentials, 'per-credential'), maxAgeSec: 120 })
})
afterAll(() => server?.close())

describe('the public JWK Set', () => {
  it.each(KEY_TYPES.map((t) => [t.alg, t] as const))('%s: only the public members, with kid, alg and use, and it verifies what the key signs', async (_alg, t) => {
    const jwk = await publicJwk(t.key, t.alg, 'k1')
    expect(Object.keys(jwk).sort()).toEqual([...t.members, 'alg', 'use', 'kid'].sort())
    for (const m of PRIVATE_MEMBERS) expect(jwk).not.toHaveProperty(m)
    const jwt = await signJwt(signingKey(t.alg, t.key, 'k1'), { sub: 'x' })
    expect((await jwtVerify(jwt, createLocalJWKSet({ keys: [jwk] }))).payload.sub).toBe('x')
  })

  it('gives a key without a kid its RFC 7638 thumbprint as kid', async () => {
    const jwk = await publicJwk(KEY_TYPES[1].key, 'ES256')
    expect(jwk.kid).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it.each(KEY_TYPES.map((t, i) => [t.alg, i] as const))('serves %s over HTTP with no private member, kid and alg on every key', async (alg, i) => {
    const res = await fetch(`${server.url}/jwks/cred-${i}.json`)
    expect(res.status).toBe(200)
    const text = await res.text()
    const set = JSON.parse(text) as { keys: Array<Record<string, unknown>> }
    expect(set.keys).toHaveLength(1)
    expect(set.keys[0]).toMatchObject({ kid: `kid-${alg}`, alg, use: 'sig' })
    for (const m of PRIVATE_MEMBERS) expect(text).not.toContain(`"${m}"`)
  })

  it('answers with a short max-age, a strong ETag, and 304 when the ETag matches', async () => {
    const res = await fetch(`${server.url}/jwks/cred-0.json`)
    await res.arrayBuffer()
    expect(res.headers.get('content-type')).toBe('application/jwk-set+json')
    expect(res.headers.get('cache-control')).toBe('public, max-age=120')
    const etag = res.headers.get('etag')!
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/)
    const again = await fetch(`${server.url}/jwks/cred-0.json`, { headers: { 'if-none-match': `W/"other", ${etag}` } })
    expect([again.status, await again.text(), again.headers.get('etag')]).toEqual([304, '', etag])
    const other = await fetch(`${server.url}/jwks/cred-1.json`, { headers: { 'if-none-match': etag } })
    expect([other.status, other.headers.get('etag') === etag]).toEqual([200, false])
    await other.arrayBuffer()
  })

  it('answers 404 for another path and 405 for another method; HEAD has no body', async () => {
    const missing = await fetch(`${server.url}/jwks/nope.json`)
    expect([missing.status, await missing.json()]).toEqual([404, { error: 'not_found' }])
    const post = await fetch(`${server.url}/jwks/cred-0.json`, { method: 'POST', body: '{}' })
    expect([post.status, post.headers.get('allow'), await post.text()]).toEqual([405, 'GET, HEAD', ''])
    const head = jwksResponse(await jwksDocuments(credentials, 'per-credential'), { method: 'HEAD', path: '/jwks/cred-0.json' })
    expect([head.status, head.body, head.headers['content-type']]).toEqual([200, '', 'application/jwk-set+json'])
  })

  it('combined: one /jwks.json with every key, the same key shared by two credentials once', async () => {
    const docs = await jwksDocuments([...credentials, { name: 'again', keys: credentials[0]!.keys }], 'combined')
    expect([...docs.keys()]).toEqual(['/jwks.json'])
    const set = JSON.parse(docs.get('/jwks.json')!.body) as { keys: Array<{ kid: string }> }
    expect(set.keys.map((k) => k.kid)).toEqual(['kid-RS384', 'kid-ES256', 'kid-ES384', 'kid-EdDSA'])
  })

  it('refuses two different keys under one kid in a set', async () => {
    const clash = [{ name: 'a', keys: [signingKey('ES256', KEY_TYPES[1].key, 'same')] }, { name: 'b', keys: [signingKey('ES384', KEY_TYPES[2].key, 'same')] }]
    const err = await jwksDocuments(clash, 'combined').catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_CONFIG_INVALID', 'kid "same" names two different keys (credentials "a" and "b"); one JWK Set needs a kid per key'])
  })

  it.each([
    ['8090', { host: '127.0.0.1', port: 8090 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:8443', { host: '::1', port: 8443 }],
    ['localhost:80', { host: 'localhost', port: 80 }],
  ])('--jwks %s', (value, expected) => {
    expect(parseListenAddress(value)).toEqual(expected)
  })

  it.each(['', 'host:', ':80', '127.0.0.1:99999', 'a:b:1'])('--jwks %j is refused', (value) => {
    const err = (() => { try { return parseListenAddress(value) } catch (e) { return e } })() as { code: string; message: string }
    expect([err.code, err.message]).toEqual(['ERR_USAGE', `--jwks must be PORT or HOST:PORT (e.g. 127.0.0.1:8090); got "${value}"`])
  })
})

describe('weir run --jwks', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'weir-jwks-run-')) })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  it('serves the JWK Set of every credential of the channels while they run, and stops with them', async () => {
    await writeFile(join(dir, 'rot.pem'), pem(KEY_TYPES[0].key))
    await writeFile(join(dir, 'ed.pem'), pem(KEY_TYPES[3].key))
    await writeFile(join(dir, 'ch.json'), JSON.stringify({
      name: 'jwks-run',
      credentials: {
        epic: { tokenUrl: 'https://fhir.example/token', clientId: 'c', clientAuth: { alg: 'RS384', keys: [{ kid: 'old', privateKey: { $file: 'rot.pem' } }, { kid: 'new', privateKey: { $file: 'ed.pem' }, alg: 'EdDSA', signFrom: '2099-01-01T00:00:00Z' }] } },
        basic: { tokenUrl: 'https://fhir.example/token', clientId: 'b', clientAuth: { secret: { $env: 'NOT_A_KEY' } } },
      },
      source: { type: 'http-listener', config: { port: 0, host: '127.0.0.1' } },
      destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
    }))
    const stop = new AbortController()
    let url = ''
    const lines: string[] = []
    const io: CommandIO = { out: (t) => lines.push(t), err: (t) => lines.push(t), env: { NOT_A_KEY: 'a-client-secret' }, cwd: dir, isTTY: false }
    const done = run(['ch.json', '--data-dir', 'data', '--jwks', '127.0.0.1:0'], io, {
      signal: stop.signal,
      onJwksServer: (s) => { url = s.url },
      onStarted: async () => {
        const set = await (await fetch(`${url}/jwks/epic.json`)).json() as { keys: Array<Record<string, string>> }
        expect(set.keys.map((k) => [k.kid, k.alg, k.kty])).toEqual([['old', 'RS384', 'RSA'], ['new', 'EdDSA', 'OKP']])
        expect((await fetch(`${url}/jwks/basic.json`)).status).toBe(404)
        stop.abort()
      },
    })
    expect(await done).toBe(0)
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(lines.join('\n')).toContain(`"jwks":["${url}/jwks/epic.json"]`)
    await expect(fetch(`${url}/jwks/epic.json`)).rejects.toThrow()
  })

  it('refuses an unknown --jwks-sets', async () => {
    const io: CommandIO = { out: () => {}, err: () => {}, env: {}, cwd: dir, isTTY: false }
    const err = await run(['ch.json', '--jwks', '0', '--jwks-sets', 'all'], io).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_USAGE', '--jwks-sets must be per-credential or combined, not "all"'])
  })
})
