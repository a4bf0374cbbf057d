// The provider's hooks for an operator's check (weir token): onRetry tells of each retry as the log
// line does, and checkToken asks the token endpoint past every cached or stored token without
// recording a refusal for the engines, storing the rotated refresh token as a refresh always does.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { ServerResponse } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRefreshTokenStore, createTokenProvider, TokenCache, type CredentialConfig, type RefreshTokenStore } from '../../shared/oauth/index.ts'
import type { TokenRetry } from '../../shared/oauth/token-slot.ts'
import { Secret } from '../../shared/secret.ts'
import { loopbackServer } from '../_setup.ts'
import { leakCollector } from './_helpers.ts'

const SECRET = 'right-client-secret-value'
const WRONG = 'wrong-client-secret-value'
const leak = leakCollector()

/**
 * The token endpoint: checks the client secret, rotates refresh tokens (rt-N → rt-N+1), and
 * answers the queued failures first (a 503 with or without Retry-After).
 */
const idp = { refreshToken: 'rt-0', issued: 0, failures: [] as Array<{ status: number; retryAfter?: string }> }
let server: Awaited<ReturnType<typeof loopbackServer>>
let tokenUrl: string
let dir: string

function answer(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-check-token-'))
  server = await loopbackServer((req, res) => {
    const form = new URLSearchParams(req.body)
    const failure = idp.failures.shift()
    if (failure) return answer(res, failure.status, { error: 'temporarily_unavailable' }, failure.retryAfter ? { 'retry-after': failure.retryAfter } : {})
    if (form.get('client_id') !== 'app' || form.get('client_secret') !== SECRET) return answer(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' })
    if (form.get('grant_type') === 'refresh_token') {
      if (form.get('refresh_token') !== idp.refreshToken) return answer(res, 400, { error: 'invalid_grant' })
      idp.refreshToken = `rt-${++idp.issued}`
      return answer(res, 200, { access_token: `at-${idp.issued}`, token_type: 'Bearer', expires_in: 3600, refresh_token: idp.refreshToken })
    }
    answer(res, 200, { access_token: `cc-${++idp.issued}`, token_type: 'Bearer', expires_in: 3600 })
  })
  tokenUrl = `${server.origin}/token`
})
afterEach(() => {
  idp.failures = []
})
afterAll(async () => {
  await server.close()
  await rm(dir, { recursive: true, force: true })
  expect(leak.lines.length).toBeGreaterThan(0)
  expect(leak.leaks([SECRET, WRONG])).toEqual([])
})

const requests = () => server.requests.length
const clientCredentials = (secret = SECRET): CredentialConfig => ({ grant: 'client_credentials', tokenUrl, clientId: 'app', clientAuth: { method: 'client_secret_post', secret: new Secret(secret) } })
const refreshCredential = (secret = SECRET): CredentialConfig => ({ grant: 'refresh_token', tokenUrl, clientId: 'app', clientAuth: { method: 'client_secret_post', secret: new Secret(secret) } })

let n = 0
/** A fresh refresh-token store under the test directory, holding `refreshToken` under `crm` when given. */
async function storeWith(refreshToken?: string): Promise<RefreshTokenStore> {
  const store = createRefreshTokenStore({ dir: join(dir, `store-${++n}`), key: 'check-token-test-key' })
  if (refreshToken) await store.write('crm', { refreshToken }, 0)
  return store
}

/** The log lines of the provider's retries, parsed. */
function retryLogLines(): Array<Record<string, unknown>> {
  return leak.lines.flatMap((l) => l.split('\n')).filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).filter((o) => o.msg === 'token request failed, retrying')
}

