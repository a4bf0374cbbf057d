import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { createRefreshTokenStore, createTokenProvider, refreshSchedule, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { loopbackServer } from '../_setup.ts'
import { fixtures, immediate, until, useLeakCheckedServer } from './_helpers.ts'

/** Secrets of servers started (and closed) inside single tests, for the leak check after the file. */
const secretsOfClosedServers: string[] = []
// Every log line and error message of this file (issue 3) is checked for secrets.
const fx = useLeakCheckedServer(() => secretsOfClosedServers)
const { leak, http } = fx
afterEach(() => {
  vi.useRealTimers()
})


function client(id: string, extra: Partial<Parameters<AuthorizationServer['registerClient']>[0]> = {}): CredentialConfig {
  fx.as.registerClient({ clientId: id, authMethod: 'client_secret_basic', secret: `${id}-secret-value`, ...extra })
  return { tokenUrl: fx.as.tokenUrl, clientId: id, clientAuth: { secret: new Secret(`${id}-secret-value`) } }
}
/** Like `until`, for a condition that needs an await (each try is one more loop turn). */
async function untilAsync(cond: () => Promise<boolean>, what: string) {
  for (let i = 0; i < 20_000; i++) {
    if (await cond()) return
    await immediate()
  }
  throw new Error(`timed out waiting for ${what}`)
}

const count = (id: string) => fx.as.requests.filter((r) => r.clientId === id).length

describe('token cache', () => {
  it('200 concurrent getToken() on a cold cache make exactly 1 token request', async () => {
    const p = createTokenProvider('burst', client('burst'), { cache: new TokenCache(), log: leak.log })
    const tokens = await Promise.all(Array.from({ length: 200 }, () => p.getToken()))
    expect(count('burst')).toBe(1)
    expect(new Set(tokens.map((t) => t.value.reveal())).size).toBe(1)
    expect(p.stats()).toEqual({ tokenRequests: 1, tokensFetched: 1, tokenRequestsFailed: 0, tokenErrors: 0 })
  })

  it('refresh schedule: 20% / 30 s lead for long tokens, 10% for short ones, skew capped at 5%', () => {
    expect(refreshSchedule(300_000, 300_000, 10, 0)).toEqual({ refreshAt: 240_000, staleAt: 290_000 })
    expect(refreshSchedule(3_600_000, 3_600_000, 10, 0)).toEqual({ refreshAt: 2_880_000, staleAt: 3_590_000 })
    expect(refreshSchedule(2_000, 2_000, 10, 0)).toEqual({ refreshAt: 1_800, staleAt: 1_900 })
    expect(refreshSchedule(2_000, 2_000, 10, 1).refreshAt).toBe(1_760)
  })

  it('2-second tokens, steady caller over 10 s: one request per 1.8 s (10% lead) and no call after the first waits', async () => {
    const t0 = Date.now()
    let t = t0
    const clock = () => t
    const srv = await startAuthorizationServer({ tokenLifetimeSec: 2, now: clock })
    try {
      srv.registerClient({ clientId: 'steady', authMethod: 'client_secret_post', secret: 'steady-secret-value' })
      const p = createTokenProvider('steady', { tokenUrl: srv.tokenUrl, clientId: 'steady', clientAuth: { method: 'client_secret_post', secret: new Secret('steady-secret-value') } }, { now: clock, random: () => 0, cache: new TokenCache(), log: leak.log })
      let current = (await p.getToken()).value.reveal()
      let waited = 0
      for (let step = 1; step <= 100; step++) {
        t += 100
        const outcome = await Promise.race([p.getToken().then((tok) => tok.value.reveal()), immediate().then(() => 'waited')])
        if (outcome === 'waited') waited++
        if (p.stats().tokenRequests > srv.requests.filter((r) => r.status === 200).length || outcome !== current) {
          // A background refresh started: the virtual clock stands still until the server has
          // answered it and the provider serves the new token (bounded by loop turns, not time).
          const before = current
          await untilAsync(async () => srv.requests.length === p.stats().tokenRequests && srv.requests.every((r) => r.status === 200)
            && (current = (await p.getToken()).value.reveal()) !== before, `refresh at step ${step}`)
        }
      }
      // 10% lead: a 2 s token is refreshed 1.8 s after it was issued, so over 10 s: at 0, 1.8, 3.6, 5.4, 7.2 and 9 s.
      expect(srv.requests.map((r) => r.at - t0)).toEqual([0, 1_800, 3_600, 5_400, 7_200, 9_000])
      expect(p.stats()).toEqual({ tokenRequests: 6, tokensFetched: 6, tokenRequestsFailed: 0, tokenErrors: 0 })
      expect(waited).toBe(0)
      secretsOfClosedServers.push(...srv.secretsSeen())
    } finally {
      await srv.close()
    }
  })

  it('invalidate() drops only the current token', async () => {
    const p = createTokenProvider('inval', client('inval'), { cache: new TokenCache(), log: leak.log })
    const a = await p.getToken()
    p.invalidate({ ...a, value: new Secret('some-other-token-value') })
    expect(await p.getToken()).toBe(a)
    p.invalidate(a)
    const b = await p.getToken()
    expect(b.value.reveal()).not.toBe(a.value.reveal())
    expect(count('inval')).toBe(2)
  })
})

describe('error classes', () => {
  it('a library caller\'s plain-string client secret and refresh token echoed by the token endpoint appear in no error or log line', async () => {
    const secret = 'plain-string-client-secret-4711'
    const refreshToken = 'plain-string-refresh-token-0815'
    const echo = await loopbackServer((req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_grant', error_description: `bad request: ${decodeURIComponent(req.body)}` }))
    })
    const dir = await mkdtemp(join(tmpdir(), 'weir-plain-'))
    try {
      const store = createRefreshTokenStore({ dir, key: 'k'.repeat(32) })
      const p = createTokenProvider('plain', { grant: 'refresh_token', tokenUrl: `${echo.origin}/token`, clientId: 'plain', clientAuth: { method: 'client_secret_post', secret }, refreshToken }, { store, cache: new TokenCache(), log: leak.log })
      const err = leak.error(await p.getToken().catch((e) => e)) as Error & { cause?: { error_description?: string } }
      expect(echo.requests).toHaveLength(1) // the server did get both (it echoed them)
      expect(`${err.message} ${err.cause?.error_description}`).toContain('bad request: grant_type=refresh_token')
      expect(leak.leaks([secret, refreshToken])).toEqual([])
      await p.close()
    } finally {
      await echo.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('invalid_client: typed error with error, error_description, error_uri; fail fast with 0 requests', async () => {
    fx.as.registerClient({ clientId: 'badsecret', authMethod: 'client_secret_basic', secret: 'the-right-secret' })
    let t = Date.now()
    const p = createTokenProvider('bad', { tokenUrl: fx.as.tokenUrl, clientId: 'badsecret', clientAuth: { secret: new Secret('the-wrong-secret') }, failFastMs: 30_000 }, { now: () => t, cache: new TokenCache(), log: leak.log })
    const err = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
    expect(err).toMatchObject({
      code: 'ERR_OAUTH_RESPONSE', status: 401, error: 'invalid_client', error_description: 'client secret mismatch', error_uri: `${fx.as.issuer}/errors#invalid_client`, retryable: false,
      message: `token endpoint ${fx.as.tokenUrl} answered 401 invalid_client: client secret mismatch`,
    })
    expect(count('badsecret')).toBe(1)
    const endpoint = new URL(fx.as.tokenUrl).host
    expect(p.status!()).toEqual({
      tokenRequests: 1, tokensFetched: 0, tokenRequestsFailed: 1, tokenErrors: 1, failingFastUntil: t + 30_000, grant: 'client_credentials', endpoint,
      lastFailure: { at: t, code: 'ERR_OAUTH_RESPONSE', error: 'invalid_client', message: `token endpoint ${fx.as.tokenUrl} answered 401 invalid_client: client secret mismatch` },
    })
    for (let i = 0; i < 5; i++) {
      t += 5_000
      const ff = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
      expect(ff).toMatchObject({ code: 'ERR_OAUTH_FAIL_FAST', error: 'invalid_client', error_description: 'client secret mismatch', error_uri: `${fx.as.issuer}/errors#invalid_client` })
      expect(ff.message).toMatch(/^credential "bad" is failing: token endpoint .* answered 401 invalid_client: client secret mismatch \(no new token request before /)
    }
    expect(count('badsecret')).toBe(1)
    t += 5_001 // past the 30 s window: one new attempt
    await p.getToken().catch(leak.error)
    expect(count('badsecret')).toBe(2)
    expect(p.stats()).toEqual({ tokenRequests: 2, tokensFetched: 0, tokenRequestsFailed: 2, tokenErrors: 2 })
    fx.as.registerClient({ clientId: 'badsecret', authMethod: 'client_secret_basic', secret: 'the-wrong-secret' })
    t += 30_001
    const token = await p.getToken()
    expect(p.status!()).toEqual({ tokenRequests: 3, tokensFetched: 1, tokenRequestsFailed: 2, tokenErrors: 2, fetchedAt: t, expiresAt: token.expiresAt, grant: 'client_credentials', endpoint })
  })

  it('fetchNow: a token request past the cached token and past fail-fast, one per slot however many ask; its outcome is what status() shows', async () => {
    let t = Date.now()
    const p = createTokenProvider('now', { ...client('fetchnow'), failFastMs: 60_000 }, { now: () => t, cache: new TokenCache(), log: leak.log })
    const cached = await p.getToken()
    const [a, b] = await Promise.all([p.fetchNow!(), p.fetchNow!()])
    expect(count('fetchnow')).toBe(2)
    expect(a).toBe(b)
    expect(a.value.reveal()).not.toBe(cached.value.reveal())
    expect((await p.getToken()).value.reveal()).toBe(a.value.reveal())
    fx.as.registerClient({ clientId: 'fetchnow', authMethod: 'client_secret_basic', secret: 'changed-on-the-server' })
    const refused = leak.error(await p.fetchNow!().catch((e) => e)) as Record<string, unknown>
    expect(refused).toMatchObject({ code: 'ERR_OAUTH_RESPONSE', error: 'invalid_client' })
    expect(p.status!()).toMatchObject({ failingFastUntil: t + 60_000, lastFailure: { error: 'invalid_client' } })
    expect(leak.error(await p.fetchNow!().catch((e) => e))).toMatchObject({ code: 'ERR_OAUTH_RESPONSE' }) // asks again while failing fast
    expect(count('fetchnow')).toBe(4)
    client('fetchnow')
    t += 1000
    await p.fetchNow!()
    expect(p.status!()).toMatchObject({ fetchedAt: t, tokenRequests: 5, tokensFetched: 3, tokenRequestsFailed: 2, tokenErrors: 2 })
    expect(p.status!().failingFastUntil).toBeUndefined()
    expect(p.status!().lastFailure).toBeUndefined()
  })

  it('fetchNow with shared token state: asks the server although the state holds a usable token another holder fetched, and publishes the new one to the other holders', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-fetchnow-'))
    try {
      const shared = createRefreshTokenStore({ dir })
      const config = client('fetchshared')
      const [p1, p2] = [0, 1].map(() => createTokenProvider('shared', config, { cache: new TokenCache(), shared, log: leak.log }))
      const first = await p1!.getToken()
      expect(count('fetchshared')).toBe(1)
      const forced = await p2!.fetchNow!()
      expect(count('fetchshared')).toBe(2)
      expect(forced.value.reveal()).not.toBe(first.value.reveal())
      const p3 = createTokenProvider('shared', config, { cache: new TokenCache(), shared, log: leak.log })
      expect((await p3.getToken()).value.reveal()).toBe(forced.value.reveal())
      expect(count('fetchshared')).toBe(2)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('503 with Retry-After twice, then success: three requests spaced as Retry-After says', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const config = client('retry503')
    const p = createTokenProvider('retry503', config, { cache: new TokenCache(), log: leak.log })
    fx.as.setFailure({ status: 503, count: 2, retryAfter: 2, body: 'Service Unavailable' })
    const token = p.getToken()
    await until(() => count('retry503') === 1 && fx.as.requests.at(-1)!.status === 503, 'first request')
    for (let i = 0; i < 50; i++) await immediate() // the client processes the 503 and schedules its retry
    await vi.advanceTimersByTimeAsync(1_999)
    expect(count('retry503')).toBe(1)
    await vi.advanceTimersByTimeAsync(1)
    await until(() => count('retry503') === 2 && fx.as.requests.at(-1)!.status === 503, 'second request')
    for (let i = 0; i < 50; i++) await immediate()
    await vi.advanceTimersByTimeAsync(1_999)
    expect(count('retry503')).toBe(2)
    await vi.advanceTimersByTimeAsync(1)
    const got = await token
    const reqs = fx.as.requests.filter((r) => r.clientId === 'retry503')
    expect(reqs.map((r) => r.status)).toEqual([503, 503, 200])
    expect([reqs[1]!.at - reqs[0]!.at, reqs[2]!.at - reqs[1]!.at]).toEqual([2000, 2000])
    expect(got.tokenType).toBe('Bearer')
  })

  it('a 500 on every attempt gives up after maxAttempts with a retryable error quoting status and excerpt', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const p = createTokenProvider('always500', { ...client('always500'), maxAttempts: 3 }, { cache: new TokenCache(), random: () => 0, log: leak.log })
    fx.as.setFailure({ status: 500, count: 3, body: '<html>boom</html>', contentType: 'text/html' })
    const result = p.getToken().catch((e) => e)
    for (let i = 0; i < 3; i++) {
      await until(() => count('always500') === i + 1 && fx.as.requests.at(-1)!.status === 500, `request ${i + 1}`)
      for (let j = 0; j < 50; j++) await immediate()
      await vi.advanceTimersByTimeAsync(10_000)
    }
    const err = leak.error(await result) as Record<string, unknown>
    expect(err).toMatchObject({ code: 'ERR_HTTP_STATUS', retryable: true, status: 500, message: `token endpoint ${fx.as.tokenUrl} answered 500: "<html>boom</html>"` })
    expect(count('always500')).toBe(3)
  })

  it('429 with Retry-After: 60 after the fetch gave up: no token request for 60 s from any provider sharing the credential; callers get a retryable error with the time left', async () => {
    let t = Date.now()
    const config = { ...client('retry-after-429'), maxAttempts: 1 }
    const cache = new TokenCache()
    const [p, other] = ['ra', 'ra-other'].map((name) => createTokenProvider(name, config, { now: () => t, cache, log: leak.log }))
    fx.as.setFailure({ status: 429, retryAfter: 60, body: '{"error":"slow_down"}' })
    const first = leak.error(await p!.getToken().catch((e) => e)) as Record<string, unknown>
    expect(first).toMatchObject({ code: 'ERR_OAUTH_RESPONSE', error: 'slow_down', status: 429, retryable: true, retryAfterMs: 60_000 })
    const t0 = t
    // Deliveries of both channels over the next 60 s (the simulated clock): none reaches the server.
    for (const [advance, provider] of [[0, p], [1_000, other], [29_000, p], [29_999, other]] as const) {
      t += advance
      const err = leak.error(await provider!.getToken().catch((e) => e)) as Record<string, unknown>
      expect(err).toMatchObject({ code: 'ERR_OAUTH_RESPONSE', error: 'slow_down', status: 429, retryable: true, retryAfterMs: t0 + 60_000 - t })
      expect(err.message).toBe(`credential "${provider === p ? 'ra' : 'ra-other'}" is waiting as the token endpoint asked: ${first.message as string} (no new token request before ${new Date(t0 + 60_000).toISOString()})`)
    }
    expect(count('retry-after-429')).toBe(1)
    t += 1 // 60 s have passed: the next caller asks again
    expect((await other!.getToken()).tokenType).toBe('Bearer')
    expect((await p!.getToken()).tokenType).toBe('Bearer')
    expect(count('retry-after-429')).toBe(2)
  })

  it('a Retry-After over 2 minutes (a day) holds the credential 2 minutes, as between attempts', async () => {
    let t = Date.now()
    const p = createTokenProvider('ra-day', { ...client('retry-after-day'), maxAttempts: 1 }, { now: () => t, cache: new TokenCache(), log: leak.log })
    fx.as.setFailure({ status: 503, retryAfter: 86_400, body: 'Service Unavailable' })
    expect(leak.error(await p.getToken().catch((e) => e))).toMatchObject({ code: 'ERR_HTTP_STATUS', retryable: true, retryAfterMs: 86_400_000 })
    t += 1_000
    expect(leak.error(await p.getToken().catch((e) => e))).toMatchObject({ code: 'ERR_OAUTH_RESPONSE', status: 503, retryable: true, retryAfterMs: 119_000 })
    expect(count('retry-after-day')).toBe(1)
    t += 119_000
    expect((await p.getToken()).tokenType).toBe('Bearer')
    expect(count('retry-after-day')).toBe(2)
  })
})

describe('lifecycle', () => {
  it('close() cancels a pending backoff with ERR_SHUTDOWN', async () => {
    const p = createTokenProvider('closing', client('closing'), { cache: new TokenCache(), log: leak.log })
    fx.as.setFailure({ status: 503, retryAfter: 100 })
    const result = p.getToken().catch((e) => e)
    await until(() => count('closing') === 1 && fx.as.requests.at(-1)!.status === 503, 'first request')
    for (let i = 0; i < 50; i++) await immediate()
    await p.close()
    const err = leak.error(await result) as Error & { code: string }
    expect([err.code, err.message]).toEqual(['ERR_SHUTDOWN', 'credential "closing": provider closed'])
    expect(count('closing')).toBe(1)
  })

  it('a caller can stop waiting with an AbortSignal without cancelling the shared fetch', async () => {
    const p = createTokenProvider('abort', client('abort'), { cache: new TokenCache(), log: leak.log })
    const ac = new AbortController()
    const waiting = p.getToken({ signal: ac.signal }).catch((e) => leak.error(e) as Error)
    const other = p.getToken()
    ac.abort(new Error('caller gave up'))
    expect(((await waiting) as Error).message).toBe('caller gave up')
    expect((await other).tokenType).toBe('Bearer')
    expect(count('abort')).toBe(1)
  })
})

describe('fail fast on every non-retryable token error', () => {
  it.each<[string, Parameters<AuthorizationServer['setFailure']>[0], Record<string, unknown>]>([
    ['400 invalid_request', { status: 400 }, { code: 'ERR_OAUTH_RESPONSE', status: 400, error: 'invalid_request', message: `token endpoint ${'URL'} answered 400 invalid_request` }],
    ['a non-JSON 4xx', { status: 404, body: '<html>Not Found</html>', contentType: 'text/html' }, { code: 'ERR_OAUTH_RESPONSE', status: 404, message: `token endpoint ${'URL'} answered 404 with a body that is not JSON: "<html>Not Found</html>"` }],
    ['a 200 without access_token', { status: 200, body: '{"token_type":"Bearer","expires_in":300}' }, { code: 'ERR_OAUTH_RESPONSE', status: 200, message: `token endpoint ${'URL'} answered 200: "response" body "access_token" property must be a non-empty string` }],
    ['a wrong token_type', { status: 200, body: '{"access_token":"opaque-token-value-1","token_type":"mac"}' }, { code: 'ERR_OAUTH_RESPONSE', status: 200, message: `token endpoint ${'URL'} answered 200: unsupported "token_type" "mac" (expected Bearer)` }],
  ])('%s: the next call inside failFastMs makes 0 requests', async (_name, failure, expected) => {
    const id = `ff-${failure.status}-${Math.random().toString(36).slice(2, 8)}`
    let t = Date.now()
    const p = createTokenProvider(id, { ...client(id), failFastMs: 30_000 }, { now: () => t, cache: new TokenCache(), log: leak.log })
    fx.as.setFailure(failure)
    const err = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
    expect(err).toMatchObject({ ...expected, retryable: false, message: (expected.message as string).replace('URL', fx.as.tokenUrl) })
    expect(count(id)).toBe(1)
    t += 29_000
    const ff = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
    expect([ff.code, (ff.cause as Error).message]).toEqual(['ERR_OAUTH_FAIL_FAST', err.message])
    expect(count(id)).toBe(1)
    t += 1_001
    expect((await p.getToken()).tokenType).toBe('Bearer')
    expect(count(id)).toBe(2)
  })
})

describe('providers sharing a cache (two channels using one credential)', () => {
  it('two static credentials on one cache (as under weir run) each send their own token, with its own scheme', async () => {
    const api = await loopbackServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{}') })
    try {
      const cache = new TokenCache()
      const a = createTokenProvider('partner-a', { grant: 'static', token: new Secret('static-token-partner-a') }, { cache, log: leak.log })
      const b = createTokenProvider('partner-b', { grant: 'static', token: new Secret('static-token-partner-b'), tokenType: 'Token' }, { cache, log: leak.log })
      expect(a.cacheKey).not.toBe(b.cacheKey)
      for (const p of [a, b]) await http.request({ url: `${api.origin}/${p.name}`, credential: p })
      expect(api.requests.map((r) => [r.url, r.headers.authorization])).toEqual([['/partner-a', 'Bearer static-token-partner-a'], ['/partner-b', 'Token static-token-partner-b']])
      expect(b.explain().headers.authorization).toBe('Token [REDACTED]')
      // Neither token is in the cache key, only a fingerprint of it.
      expect([a.cacheKey, b.cacheKey].join()).not.toMatch(/static-token/)
      secretsOfClosedServers.push('static-token-partner-a', 'static-token-partner-b')
      await Promise.all([a.close(), b.close()])
    } finally {
      await api.close()
    }
  })

  it.each([['the wrong secret first', true], ['the right secret first', false]])('one client configured with two secrets (%s): each its own token request, the wrong one failing alone', async (_what, wrongFirst) => {
    const cache = new TokenCache()
    const id = `two-secrets-${wrongFirst ? 'a' : 'b'}`
    const right = client(id)
    const wrong: CredentialConfig = { ...right, clientAuth: { secret: new Secret(`${id}-old-secret`) } }
    const [good, bad] = [createTokenProvider('good', right, { cache, log: leak.log }), createTokenProvider('bad', wrong, { cache, log: leak.log })]
    expect(good.cacheKey).not.toBe(bad.cacheKey)
    const order = wrongFirst ? [bad, good] : [good, bad]
    const outcomes: string[] = []
    for (const p of order) outcomes.push(await p.getToken().then(() => `${p.name} ok`, (e: { code?: string }) => `${p.name} ${e.code}`))
    expect(outcomes).toEqual(wrongFirst ? ['bad ERR_OAUTH_RESPONSE', 'good ok'] : ['good ok', 'bad ERR_OAUTH_RESPONSE'])
    expect(fx.as.requests.filter((r) => r.clientId === id).map((r) => r.status)).toEqual(wrongFirst ? [401, 200] : [200, 401])
    // Neither secret is in the cache key, only a fingerprint of it.
    expect([good.cacheKey, bad.cacheKey].join()).not.toMatch(/secret-value|old-secret/)
    await Promise.all([good.close(), bad.close()])
  })

  it('credentials differing only in extraParams get tokens of their own; the same parameters in another order are one credential', async () => {
    const cache = new TokenCache()
    const base = client('extra-params')
    const [t1, t2] = [{ ...base, extraParams: { tenant: 't1' } }, { ...base, extraParams: { tenant: 't2' } }].map((c, i) => createTokenProvider(`tenant-${i}`, c, { cache, log: leak.log }))
    await t1!.getToken()
    await t2!.getToken()
    expect(fx.as.requests.filter((r) => r.clientId === 'extra-params').map((r) => r.form.tenant)).toEqual(['t1', 't2'])
    // The same parameters in another order are the same credential.
    const again = createTokenProvider('tenant-again', { ...base, extraParams: { b: '2', a: '1' } }, { cache })
    const same = createTokenProvider('tenant-same', { ...base, extraParams: { a: '1', b: '2' } }, { cache })
    expect(again.cacheKey).toBe(same.cacheKey)
    await Promise.all([t1!.close(), t2!.close(), again.close(), same.close()])
  })

  it('DPoP: both providers sign proofs with the key the shared token is bound to', async () => {
    const dAs = await startAuthorizationServer({ dpopNonces: true })
    const dApi = await dAs.createProtectedApi({ dpopNonces: true })
    try {
      dAs.registerClient({ clientId: 'dpop-shared', authMethod: 'client_secret_post', secret: 'dpop-shared-secret', requireDpop: true })
      const config: CredentialConfig = { tokenUrl: dAs.tokenUrl, clientId: 'dpop-shared', clientAuth: { method: 'client_secret_post', secret: new Secret('dpop-shared-secret') }, dpop: true }
      const cache = new TokenCache()
      const [a, b] = [createTokenProvider('a', config, { cache, log: leak.log }), createTokenProvider('b', config, { cache, log: leak.log })]
      expect(a.cacheKey).toBe(b.cacheKey)
      for (const p of [a, b, a, b]) {
        const res = await http.request({ url: `${dApi.url}/x`, credential: p }).catch((e) => { throw leak.error(e) })
        expect(res.status).toBe(200)
      }
      // One token for both; the API nonce learnt by a's first call also serves b.
      expect(dAs.requests.map((r) => [r.status, r.error ?? null])).toEqual([[400, 'use_dpop_nonce'], [200, null]])
      expect(dApi.requests.map((r) => r.status)).toEqual([401, 200, 200, 200, 200])
      secretsOfClosedServers.push(...dAs.secretsSeen())
    } finally {
      await dApi.close()
      await dAs.close()
    }
  })

  it('mTLS: providers with different client certificates never share a certificate-bound token', async () => {
    const tls = { cert: fixtures.serverCert, key: fixtures.serverKey, ca: fixtures.ca }
    const tAs = await startAuthorizationServer({ tls })
    const tApi = await tAs.createProtectedApi({ tls })
    try {
      tAs.registerClient({ clientId: 'mtls-shared', authMethod: 'client_secret_basic', secret: 'mtls-shared-secret' })
      const config = (cert: string, key: string): CredentialConfig => ({
        tokenUrl: tAs.tokenUrl, clientId: 'mtls-shared', clientAuth: { secret: new Secret('mtls-shared-secret') }, tls: { cert, key: new Secret(key), ca: fixtures.ca },
      })
      const cache = new TokenCache()
      const a = createTokenProvider('a', config(fixtures.clientCert, fixtures.clientKey), { cache, log: leak.log })
      const b = createTokenProvider('b', config(fixtures.serverCert, fixtures.serverKey), { cache, log: leak.log })
      const a2 = createTokenProvider('a2', config(fixtures.clientCert, fixtures.clientKey), { cache, log: leak.log })
      expect([a.cacheKey === b.cacheKey, a.cacheKey === a2.cacheKey]).toEqual([false, true])
      for (const p of [a, b, a, b]) {
        const res = await http.request({ url: `${tApi.url}/r`, credential: p }).catch((e) => { throw leak.error(e) })
        expect(res.status).toBe(200)
      }
      expect(tApi.requests.map((r) => r.status)).toEqual([200, 200, 200, 200])
      expect(tAs.requests.map((r) => r.status)).toEqual([200, 200])
      await Promise.all([a.close(), b.close(), a2.close()])
      secretsOfClosedServers.push(...tAs.secretsSeen())
    } finally {
      await tApi.close()
      await tAs.close()
    }
  })

  it("close() of one provider does not fail another provider's wait on the shared fetch", async () => {
    const config = client('shared-close')
    const cache = new TokenCache()
    const a = createTokenProvider('a', config, { cache, log: leak.log })
    const b = createTokenProvider('b', config, { cache, log: leak.log })
    fx.as.setFailure({ status: 503, retryAfter: 100 })
    const aResult = a.getToken().catch((e) => e)
    const bResult = b.getToken().catch((e) => e)
    await until(() => count('shared-close') === 1 && fx.as.requests.at(-1)!.status === 503, 'first request')
    await a.close()
    const aErr = leak.error(await aResult) as Error & { code: string }
    expect([aErr.code, aErr.message]).toEqual(['ERR_SHUTDOWN', 'credential "a": provider closed'])
    // b detaches from the fetch a started and fetches with its own provider at once.
    const bToken = leak.error(await bResult) as { tokenType?: string }
    expect(bToken.tokenType).toBe('Bearer')
    expect(fx.as.requests.filter((r) => r.clientId === 'shared-close').map((r) => r.status)).toEqual([503, 200])
    await b.close()
  })
})
