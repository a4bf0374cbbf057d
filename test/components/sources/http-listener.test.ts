import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import listener from '../../../components/sources/http-listener.ts'
import { errorCodes } from '../../../shared/errors.ts'
import { loadComponentConfig, loopbackServer, recordingEmit, testContext, type TestContext } from '../../_setup.ts'
import type { AddressInfo } from 'node:net'

type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey']
type Listener = { start: (e: ReturnType<typeof recordingEmit>) => Promise<void>; stop: () => Promise<void>; address: () => AddressInfo }

let t: TestContext
let running: Listener | undefined
afterEach(async () => { await running?.stop(); running = undefined; await t?.cleanup() })

async function start(config: Record<string, unknown>, emit = recordingEmit(), channelDir?: string) {
  const loaded = await loadComponentConfig(listener, { port: 0, ...config }, { dir: channelDir })
  expect(loaded.problems).toEqual([])
  t = await testContext(channelDir ? { channelDir } : {})
  const l = (await listener.create(loaded.config as never, t.ctx)) as unknown as Listener
  await l.start(emit)
  running = l
  return { emit, url: `http://127.0.0.1:${l.address().port}`, l }
}

async function post(url: string, body: string | AsyncIterable<string>, headers: Record<string, string> = { 'content-type': 'application/json' }, method = 'POST') {
  const res = await request(url, { method: method as 'POST', headers, body: body as string })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : undefined }
}

