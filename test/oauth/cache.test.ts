import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { createTokenProvider, refreshSchedule, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { leakCollector } from './_helpers.ts'

const leak = leakCollector()
let as: AuthorizationServer
beforeAll(async () => {
  as = await startAuthorizationServer()
})
afterAll(async () => {
  await as.close()
})
afterEach(() => {
  vi.useRealTimers()
})

const immediate = () => new Promise<void>((r) => setImmediate(r))
/** Lets real I/O progress (setImmediate is not faked) until `cond` holds. */
async function until(cond: () => boolean, what: string) {
  for (let i = 0; i < 20_000; i++) {
    if (cond()) return
    await immediate()
  }
  throw new Error(`timed out waiting for ${what}`)
}

function client(id: string, extra: Partial<Parameters<AuthorizationServer['registerClient']>[0]> = {}): CredentialConfig {
  as.registerClient({ clientId: id, authMethod: 'client_secret_basic', secret: `${id}-secret-value`, ...extra })
  return { tokenUrl: as.tokenUrl, clientId: id, clientAuth: { secret: new Secret(`${id}-secret-value`) } }
}
const count = (id: string) => as.requests.filter((r) => r.clientId === id).length

describe('token cache', () => {
  it('200 concurrent getToken() on a cold cache make exactly 1 token request', async () => {
    const p = createTokenProvider('burst', client('burst'), { cache: new TokenCache(), log: leak.log })
    const tokens = await Promise.all(Array.from({ length: 200 }, () => p.getToken()))
    expect(count('burst')).toBe(1)
    expect(new Set(tokens.map((t) => t.value.reveal())).size).toBe(1)
    expect(p.stats()).toEqual({ tokenRequests: 1, tokenErrors: 0 })
  })

  it('refresh schedule: 20% / 30 s lead for long tokens, 10% for short ones, skew capped at 5%', () => {
    expect(refreshSchedule(300_000, 300_000, 10, 0)).toEqual({ refreshAt: 240_000, staleAt: 290_000 })
    expect(refreshSchedule(3_600_000, 3_600_000, 10, 0)).toEqual({ refreshAt: 2_880_000, staleAt: 3_590_000 })
    expect(refreshSchedule(2_000, 2_000, 10, 0)).toEqual({ refreshAt: 1_800, staleAt: 1_900 })
    expect(refreshSchedule(2_000, 2_000, 10, 1).refreshAt).toBe(1_760)
  })

  it('2-second tokens, steady caller over 10 s: requests = lifetimes ± 1 and no call after the first waits', async () => {
    let t = Date.now()
    const clock = () => t
    const srv = await startAuthorizationServer({ tokenLifetimeSec: 2, now: clock })
    try {
      srv.registerClient({ clientId: 'steady', authMethod: 'client_secret_post', secret: 'steady-secret-value' })
      const p = createTokenProvider('steady', { tokenUrl: srv.tokenUrl, clientId: 'steady', clientAuth: { method: 'client_secret_post', secret: new Secret('steady-secret-value') } }, { now: clock, cache: new TokenCache(), log: leak.log })
      const seen = new Set([(await p.getToken()).value.reveal()])
      let waited = 0
      for (let step = 1; step <= 100; step++) {
        t += 100
        const outcome = await Promise.race([p.getToken().then((tok) => tok.value.reveal()), immediate().then(() => 'waited')])
        if (outcome === 'waited') waited++
        else seen.add(outcome)
        // A background refresh was started: give it real time to land (the virtual clock stands still meanwhile).
        for (let i = 0; i < 250 && p.stats().tokenRequests > seen.size; i++) {
          await new Promise((r) => setTimeout(r, 2))
          seen.add((await p.getToken()).value.reveal())
        }
      }
      const lifetimes = 10 / 2
      expect(srv.requests.length).toBeGreaterThanOrEqual(lifetimes - 1)
      expect(srv.requests.length).toBeLessThanOrEqual(lifetimes + 1)
      expect(waited).toBe(0)
      expect(srv.requests.every((r) => r.status === 200)).toBe(true)
    } finally {
      await srv.close()
    }
  })

  it('invalidate() drops only the current token', async () => {
    const p = createTokenProvider('inval', client('inval'), { cache: new TokenCache() })
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
  it('invalid_client: typed error with error, error_description, error_uri; fail fast with 0 requests', async () => {
    as.registerClient({ clientId: 'badsecret', authMethod: 'client_secret_basic', secret: 'the-right-secret' })
    let t = Date.now()
    const p = createTokenProvider('bad', { tokenUrl: as.tokenUrl, clientId: 'badsecret', clientAuth: { secret: new Secret('the-wrong-secret') }, failFastMs: 30_000 }, { now: () => t, cache: new TokenCache(), log: leak.log })
    const err = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
    expect(err).toMatchObject({
      code: 'ERR_OAUTH_RESPONSE', status: 401, error: 'invalid_client', error_description: 'client secret mismatch', error_uri: `${as.issuer}/errors#invalid_client`, retryable: false,
      message: `token endpoint ${as.tokenUrl} answered 401 invalid_client: client secret mismatch`,
    })
    expect(count('badsecret')).toBe(1)
    for (let i = 0; i < 5; i++) {
      t += 5_000
      const ff = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
      expect(ff).toMatchObject({ code: 'ERR_OAUTH_FAIL_FAST', error: 'invalid_client', error_description: 'client secret mismatch', error_uri: `${as.issuer}/errors#invalid_client` })
      expect(ff.message).toMatch(/^credential "bad" is failing: token endpoint .* answered 401 invalid_client: client secret mismatch \(no new token request before /)
    }
    expect(count('badsecret')).toBe(1)
    t += 5_001 // past the 30 s window: one new attempt
    await p.getToken().catch(() => undefined)
    expect(count('badsecret')).toBe(2)
    expect(p.stats()).toEqual({ tokenRequests: 2, tokenErrors: 2 })
  })

  it('503 with Retry-After twice, then success: three requests spaced as Retry-After says', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const config = client('retry503')
    const p = createTokenProvider('retry503', config, { cache: new TokenCache(), log: leak.log })
    as.setFailure({ status: 503, count: 2, retryAfter: 2, body: 'Service Unavailable' })
    const token = p.getToken()
    await until(() => count('retry503') === 1 && as.requests.at(-1)!.status === 503, 'first request')
    for (let i = 0; i < 50; i++) await immediate() // the client processes the 503 and schedules its retry
    await vi.advanceTimersByTimeAsync(1_999)
    expect(count('retry503')).toBe(1)
    await vi.advanceTimersByTimeAsync(1)
    await until(() => count('retry503') === 2 && as.requests.at(-1)!.status === 503, 'second request')
    for (let i = 0; i < 50; i++) await immediate()
    await vi.advanceTimersByTimeAsync(1_999)
    expect(count('retry503')).toBe(2)
    await vi.advanceTimersByTimeAsync(1)
    const got = await token
    const reqs = as.requests.filter((r) => r.clientId === 'retry503')
    expect(reqs.map((r) => r.status)).toEqual([503, 503, 200])
    expect([reqs[1]!.at - reqs[0]!.at, reqs[2]!.at - reqs[1]!.at]).toEqual([2000, 2000])
    expect(got.tokenType).toBe('Bearer')
  })

  it('a 500 on every attempt gives up after maxAttempts with a retryable error quoting status and excerpt', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const p = createTokenProvider('always500', { ...client('always500'), maxAttempts: 3 }, { cache: new TokenCache(), random: () => 0, log: leak.log })
    as.setFailure({ status: 500, count: 3, body: '<html>boom</html>', contentType: 'text/html' })
    const result = p.getToken().catch((e) => e)
    for (let i = 0; i < 3; i++) {
      await until(() => count('always500') === i + 1 && as.requests.at(-1)!.status === 500, `request ${i + 1}`)
      for (let j = 0; j < 50; j++) await immediate()
      await vi.advanceTimersByTimeAsync(10_000)
    }
    const err = leak.error(await result) as Record<string, unknown>
    expect(err).toMatchObject({ code: 'ERR_HTTP_STATUS', retryable: true, status: 500, message: `token endpoint ${as.tokenUrl} answered 500: "<html>boom</html>"` })
    expect(count('always500')).toBe(3)
  })
})

describe('lifecycle', () => {
  it('close() cancels a pending backoff with ERR_SHUTDOWN', async () => {
    const p = createTokenProvider('closing', client('closing'), { cache: new TokenCache(), log: leak.log })
    as.setFailure({ status: 503, retryAfter: 100 })
    const result = p.getToken().catch((e) => e)
    await until(() => count('closing') === 1 && as.requests.at(-1)!.status === 503, 'first request')
    for (let i = 0; i < 50; i++) await immediate()
    await p.close()
    const err = await result
    expect([err.code, err.message]).toEqual(['ERR_SHUTDOWN', 'credential "closing": provider closed'])
    expect(count('closing')).toBe(1)
  })

  it('a caller can stop waiting with an AbortSignal without cancelling the shared fetch', async () => {
    const p = createTokenProvider('abort', client('abort'), { cache: new TokenCache() })
    const ac = new AbortController()
    const waiting = p.getToken({ signal: ac.signal }).catch((e) => e)
    const other = p.getToken()
    ac.abort(new Error('caller gave up'))
    expect((await waiting).message).toBe('caller gave up')
    expect((await other).tokenType).toBe('Bearer')
    expect(count('abort')).toBe(1)
  })
})

describe('no secret in logs or errors of this file', () => {
  it('leaks nothing', () => {
    expect(leak.texts.length).toBeGreaterThan(0)
    expect(leak.leaks(as.secretsSeen())).toEqual([])
  })
})
