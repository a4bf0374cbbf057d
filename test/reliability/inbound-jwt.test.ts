import { generateKeyPairSync } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SignJWT, UnsecuredJWT, exportJWK, type JWTPayload } from 'jose'
import { request } from 'undici'
import httpListener from '../../components/sources/http-listener.ts'
import type { ComponentDefinition, Source } from '../../shared/component.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { loadComponentConfig, recordingEmit, testContext, type TestContext } from '../_setup.ts'
import { report, server } from './_helpers.ts'

// A loopback identity provider of our own: its JWKS, and tokens signed with any claims we like.
const known = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' })
let idp: Awaited<ReturnType<typeof server>>
let tc: TestContext
let source: Source
let url: string
const emit = recordingEmit()
const http = createHttpClient()
const issued: string[] = []

const now = () => Math.floor(Date.now() / 1000)
async function token(claims: JWTPayload, options: { key?: typeof known.privateKey; kid?: string } = {}): Promise<string> {
  const t = await new SignJWT({ iss: idp.url, aud: 'weir-in', sub: 'sender-1', scope: 'adt.write', iat: now(), exp: now() + 300, ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? 'idp-1', typ: 'at+jwt' })
    .sign(options.key ?? known.privateKey)
  issued.push(t)
  return t
}

beforeAll(async () => {
  const jwk = { ...(await exportJWK(known.publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' }
  idp = await server((req, _body, res) => {
    if (req.url === '/jwks') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }))
    res.writeHead(404).end()
  })
  const { config, problems } = await loadComponentConfig(httpListener as ComponentDefinition, { port: 0, path: '/in', jwt: { issuer: idp.url, audience: 'weir-in', jwksUrl: `${idp.url}/jwks`, requiredScopes: ['adt.write'] } })
  expect(problems).toEqual([])
  tc = await testContext({ http })
  source = await (httpListener as ComponentDefinition<'source'>).create(config!, tc.ctx)
  await source.start(emit)
  url = `http://127.0.0.1:${source.address!()!.port}/in`
})
afterAll(async () => {
  await source?.stop()
  await tc?.cleanup()
  await http.close()
  await idp?.close()
})

const post = async (authorization?: string) => {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) }, body: '{"mrn":"42"}' })
  return { status: res.statusCode, challenge: String(res.headers['www-authenticate'] ?? ''), body: await res.body.text() }
}

describe('http-listener with inbound JWT protection', () => {
  const cases: Array<[string, () => Promise<string | undefined>, number, RegExp]> = [
    ['no token', async () => undefined, 401, /^Bearer realm="weir"$/],
    ['expired', async () => `Bearer ${await token({ iat: now() - 3600, exp: now() - 600 })}`, 401, /error="invalid_token", error_description="token expired"/],
    ['wrong issuer', async () => `Bearer ${await token({ iss: 'https://evil.example' })}`, 401, /error="invalid_token".*iss/],
    ['wrong audience', async () => `Bearer ${await token({ aud: 'another-api' })}`, 401, /error="invalid_token".*aud/],
    ['missing scope', async () => `Bearer ${await token({ scope: 'adt.read' })}`, 403, /error="insufficient_scope", scope="adt.write"/],
    ['alg none', async () => { const t = new UnsecuredJWT({ iss: idp.url, aud: 'weir-in', sub: 'sender-1', scope: 'adt.write', exp: now() + 300 }).encode(); issued.push(t); return `Bearer ${t}` }, 401, /error="invalid_token"/],
    ['unknown key (same kid, other key)', async () => `Bearer ${await token({}, { key: stranger.privateKey })}`, 401, /error="invalid_token".*signature verification failed/],
    ['unknown key (unknown kid)', async () => `Bearer ${await token({}, { key: stranger.privateKey, kid: 'other' })}`, 401, /error="invalid_token"/],
    ['not a bearer token', async () => 'Basic dXNlcjpwYXNz', 401, /error="invalid_request"/],
  ]

  it.each(cases)('refuses %s', async (_name, auth, status, challenge) => {
    const before = emit.inputs.length
    const r = await post(await auth())
    expect(r.status).toBe(status)
    expect(r.challenge).toMatch(challenge)
    expect(emit.inputs.length).toBe(before)
  })

  it('accepts a valid token (control), and the refusals stored nothing', async () => {
    const r = await post(`Bearer ${await token({})}`)
    expect(r.status).toBe(202)
    expect(emit.inputs).toHaveLength(1)
    expect(emit.inputs[0]!.attributes!.authSubject).toBe('sender-1')
    report({ scenario: 'inbound JWT refusals', injected: cases.map(([n]) => n).join(', '), sent: cases.length + 1, delivered: emit.inputs.length, lost: 0, duplicated: 0, notes: `${cases.length} refused (401/403), 1 valid token accepted` })
  })

  it('never writes a presented token into the log', () => {
    const log = tc.rawLog()
    expect(log).toMatch(/request refused/)
    for (const t of issued) expect(log).not.toContain(t.split('.').slice(0, 2).join('.'))
  })
})