describe('http-listener config', () => {
  it.each([
    [{}, '/source/config', 'must have required property "port"'],
    [{ port: 70000 }, '/source/config/port', 'must be <= 65535'],
    [{ port: 1, path: 'adt' }, '/source/config/path', 'must start with /'],
    [{ port: 1, methods: ['GET'] }, '/source/config/methods/0', 'must be one of "POST", "PUT"'],
    [{ port: 1, jwt: { issuer: 'https://idp.example' } }, '/source/config/jwt', 'must have required property "audience"'],
    [{ port: 1, jwt: { issuer: 'not a url', audience: 'a' } }, '/source/config/jwt/issuer', 'must match format "uri"'],
    [{ port: 1, jwt: { issuer: 'https://idp.example', audience: 'a', algorithms: ['none'] } }, '/source/config/jwt/algorithms/0', 'must be one of "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"'],
    [{ port: 1, jwt: { issuer: 'https://idp.example', audience: 'a' }, apiKey: { value: 'a-literal-key' } }, '/source/config', 'configure either "jwt" or "apiKey", not both'],
    [{ port: 1, apiKey: { value: 5 } }, '/source/config/apiKey/value', 'must be a string or a secret reference {"$env": "NAME"} or {"$file": "path"}'],
    [{ port: 1, tls: { certFile: 'c.pem', key: 'literal-key-pem', requireClientCert: true } }, '/source/config/tls/requireClientCert', 'requires "caFile" (the CAs client certificates must chain to)'],
    [{ port: 1, headersTimeoutMs: 40_000 }, '/source/config/headersTimeoutMs', 'must be at most requestTimeoutMs (30000)'],
    [{ port: 1, maxBytes: 2000, maxBufferedBytes: 1000 }, '/source/config/maxBufferedBytes', 'must be at least maxBytes (2000)'],
    [{ port: 1, maxConnections: 4, maxConnectionsPerAddress: 8 }, '/source/config/maxConnectionsPerAddress', 'must be at most maxConnections (4)'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(listener, config)
    expect(problems.map((p) => [p.pointer, p.message])).toContainEqual([pointer, msg])
  })
})

describe('http-listener', () => {
  it('answers 202 with the id only after emit resolves', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => { release = r })
    const inner = recordingEmit()
    let called!: () => void
    const emitted = new Promise<void>((r) => { called = r })
    const emit = Object.assign(async (i: Parameters<typeof inner>[0]) => { called(); await gate; return inner(i) }, inner)
    const { url } = await start({ path: '/adt' }, emit as never)
    let settled = false
    const p = post(url + '/adt?src=lab', '{"mrn":"1"}', { 'content-type': 'application/json; charset=utf-8', 'x-request-id': 'r-9', authorization: 'Bearer nope' })
    void p.then(() => { settled = true })
    await emitted
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
    expect(settled).toBe(false)
    release()
    expect(await p).toMatchObject({ status: 202, body: { id: 'm1' } })
    expect(inner.inputs[0]).toEqual({
      body: { mrn: '1' }, contentType: 'application/json',
      attributes: { method: 'POST', path: '/adt', remoteAddress: '127.0.0.1', query: 'src=lab', 'x-request-id': 'r-9' },
    })
  })

  it('recognises a repeated POST by its Idempotency-Key', async () => {
    const { url, emit } = await start({})
    const h = { 'content-type': 'text/plain', 'idempotency-key': 'k-1' }
    expect((await post(url, 'MSH|1', h)).body).toEqual({ id: 'm1' })
    expect((await post(url, 'MSH|1', h)).body).toEqual({ id: 'm1', duplicate: true })
    expect(emit.inputs[0]).toMatchObject({ body: 'MSH|1', contentType: 'text/plain', dedupeKey: 'http-listener:anonymous:k-1' })
  })

  it('answers 503 with Retry-After under backpressure', async () => {
    const { url } = await start({}, recordingEmit({ fail: () => new errorCodes.ERR_BACKPRESSURE('channel queue is full', { retryAfterMs: 2500 }) }))
    const res = await post(url, '{}')
    expect([res.status, res.headers['retry-after'], res.body]).toEqual([503, '3', { error: 'queue full, retry later' }])
  })

  it('answers 500 without details when the store fails', async () => {
    const { url } = await start({}, recordingEmit({ fail: () => new Error('disk I/O error') }))
    expect(await post(url, '{}')).toMatchObject({ status: 500, body: { error: 'message not stored' } })
  })

  it.each([
    ['a declared length above maxBytes', { 'content-type': 'application/json' }, 'x'.repeat(101), 413],
    ['a chunked body above maxBytes', { 'content-type': 'text/plain' }, (async function* () { yield 'x'.repeat(60); yield 'x'.repeat(60) })(), 413],
    ['an unaccepted content type', { 'content-type': 'text/csv' }, 'a,b', 415],
    ['no content type', {}, 'a', 415],
    ['invalid JSON', { 'content-type': 'application/json' }, '{"a":', 400],
  ])('refuses %s', async (_, headers, body, status) => {
    const { url, emit } = await start({ maxBytes: 100, contentTypes: ['application/json', 'text/plain'] })
    const res = await post(url, body, headers as Record<string, string>)
    expect(res.status).toBe(status)
    expect(emit.inputs).toEqual([])
    expect(t.logs.find((l) => l.msg === 'request refused')).toMatchObject({ status })
  })

  describe('request charset', () => {
    const send = (url: string, body: Buffer, contentType: string) => post(url, body as unknown as string, { 'content-type': contentType })

    it.each([
      ['application/json; charset=iso-8859-1', Buffer.from('{"name":"MÜLLER, Jörg"}', 'latin1'), { name: 'MÜLLER, Jörg' }],
      ['application/json; charset="ISO-8859-1"', Buffer.from('{"name":"Müller"}', 'latin1'), { name: 'Müller' }],
      ['application/fhir+json;charset=latin1', Buffer.from('{"name":"Müller"}', 'latin1'), { name: 'Müller' }],
      ['application/json; charset=utf-16le', Buffer.from('{"name":"Łukasiewicz"}', 'utf16le'), { name: 'Łukasiewicz' }],
      ['application/json; charset=utf-16', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"name":"Łukasiewicz"}', 'utf16le')]), { name: 'Łukasiewicz' }],
      ['application/json; charset=utf-16be', Buffer.from('{"name":"Łukasiewicz"}', 'utf16le').swap16(), { name: 'Łukasiewicz' }],
      ['text/plain; charset=iso-8859-1', Buffer.from('PID|1||9^^^H^MR||MÜLLER^JÖRG', 'latin1'), 'PID|1||9^^^H^MR||MÜLLER^JÖRG'],
      ['text/plain; charset=utf-16le', Buffer.from('PID|1||9||ŁUKASIEWICZ^JAN', 'utf16le'), 'PID|1||9||ŁUKASIEWICZ^JAN'],
      ['text/plain; charset=UTF-8', Buffer.from('Müller', 'utf8'), 'Müller'],
    ])('%s is decoded as declared', async (contentType, bytes, body) => {
      const { url, emit } = await start({})
      expect((await send(url, bytes, contentType)).status).toBe(202)
      expect(emit.inputs.map((i) => i.body)).toEqual([body])
    })

    it.each([
      ['application/json; charset=shift_jis', 'shift_jis'],
      ['text/plain; charset=windows-1252', 'windows-1252'],
      ['text/plain; charset=""', ''],
      ['text/plain; charset=constructor', 'constructor'],
    ])('%s: a charset it cannot decode answers 415 naming it, and nothing is stored', async (contentType, charset) => {
      const { url, emit } = await start({})
      const res = await send(url, Buffer.from('{"a":1}'), contentType)
      expect([res.status, res.body.error]).toEqual([415, `charset ${JSON.stringify(charset)} is not supported; send utf-8, iso-8859-1, us-ascii, utf-16, utf-16le or utf-16be`])
      expect(emit.inputs).toEqual([])
    })

    it.each([
      ['application/json; charset=utf-8', Buffer.from('{"name":"Müller"}', 'latin1')],
      ['application/json', Buffer.from('{"name":"Müller"}', 'latin1')],
      ['text/plain', Buffer.from('PID|1||MÜLLER', 'latin1')],
      ['text/plain; charset=us-ascii', Buffer.from('PID|1||MÜLLER', 'utf8')],
      ['text/plain; charset=utf-16le', Buffer.from([0x41, 0x00, 0x00, 0xdc])], // a lone low surrogate
    ])('%s: bytes that are not valid in the charset answer 400 and are not stored as garbled text', async (contentType, bytes) => {
      const { url, emit } = await start({})
      const res = await send(url, bytes, contentType)
      expect(res.status).toBe(400)
      expect(res.body.error).toMatch(/^body is not valid (UTF-8|US-ASCII|UTF-16LE)/)
      expect(emit.inputs).toEqual([])
    })
  })

  it('answers 404 on another path and 405 for another method', async () => {
    const { url } = await start({ path: '/in' })
    expect((await post(url + '/out', '{}')).status).toBe(404)
    const res = await post(url + '/in', '{}', { 'content-type': 'application/json' }, 'PUT')
    expect([res.status, res.headers.allow]).toEqual([405, 'POST'])
  })

  it('stop() closes the server', async () => {
    const { url, l } = await start({})
    await l.stop()
    running = undefined
    const err = await post(url, '{}').catch((e) => e)
    expect(err.code).toBe('ECONNREFUSED')
  })

  it('fails to start on a port in use', async () => {
    const { l } = await start({})
    const loaded = await loadComponentConfig(listener, { port: l.address().port })
    const other = (await listener.create(loaded.config as never, t.ctx)) as unknown as Listener
    const err = await other.start(recordingEmit()).catch((e) => e)
    expect(err.message).toBe(`cannot listen on 127.0.0.1:${l.address().port}: EADDRINUSE`)
  })
})