describe('onRetry', () => {
  it('503 with Retry-After, 503 without, then 200: told of each retry (attempt, delay, Retry-After, the redacted error), as the log line says it', async () => {
    const retries: TokenRetry[] = []
    const logged = retryLogLines().length
    const p = createTokenProvider('cc', clientCredentials(), { cache: new TokenCache(), log: leak.log, random: () => 0, onRetry: (r) => retries.push(r) })
    idp.failures = [{ status: 503, retryAfter: '1' }, { status: 503 }]
    const before = requests()
    try {
      expect((await p.getToken()).value.reveal()).toMatch(/^cc-/)
    } finally {
      await p.close()
    }
    expect(requests() - before).toBe(3)
    const error = `token endpoint ${tokenUrl} answered 503 temporarily_unavailable`
    expect(retries).toEqual([
      { attempt: 1, maxAttempts: 4, delayMs: 1000, retryAfterMs: 1000, error },
      // No Retry-After: the backoff (250 ms × 2^(attempt - 1), halved by the injected random 0).
      { attempt: 2, maxAttempts: 4, delayMs: 250, error },
    ])
    expect(retryLogLines().slice(logged).map(({ attempt, delayMs, retryAfterMs, err }) => ({ attempt, delayMs, retryAfterMs, err }))).toEqual([
      { attempt: 1, delayMs: 1000, retryAfterMs: 1000, err: error },
      { attempt: 2, delayMs: 250, retryAfterMs: undefined, err: error },
    ])
  })

  it('is told of the retries of a check too; a listener that throws does not end the fetch', async () => {
    const retries: TokenRetry[] = []
    const p = createTokenProvider('cc', clientCredentials(), {
      cache: new TokenCache(), log: leak.log, random: () => 0,
      onRetry: (r) => {
        retries.push(r)
        throw new Error('listener bug')
      },
    })
    idp.failures = [{ status: 503 }]
    try {
      expect((await p.checkToken()).value.reveal()).toMatch(/^cc-/)
    } finally {
      await p.close()
    }
    expect(retries).toEqual([{ attempt: 1, maxAttempts: 4, delayMs: 125, error: `token endpoint ${tokenUrl} answered 503 temporarily_unavailable` }])
  })
})

