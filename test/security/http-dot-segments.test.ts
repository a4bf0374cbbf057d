import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import httpDest from '../../components/destinations/http.ts'
import { loadComponentConfig, loopbackServer, message, staticTokenProvider, testContext, type TestContext } from '../_setup.ts'

// Finding: with `…/Patient/{body.id}`, a body {"id": ".."} was PUT to /api/FHIR/R4/?x=1 with the bearer token.
const TOKEN = 'dot-segment-test-token'
let t: TestContext
let api: Awaited<ReturnType<typeof loopbackServer>>
beforeAll(async () => { api = await loopbackServer((_, res) => { res.statusCode = 200; res.end('{}') }) })
afterAll(async () => { await api.close() })
afterEach(async () => { await t?.cleanup(); api.requests.length = 0 })

const opts = { signal: new AbortController().signal, idempotencyKey: 'msg-1:out' }

async function destination(url: string) {
  const loaded = await loadComponentConfig(httpDest, { url, method: 'PUT' })
  expect(loaded.problems).toEqual([])
  t = await testContext({ credentials: { fhir: staticTokenProvider('fhir', TOKEN) } })
  return httpDest.create({ ...loaded.config, credential: 'fhir' } as never, t.ctx)
}

describe('http destination: message values cannot add dot segments to the path', () => {
  it.each(['..', '.'])('id %j fails permanently and sends nothing (no token leaves)', async (id) => {
    const d = await destination(`${api.origin}/api/FHIR/R4/Patient/{body.id}?x=1`)
    const err = await d.deliver(message({ id }), opts).catch((e) => e)
    expect([err.code, err.retryable, err.message]).toEqual([
      'ERR_DELIVERY_PERMANENT', false,
      `url path segment "${id}" made from message msg-1 would change the request path; "." and ".." are not allowed as path segments`,
    ])
    expect(api.requests).toEqual([])
  })

  it('two fields that together make ".." are refused too', async () => {
    const d = await destination(`${api.origin}/api/{body.a}{body.b}/x`)
    const err = await d.deliver(message({ a: '.', b: '.' }), opts).catch((e) => e)
    expect(err.code).toBe('ERR_DELIVERY_PERMANENT')
    expect(api.requests).toEqual([])
  })

  it('dots inside a segment, encoded dots and dots in the query reach the server unchanged', async () => {
    const d = await destination(`${api.origin}/api/Patient/{body.id}?q={body.q}`)
    await d.deliver(message({ id: 'a..b', q: '..' }), opts)
    await d.deliver(message({ id: '%2e%2e', q: '.' }), opts)
    expect(api.requests.map((r) => [r.method, r.url, r.headers.authorization])).toEqual([
      ['PUT', '/api/Patient/a..b?q=..', `Bearer ${TOKEN}`],
      ['PUT', '/api/Patient/%252e%252e?q=.', `Bearer ${TOKEN}`],
    ])
  })

  it('a dot segment in the configured url is a config problem', async () => {
    const { problems } = await loadComponentConfig(httpDest, { url: 'https://example.org/api/../admin/{id}' })
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([['/destinations/0/config/url', 'must not contain "." or ".." path segments']])
  })
})