describe('http-listener with JWT bearer tokens', () => {
  let idp: Awaited<ReturnType<typeof loopbackServer>>
  let key: Key
  let otherKey: Key
  let jwk: JWK
  beforeAll(async () => {
    ;({ privateKey: key, publicKey: otherKey } = await generateKeyPair('RS256'))
    jwk = { ...(await exportJWK(otherKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
    ;({ privateKey: otherKey } = await generateKeyPair('RS256'))
    idp = await loopbackServer((req, res) => {
      res.setHeader('content-type', 'application/json')
      if (req.url === '/jwks') return void res.end(JSON.stringify({ keys: [jwk] }))
      if (req.url === '/realm/.well-known/openid-configuration') return void res.end(JSON.stringify({ issuer: idp.origin + '/realm', jwks_uri: idp.origin + '/jwks' }))
      res.statusCode = 404
      res.end('{}')
    })
  })
  afterAll(async () => { await idp.close() })

  const issuer = () => idp.origin + '/realm'
  const token = (claims: Record<string, unknown> = {}, opts: { exp?: string | number; k?: Key; iss?: string; aud?: string } = {}) =>
    new SignJWT({ scope: 'adt.write other', client_id: 'lab-system', ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(opts.iss ?? issuer()).setAudience(opts.aud ?? 'weir').setSubject('svc').setIssuedAt()
      .setExpirationTime(opts.exp ?? '5m').sign(opts.k ?? key)
  const jwtConfig = (extra: Record<string, unknown> = {}) => ({ jwt: { issuer: issuer(), audience: 'weir', jwksUrl: idp.origin + '/jwks', requiredScopes: ['adt.write'], ...extra } })

  it('accepts a valid token and records the client as authSubject', async () => {
    const { url, emit } = await start(jwtConfig())
    const res = await post(url, '{"a":1}', { 'content-type': 'application/json', authorization: `Bearer ${await token()}` })
    expect(res).toMatchObject({ status: 202, body: { id: 'm1' } })
    expect(emit.inputs[0]!.attributes).toMatchObject({ authSubject: 'lab-system' })
  })

  it('finds the keys by issuer discovery when jwksUrl is absent', async () => {
    const { url } = await start({ jwt: { issuer: issuer(), audience: ['other', 'weir'] } })
    expect((await post(url, '{}', { 'content-type': 'application/json', authorization: `Bearer ${await token({ scope: undefined })}` })).status).toBe(202)
    expect(idp.requests.some((r) => r.url === '/realm/.well-known/openid-configuration')).toBe(true)
  })

  const unsigned = (payload: Record<string, unknown>) =>
    Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url') + '.' + Buffer.from(JSON.stringify(payload)).toString('base64url') + '.'

  it.each<[string, () => Promise<string | undefined>, number, string, string | RegExp]>([
    ['missing', async () => undefined, 401, 'missing bearer token', 'Bearer realm="weir"'],
    ['expired', () => token({}, { exp: Math.floor(Date.now() / 1000) - 120 }), 401, 'invalid token: token expired', /error="invalid_token", error_description="token expired"/],
    ['for another audience', () => token({}, { aud: 'someone-else' }), 401, 'invalid token: unexpected "aud" claim value', /error="invalid_token"/],
    ['from another issuer', () => token({}, { iss: 'https://evil.example' }), 401, 'invalid token: unexpected "iss" claim value', /error="invalid_token"/],
    ['without the required scope', () => token({ scope: 'adt.read', scp: ['x'] }), 403, 'token lacks required scope(s): adt.write', /error="insufficient_scope", scope="adt.write"/],
    ['signed by an unknown key', () => token({}, { k: otherKey }), 401, 'invalid token: signature verification failed', /error="invalid_token"/],
    ['with alg none', async () => unsigned({ iss: issuer(), aud: 'weir', exp: Math.floor(Date.now() / 1000) + 300, scope: 'adt.write' }), 401, 'invalid token: "alg" (Algorithm) Header Parameter value not allowed', /error="invalid_token"/],
  ])('refuses a token %s and logs why, without the token', async (_, make, status, reason, challenge) => {
    const { url, emit } = await start(jwtConfig())
    const tok = await make()
    const res = await post(url, '{}', { 'content-type': 'application/json', ...(tok ? { authorization: `Bearer ${tok}` } : {}) })
    expect(res.status).toBe(status)
    expect(res.headers['www-authenticate']).toMatch(challenge)
    expect(emit.inputs).toEqual([])
    expect(t.logs.find((l) => l.msg === 'request refused')).toMatchObject({ status, reason })
    if (tok) {
      expect(t.rawLog()).not.toContain(tok)
      expect(t.rawLog()).not.toContain(tok.split('.')[1])
    }
  })

  it('falls back to the OAuth authorization server metadata for discovery', async () => {
    const as = await loopbackServer((req, res) => {
      res.setHeader('content-type', 'application/json')
      if (req.url === '/.well-known/oauth-authorization-server') return void res.end(JSON.stringify({ issuer: as.origin, jwks_uri: idp.origin + '/jwks' }))
      res.statusCode = 404
      res.end('{}')
    })
    try {
      const { url } = await start({ jwt: { issuer: as.origin, audience: 'weir' } })
      expect((await post(url, '{}', { 'content-type': 'application/json', authorization: `Bearer ${await token({}, { iss: as.origin })}` })).status).toBe(202)
      expect(as.requests.map((r) => r.url)).toEqual(['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server'])
    } finally { await as.close() }
  })

  it('refuses to use discovery metadata that names another issuer', async () => {
    const { url } = await start({ jwt: { issuer: idp.origin + '/realm/', audience: 'weir' } })
    const res = await post(url, '{}', { 'content-type': 'application/json', authorization: `Bearer ${await token()}` })
    expect(res.status).toBe(503)
    expect(t.logs.find((l) => l.msg === 'request refused')?.reason).toBe(`cannot obtain the issuer's keys: issuer discovery at ${idp.origin}/realm/.well-known/openid-configuration names issuer "${idp.origin}/realm", not "${idp.origin}/realm/"`)
  })

  it('answers 503 when the issuer keys cannot be fetched', async () => {
    const { url } = await start(jwtConfig({ jwksUrl: idp.origin + '/missing' }))
    const res = await post(url, '{}', { 'content-type': 'application/json', authorization: `Bearer ${await token()}` })
    expect([res.status, res.headers['retry-after']]).toEqual([503, '5'])
  })
})

describe('http-listener with an API key', () => {
  const KEY = 'k3y-0f-the-lab-system-42'
  it.each([
    ['missing', {}, 401, 'missing API key header x-lab-key'],
    ['wrong', { 'x-lab-key': 'guess-guess-guess' }, 401, 'invalid API key'],
    ['right', { 'x-lab-key': KEY }, 202, undefined],
  ])('%s key → %s', async (_, headers, status, reason) => {
    const { url, emit } = await start({ apiKey: { header: 'X-Lab-Key', value: KEY } })
    const res = await post(url, '{}', { 'content-type': 'application/json', ...headers })
    expect(res.status).toBe(status)
    expect(emit.inputs).toHaveLength(status === 202 ? 1 : 0)
    if (reason) expect(t.logs.find((l) => l.msg === 'request refused')).toMatchObject({ status, reason })
    expect(t.rawLog()).not.toContain(KEY)
    if (status === 202) expect(emit.inputs[0]!.attributes).not.toHaveProperty('x-lab-key')
  })

  it('records the key\'s name as authSubject and scopes Idempotency-Key values by it', async () => {
    const { url, emit } = await start({ apiKey: { value: KEY, name: 'lab-system' } })
    expect((await post(url, '{}', { 'content-type': 'application/json', 'x-api-key': KEY, 'idempotency-key': 'k-1' })).status).toBe(202)
    expect(emit.inputs[0]).toMatchObject({ attributes: { authSubject: 'lab-system' }, dedupeKey: 'http-listener:api-key:lab-system:k-1' })
  })
})

describe('http-listener over TLS', () => {
  const FIXTURES = join(import.meta.dirname, '../../oauth/fixtures')
  const pem = (name: string) => readFileSync(join(FIXTURES, name))
  const send = async (url: string, body: string, dispatcher: Agent, headers: Record<string, string> = {}) => {
    const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, dispatcher })
    return [res.statusCode, await res.body.json()]
  }

  it('serves HTTPS with the configured certificate, and not plain HTTP on that port', async () => {
    const { l, emit } = await start({ tls: { certFile: 'server.pem', key: { $file: 'server.key' } } }, recordingEmit(), FIXTURES)
    const url = `https://127.0.0.1:${l.address().port}/`
    const agent = new Agent({ connect: { ca: pem('ca.pem') } })
    expect(await send(url, '{"tls":true}', agent)).toEqual([202, { id: 'm1' }])
    expect(emit.inputs[0]!.body).toEqual({ tls: true })
    expect(emit.inputs[0]!.attributes!.clientCertSubject).toBeUndefined()
    const plain = await request(url.replace('https', 'http'), { method: 'POST', body: '{}' }).catch((e) => e)
    expect(plain.statusCode ?? plain.code).not.toBe(202)
    await agent.close()
  })

  it('with requireClientCert, refuses a client without a certificate from caFile and records the subject of one with', async () => {
    const { l, emit } = await start({ tls: { certFile: 'server.pem', key: { $file: 'server.key' }, caFile: 'ca.pem', requireClientCert: true } }, recordingEmit(), FIXTURES)
    const url = `https://127.0.0.1:${l.address().port}/`
    const trusted = new Agent({ connect: { ca: pem('ca.pem'), cert: pem('client.pem'), key: pem('client.key') } })
    const none = new Agent({ connect: { ca: pem('ca.pem') } })
    const rogue = new Agent({ connect: { ca: pem('ca.pem'), cert: pem('rogue-client.pem'), key: pem('rogue-client.key') } })
    expect(await send(url, '{"n":1}', trusted)).toEqual([202, { id: 'm1' }])
    for (const refused of [none, rogue]) expect(await send(url, '{"n":2}', refused).catch((e: Error) => e)).toBeInstanceOf(Error)
    expect(emit.inputs.map((i) => [i.body, i.attributes!.clientCertSubject])).toEqual([[{ n: 1 }, 'weir-mtls-client']])
    await Promise.all([trusted, none, rogue].map((a) => a.close()))
  })

  it('with optional client certificates, records and scopes Idempotency-Key values by the subject only of a verified one', async () => {
    const { l, emit } = await start({ tls: { certFile: 'server.pem', key: { $file: 'server.key' }, caFile: 'ca.pem' } }, recordingEmit(), FIXTURES)
    const url = `https://127.0.0.1:${l.address().port}/`
    const trusted = new Agent({ connect: { ca: pem('ca.pem'), cert: pem('client.pem'), key: pem('client.key') } })
    // A self-signed certificate naming the same subject gets in (certificates are optional) as anyone.
    const rogue = new Agent({ connect: { ca: pem('ca.pem'), cert: pem('rogue-client.pem'), key: pem('rogue-client.key') } })
    for (const agent of [trusted, rogue]) expect((await send(url, '{}', agent, { 'idempotency-key': 'k-1' }))[0]).toBe(202)
    expect(emit.inputs.map((i) => [i.attributes!.clientCertSubject, i.dedupeKey])).toEqual([
      ['weir-mtls-client', 'http-listener:client-cert:weir-mtls-client:k-1'],
      [undefined, 'http-listener:anonymous:k-1'],
    ])
    await Promise.all([trusted, rogue].map((a) => a.close()))
  })
})