describe('checkToken', () => {
  it('refresh_token: a new token from the endpoint although the store and the cache hold a valid one; the rotated refresh token is stored, the cached token stays', async () => {
    idp.refreshToken = 'rt-start-1'
    const store = await storeWith('rt-start-1')
    const cache = new TokenCache()
    const engine = createTokenProvider('crm', refreshCredential(), { store, cache, log: leak.log })
    // The operator's check in the engine's process: same cache, same store.
    const check = createTokenProvider('crm', refreshCredential(), { store, cache, log: leak.log })
    try {
      const cached = await engine.getToken()
      const stored = await store.read('crm')
      expect(stored?.accessToken).toBe(cached.value.reveal())
      const before = requests()
      const checked = await check.checkToken()
      expect(requests() - before).toBe(1)
      expect(checked.value.reveal()).not.toBe(cached.value.reveal())
      // Rotated with the compare-and-swap write, as the engine's refresh writes it.
      const after = await store.read('crm')
      expect([after?.refreshToken, after?.version]).toEqual([idp.refreshToken, stored!.version + 1])
      // The cache keeps its token: the engine goes on with it without asking.
      expect((await engine.getToken()).value.reveal()).toBe(cached.value.reveal())
      expect(requests() - before).toBe(1)
      // A second check asks again, with the rotated refresh token.
      expect((await check.checkToken()).value.reveal()).not.toBe(checked.value.reveal())
      expect([requests() - before, (await store.read('crm'))?.refreshToken]).toEqual([2, idp.refreshToken])
    } finally {
      await engine.close()
      await check.close()
    }
  })

  it('refresh_token: a wrong client secret is refused, and neither the store nor the cache records it: the engine does not fail fast', async () => {
    idp.refreshToken = 'rt-start-2'
    const store = await storeWith('rt-start-2')
    const cache = new TokenCache()
    const check = createTokenProvider('crm', refreshCredential(WRONG), { store, cache, log: leak.log })
    const sameProcess = createTokenProvider('crm', refreshCredential(WRONG), { store, cache, log: leak.log })
    const engine = createTokenProvider('crm', refreshCredential(), { store, cache: new TokenCache(), log: leak.log })
    // Unlike the check, an engine's own refusal is recorded for the others (a store of its own here).
    const other = await storeWith('rt-start-2')
    const refusing = createTokenProvider('crm', refreshCredential(WRONG), { store: other, cache: new TokenCache(), log: leak.log })
    try {
      const err = leak.error(await check.checkToken().catch((e) => e)) as Record<string, unknown>
      expect([err.code, err.message]).toEqual(['ERR_OAUTH_RESPONSE', `token endpoint ${tokenUrl} answered 401 invalid_client: client authentication failed`])
      expect((await store.read('crm'))?.failure).toBeUndefined()
      expect(sameProcess.status!().failingFastUntil).toBeUndefined()
      expect(leak.error(await refusing.getToken().catch((e) => e))).toMatchObject({ error: 'invalid_client' })
      expect([(await other.read('crm'))?.failure?.error, refusing.status!().failingFastUntil]).toEqual(['invalid_client', expect.any(Number)])
      // The engine asks the server and gets a token.
      const before = requests()
      expect((await engine.getToken()).value.reveal()).toMatch(/^at-/)
      expect(requests() - before).toBe(1)
    } finally {
      for (const p of [check, sameProcess, engine, refusing]) await p.close()
    }
  })

  it('refresh_token: a refusal another holder recorded does not hold the check back; the check succeeding clears it', async () => {
    idp.refreshToken = 'rt-start-3'
    const store = await storeWith('rt-start-3')
    const wrong = createTokenProvider('crm', refreshCredential(WRONG), { store, cache: new TokenCache(), log: leak.log })
    const check = createTokenProvider('crm', refreshCredential(), { store, cache: new TokenCache(), log: leak.log })
    try {
      leak.error(await wrong.getToken().catch((e) => e))
      expect((await store.read('crm'))?.failure).toMatchObject({ error: 'invalid_client' })
      const before = requests()
      expect((await check.checkToken()).value.reveal()).toMatch(/^at-/)
      expect(requests() - before).toBe(1)
      const after = await store.read('crm')
      expect([after?.failure, after?.refreshToken]).toEqual([undefined, idp.refreshToken])
    } finally {
      await wrong.close()
      await check.close()
    }
  })

  it('refresh_token: a rejected refresh token (invalid_grant) is the check\'s error, not recorded in the store', async () => {
    idp.refreshToken = 'rt-start-4'
    const store = await storeWith('rt-not-the-servers')
    const check = createTokenProvider('crm', refreshCredential(), { store, cache: new TokenCache(), log: leak.log })
    try {
      const err = leak.error(await check.checkToken().catch((e) => e)) as Record<string, unknown>
      expect(err.code).toBe('ERR_OAUTH_REAUTH_REQUIRED')
      expect((await store.read('crm'))?.failure).toBeUndefined()
    } finally {
      await check.close()
    }
  })

  it('shared state (a cluster): asks past the token the state holds; a wrong secret is not recorded for the engines', async () => {
    const shared = await storeWith()
    const engine = createTokenProvider('cc', clientCredentials(), { shared, cache: new TokenCache(), log: leak.log })
    const check = createTokenProvider('cc', clientCredentials(), { shared, cache: new TokenCache(), log: leak.log })
    const wrong = createTokenProvider('cc', clientCredentials(WRONG), { shared, cache: new TokenCache(), log: leak.log })
    const other = createTokenProvider('cc', clientCredentials(), { shared, cache: new TokenCache(), log: leak.log })
    try {
      const first = await engine.getToken()
      const before = requests()
      const checked = await check.checkToken()
      expect(requests() - before).toBe(1)
      expect(checked.value.reveal()).not.toBe(first.value.reveal())
      expect(leak.error(await wrong.checkToken().catch((e) => e))).toMatchObject({ code: 'ERR_OAUTH_RESPONSE', error: 'invalid_client' })
      expect(requests() - before).toBe(2)
      // Another engine takes the published token and does not fail fast.
      expect((await other.getToken()).value.reveal()).toBe(checked.value.reveal())
      expect(requests() - before).toBe(2)
      expect(other.status!().failingFastUntil).toBeUndefined()
    } finally {
      for (const p of [engine, check, wrong, other]) await p.close()
    }
  })
})
