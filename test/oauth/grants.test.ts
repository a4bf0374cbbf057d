import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startAuthorizationServer, type AuthorizationServer, type ProtectedApi } from '../../engine/embedded/authorization-server.ts'
import { createTokenProvider, createRefreshTokenStore, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { Secret } from '../../shared/secret.ts'
import { ALGS, keyFor, leakCollector, pemBody, fixtures, immediate, until } from './_helpers.ts'
import { certificateThumbprint } from '../../shared/oauth/keys.ts'

let as: AuthorizationServer
let api: ProtectedApi
let dir: string
const leak = leakCollector()
const http = createHttpClient({ log: leak.log })
const privateKeys: string[] = []

beforeAll(async () => {
  as = await startAuthorizationServer()
  api = await as.createProtectedApi()
  dir = await mkdtemp(join(tmpdir(), 'weir-oauth-'))
})
afterAll(async () => {
  // Every log line and error message of this file, after every test (issue 3); nested suites' afterAll ran first.
  expect(leak.lines.length).toBeGreaterThan(0)
  expect(leakedLater.length).toBeGreaterThan(0)
  expect(leak.leaks([...as.secretsSeen(), ...leakedLater, ...privateKeys.flatMap(pemBody)])).toEqual([])
  await http.close()
  await api.close()
  await as.close()
  await rm(dir, { recursive: true, force: true })
})

/** Secrets of servers closed before the file's afterAll leak check. */
const leakedLater: string[] = []

let n = 0
async function callApi(config: CredentialConfig, name = `c${++n}`) {
  const provider = createTokenProvider(name, config, { log: leak.log, cache: new TokenCache(), store: createRefreshTokenStore({ dir, key: 'k'.repeat(32) }) })
  try {
    const res = await http.request({ url: `${api.url}/fhir/Patient?x=1`, credential: provider })
    return { res, provider, body: JSON.parse(res.body) as { ok: boolean; sub: string; client_id: string; scope: string } }
  } catch (e) {
    throw leak.error(e)
  } finally {
    await provider.close()
  }
}

describe('grant × client authentication against the embedded server and a protected API', () => {
  const methods = ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'none'] as const
  async function clientFor(method: (typeof methods)[number], id: string, grants: Array<'client_credentials' | 'refresh_token'>) {
    const secret = `secret with spaces & symbols:%+/${id}`
    if (method === 'private_key_jwt') {
      const k = await keyFor('ES256', `k-${id}`)
      privateKeys.push(k.pem)
      as.registerClient({ clientId: id, authMethod: method, jwks: { keys: [k.jwk] }, grants, scopes: ['system/Patient.rs', 'offline'] })
      return { method, privateKey: new Secret(k.pem), alg: 'ES256' as const, kid: k.kid }
    }
    if (method === 'none') {
      as.registerClient({ clientId: id, authMethod: method, grants, scopes: ['system/Patient.rs', 'offline'] })
      return { method }
    }
    as.registerClient({ clientId: id, authMethod: method, secret, grants, scopes: ['system/Patient.rs', 'offline'] })
    return { method, secret: new Secret(secret) }
  }

  it.each(methods.filter((m) => m !== 'none'))('client_credentials with %s', async (method) => {
    const id = `cc:${method} id`
    const clientAuth = await clientFor(method, id, ['client_credentials'])
    const { res, body, provider } = await callApi({ tokenUrl: as.tokenUrl, clientId: id, clientAuth, scope: 'system/Patient.rs' })
    expect(res.status).toBe(200)
    expect(body).toMatchObject({ ok: true, client_id: id, scope: 'system/Patient.rs' })
    expect(provider.stats()).toEqual({ tokenRequests: 1, tokensFetched: 1, tokenRequestsFailed: 0, tokenErrors: 0 })
    const rec = as.requests.filter((r) => r.clientId === id)
    expect(rec).toHaveLength(1)
    expect(rec[0]).toMatchObject({ status: 200, authMethod: method, grant: 'client_credentials' })
  })

  it.each(methods)('refresh_token with %s', async (method) => {
    const id = `rt-${method}`
    const clientAuth = await clientFor(method, id, ['refresh_token'])
    const rt = as.issueRefreshToken(id, { scope: 'system/Patient.rs offline', sub: 'alice' })
    const { res, body } = await callApi({ grant: 'refresh_token', tokenUrl: as.tokenUrl, clientId: id, clientAuth, refreshToken: new Secret(rt) })
    expect(res.status).toBe(200)
    expect(body).toMatchObject({ ok: true, sub: 'alice', client_id: id })
    expect(as.requests.filter((r) => r.clientId === id).map((r) => [r.grant, r.status, r.form.refresh_token])).toEqual([['refresh_token', 200, '[REDACTED]']])
  })

  it('client_credentials with tls_client_auth (certificate-bound token, HTTPS API)', async () => {
    const tlsAs = await startAuthorizationServer({ tls: { cert: fixtures.serverCert, key: fixtures.serverKey, ca: fixtures.ca } })
    const tlsApi = await tlsAs.createProtectedApi({ tls: { cert: fixtures.serverCert, key: fixtures.serverKey, ca: fixtures.ca } })
    try {
      tlsAs.registerClient({ clientId: 'mtls-client', authMethod: 'tls_client_auth', tlsCertThumbprint: certificateThumbprint(fixtures.clientCert) })
      const provider = createTokenProvider('mtls', {
        tokenUrl: tlsAs.tokenUrl, clientId: 'mtls-client', clientAuth: { method: 'tls_client_auth' },
        tls: { cert: fixtures.clientCert, key: new Secret(fixtures.clientKey), ca: fixtures.ca },
      }, { log: leak.log, cache: new TokenCache() })
      const res = await http.request({ url: `${tlsApi.url}/r`, credential: provider }).catch((e) => { throw leak.error(e) })
      expect(JSON.parse(res.body)).toMatchObject({ ok: true, client_id: 'mtls-client' })
      expect(tlsAs.requests.map((r) => [r.authMethod, r.status])).toEqual([['tls_client_auth', 200]])
      // The same token without the client certificate is refused by the API (RFC 8705 §3).
      const token = await provider.getToken()
      const { Agent, request } = await import('undici')
      const noCert = new Agent({ connect: { ca: fixtures.ca } })
      const bare = await request(`${tlsApi.url}/r`, { dispatcher: noCert, headers: { authorization: `Bearer ${token.value.reveal()}` } })
      expect([bare.statusCode, bare.headers['www-authenticate']]).toEqual([401, 'Bearer error="invalid_token", error_description="certificate-bound token presented without the bound client certificate"'])
      await bare.body.dump()
      await noCert.close()
      await provider.close()
      leakedLater.push(...tlsAs.secretsSeen())
    } finally {
      await tlsApi.close()
      await tlsAs.close()
    }
  })

  it('static grant', async () => {
    const provider = createTokenProvider('static', { grant: 'static', token: new Secret('static-api-token-value') }, { cache: new TokenCache(), log: leak.log })
    leakedLater.push('static-api-token-value')
    const t = await provider.getToken()
    expect([t.tokenType, t.expiresAt, provider.stats().tokenRequests]).toEqual(['Bearer', Infinity, 0])
    const { headers } = await provider.authorize({ method: 'GET', url: 'http://127.0.0.1/x' })
    expect(headers.authorization).toBe('Bearer static-api-token-value')
  })
})

describe('private_key_jwt with each algorithm', () => {
  it.each(ALGS)('%s', async (alg) => {
    const id = `pkjwt-${alg}`
    const k = await keyFor(alg)
    privateKeys.push(k.pem)
    as.registerClient({ clientId: id, authMethod: 'private_key_jwt', jwks: { keys: [k.jwk] }, allowedAlgs: [alg] })
    const { res, body } = await callApi({ tokenUrl: as.tokenUrl, clientId: id, clientAuth: { method: 'private_key_jwt', privateKey: new Secret(k.pem), alg, kid: k.kid } })
    expect(res.status).toBe(200)
    expect(body.client_id).toBe(id)
  })

  it('accepts a private JWK as the key', async () => {
    const k = await keyFor('ES384', 'jwk-key')
    const { exportJWK } = await import('jose')
    const priv = JSON.stringify({ ...(await exportJWK(k.key)), kid: 'jwk-key' })
    as.registerClient({ clientId: 'jwk-client', authMethod: 'private_key_jwt', jwks: { keys: [k.jwk] } })
    const { body } = await callApi({ tokenUrl: as.tokenUrl, clientId: 'jwk-client', clientAuth: { privateKey: new Secret(priv), alg: 'ES384', kid: 'jwk-key' } })
    expect(body.client_id).toBe('jwk-client')
  })
})

describe('jwt-bearer grant', () => {
  it('with a Google service-account key file (kid = private_key_id, iss = client_email, scope claim)', async () => {
    const k = await keyFor('RS256', 'gkey-1')
    privateKeys.push(k.pem)
    const email = 'svc@project.iam.gserviceaccount.com'
    as.registerClient({ clientId: email, authMethod: 'none', jwks: { keys: [k.jwk] }, grants: ['jwt_bearer'], maxAssertionLifetimeSec: 3600, scopes: ['https://www.googleapis.com/auth/cloud-platform'] })
    const keyFile = JSON.stringify({ type: 'service_account', client_email: email, private_key: k.pem, private_key_id: 'gkey-1', token_uri: as.tokenUrl })
    const { body } = await callApi({
      preset: 'google-service-account', scope: 'https://www.googleapis.com/auth/cloud-platform',
      assertion: { keyFile: new Secret(keyFile), audience: 'token-endpoint' },
    })
    expect(body).toMatchObject({ client_id: email, sub: email, scope: 'https://www.googleapis.com/auth/cloud-platform' })
    const rec = as.requests.filter((r) => r.clientId === email)
    expect(rec.map((r) => [r.grant, r.status, r.form.scope])).toEqual([['jwt_bearer', 200, undefined]])
  })

  it('a keyFile that is not JSON (a PEM put under keyFile) is a config error that does not quote the key; a path that cannot be read names neither', async () => {
    const k = await keyFor('RS256')
    privateKeys.push(k.pem)
    const config = (keyFile: Secret | string): CredentialConfig => ({ grant: 'jwt_bearer', tokenUrl: as.tokenUrl, clientId: 'svc', assertion: { keyFile, alg: 'RS256' } })
    const failure = (c: CredentialConfig) => { try { createTokenProvider('svc', c, { cache: new TokenCache() }); return undefined } catch (e) { return leak.error(e) as Error & { code?: string } } }
    // Before, a Secret that was not JSON was opened as a file path: ENOENT, with the key as the path.
    const pem = failure(config(new Secret(k.pem, '$file:keys/svc.pem')))
    expect([pem?.code, pem?.message]).toEqual(['ERR_CONFIG_INVALID', 'credential "svc" #/assertion/keyFile: not a service-account JSON key with private_key (give the key\'s JSON, e.g. {"$file": "key.json"})'])
    // A library caller's plain string is still a path; one that cannot be read is a config error too.
    const path = failure(config(join(dir, 'no-such-key.json')))
    expect([path?.code, path?.message]).toEqual(['ERR_CONFIG_INVALID', 'credential "svc" #/assertion/keyFile: the key file cannot be read (ENOENT)'])
  })

  it.each(['client_secret_basic', 'private_key_jwt'] as const)('with client authentication %s and a subject', async (method) => {
    const id = `jb-${method}`
    const ak = await keyFor('PS256', 'assert-key')
    const ck = await keyFor('ES256', 'client-key')
    as.registerClient({ clientId: id, authMethod: method, secret: 'jb-secret-value-123', jwks: { keys: [ak.jwk, ck.jwk] }, allowedAlgs: ['PS256', 'ES256'], grants: ['jwt_bearer'] })
    const clientAuth = method === 'client_secret_basic' ? { secret: new Secret('jb-secret-value-123') } : { privateKey: new Secret(ck.pem), alg: 'ES256' as const, kid: ck.kid }
    const { body } = await callApi({ grant: 'jwt_bearer', tokenUrl: as.tokenUrl, clientId: id, clientAuth, assertion: { privateKey: new Secret(ak.pem), alg: 'PS256', kid: ak.kid, sub: 'bob@example.org' } })
    expect(body).toMatchObject({ client_id: id, sub: 'bob@example.org' })
  })
})

describe('DPoP and discovery', () => {
  it('DPoP-bound token with server nonces (one retry) on token and API requests', async () => {
    const dAs = await startAuthorizationServer({ dpopNonces: true })
    const dApi = await dAs.createProtectedApi({ dpopNonces: true })
    try {
      dAs.registerClient({ clientId: 'dpop-client', authMethod: 'client_secret_post', secret: 'dpop-secret-value', requireDpop: true })
      const provider = createTokenProvider('dpop', { tokenUrl: dAs.tokenUrl, clientId: 'dpop-client', clientAuth: { method: 'client_secret_post', secret: new Secret('dpop-secret-value') }, dpop: true }, { log: leak.log, cache: new TokenCache() })
      const res = await http.request({ url: `${dApi.url}/x`, credential: provider }).catch((e) => { throw leak.error(e) })
      expect(JSON.parse(res.body)).toMatchObject({ ok: true, client_id: 'dpop-client' })
      expect(dAs.requests.map((r) => [r.status, r.error ?? null, r.dpop])).toEqual([[400, 'use_dpop_nonce', true], [200, null, true]])
      expect(dApi.requests.map((r) => r.status)).toEqual([401, 200])
      expect((await provider.getToken()).tokenType).toBe('DPoP')
      // Nonces are cached: the next API call needs no retry.
      await http.request({ url: `${dApi.url}/y`, method: 'POST', body: '{}', credential: provider }).catch((e) => { throw leak.error(e) })
      expect(dApi.requests.map((r) => r.status)).toEqual([401, 200, 200])
      expect(dApi.requests[2]!.headers.authorization).toBe('DPoP [REDACTED]')
      leakedLater.push(...dAs.secretsSeen())
    } finally {
      await dApi.close()
      await dAs.close()
    }
  })

  it('discovers the token endpoint from issuer (RFC 8414)', async () => {
    as.registerClient({ clientId: 'disc', authMethod: 'client_secret_basic', secret: 'disc-secret-value' })
    const { body } = await callApi({ issuer: as.issuer, clientId: 'disc', clientAuth: { secret: new Secret('disc-secret-value') } })
    expect(body.client_id).toBe('disc')
  })
})


describe('full matrix over TLS: every grant × client authentication method', () => {
  let tAs: AuthorizationServer
  let tApi: ProtectedApi
  const tls = { cert: fixtures.serverCert, key: fixtures.serverKey, ca: fixtures.ca }
  beforeAll(async () => {
    tAs = await startAuthorizationServer({ tls })
    tApi = await tAs.createProtectedApi({ tls })
  })
  afterAll(async () => {
    leakedLater.push(...tAs.secretsSeen())
    await tApi.close()
    await tAs.close()
  })

  const grants = ['client_credentials', 'refresh_token', 'jwt_bearer'] as const
  const methods = ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth', 'none'] as const
  const cases = grants.flatMap((g) => methods.filter((m) => !(g === 'client_credentials' && m === 'none')).map((m) => [g, m] as const))

  it.each(cases)('%s with %s', async (grant, method) => {
    const id = `m-${grant}-${method}`
    const secret = `${id}-secret value+&`
    const ck = await keyFor('RS384', `ck-${id}`)
    const ak = await keyFor('EdDSA', `ak-${id}`)
    privateKeys.push(ck.pem, ak.pem)
    tAs.registerClient({
      clientId: id, authMethod: method, grants: [grant], jwks: { keys: [ck.jwk, ak.jwk] }, allowedAlgs: method === 'client_secret_jwt' ? ['HS256', 'EdDSA'] : ['RS384', 'EdDSA'],
      ...(method.startsWith('client_secret') ? { secret } : {}),
      ...(method === 'tls_client_auth' ? { tlsSubjectDn: 'CN=weir-mtls-client' } : {}),
    })
    const clientAuth = method === 'private_key_jwt' ? { method, privateKey: new Secret(ck.pem), alg: 'RS384' as const, kid: ck.kid }
      : method.startsWith('client_secret') ? { method, secret: new Secret(secret) } : { method }
    const config: CredentialConfig = {
      grant, tokenUrl: tAs.tokenUrl, clientId: id, clientAuth,
      tls: method === 'tls_client_auth' ? { cert: fixtures.clientCert, key: new Secret(fixtures.clientKey), ca: fixtures.ca } : { ca: fixtures.ca },
      ...(grant === 'refresh_token' ? { refreshToken: new Secret(tAs.issueRefreshToken(id, { sub: 'carol' })) } : {}),
      ...(grant === 'jwt_bearer' ? { assertion: { privateKey: new Secret(ak.pem), alg: 'EdDSA' as const, kid: ak.kid, sub: 'dave' } } : {}),
    }
    const provider = createTokenProvider(id, config, { log: leak.log, cache: new TokenCache(), store: createRefreshTokenStore({ dir, key: 'k'.repeat(32) }) })
    try {
      const res = await http.request({ url: `${tApi.url}/fhir/Patient`, credential: provider }).catch((e) => { throw leak.error(e) })
      expect(JSON.parse(res.body)).toMatchObject({ ok: true, client_id: id, sub: grant === 'refresh_token' ? 'carol' : grant === 'jwt_bearer' ? 'dave' : id })
      expect(tAs.requests.filter((r) => r.clientId === id).map((r) => [r.grant, r.authMethod ?? 'none', r.status])).toEqual([[grant, method, 200]])
    } finally {
      await provider.close()
    }
  })
})

describe('clock offset from the Date header', () => {
  it('a server clock 10 minutes ahead: assertions are re-dated once, and the JWT exp is read in local time', async () => {
    const skewed = await startAuthorizationServer({ now: () => Date.now() + 600_000, omitExpiresIn: true })
    try {
      const k = await keyFor('ES256', 'skew')
      skewed.registerClient({ clientId: 'skew', authMethod: 'private_key_jwt', jwks: { keys: [k.jwk] } })
      const p = createTokenProvider('skew', { tokenUrl: skewed.tokenUrl, clientId: 'skew', clientAuth: { privateKey: new Secret(k.pem), alg: 'ES256', kid: 'skew' } }, { log: leak.log, cache: new TokenCache() })
      const t = await p.getToken()
      expect(skewed.requests.map((r) => [r.status, r.error_description ?? null])).toEqual([[401, 'client assertion: assertion expired'], [200, null]])
      expect(Math.abs(t.expiresAt - (Date.now() + 300_000))).toBeLessThan(3_000)
      leakedLater.push(...skewed.secretsSeen())
    } finally {
      await skewed.close()
    }
  })
})


describe('pluggable assertion signing', () => {
  it('a signer (e.g. a KMS) gets the header values and claims and its JWT is sent', async () => {
    const k = await keyFor('ES256', 'kms-key')
    privateKeys.push(k.pem)
    as.registerClient({ clientId: 'kms', authMethod: 'private_key_jwt', jwks: { keys: [k.jwk] } })
    const { SignJWT } = await import('jose')
    const seen: Array<Record<string, unknown>> = []
    // The configured key is only a public placeholder for headers; the signer holds the real key.
    const p = createTokenProvider('kms', { tokenUrl: as.tokenUrl, clientId: 'kms', clientAuth: { privateKey: new Secret(k.pem), alg: 'ES256', kid: 'kms-key' } }, {
      cache: new TokenCache(), log: leak.log,
      signer: async (key, claims) => {
        seen.push({ alg: key.alg, ...key.headers, iss: claims.iss, aud: claims.aud })
        return new SignJWT(claims).setProtectedHeader({ alg: key.alg, ...key.headers }).sign(k.key)
      },
    })
    expect((await p.getToken().catch((e) => { throw leak.error(e) })).tokenType).toBe('Bearer')
    expect(seen).toEqual([{ alg: 'ES256', kid: 'kms-key', iss: 'kms', aud: as.tokenUrl }])
  })

  afterEach(() => {
    vi.useRealTimers()
  })

  /**
   * A client registered with a fresh key, and a signer standing for a KMS: its first call hangs
   * until the test answers it (`answerFirst`), later calls sign at once. It records the signal each
   * call got (the provider's public signer type has two parameters; the third arrives all the same).
   */
  async function hangingKms(clientId: string) {
    const k = await keyFor('ES256', clientId)
    privateKeys.push(k.pem)
    as.registerClient({ clientId, authMethod: 'private_key_jwt', jwks: { keys: [k.jwk] } })
    const { SignJWT } = await import('jose')
    const sign = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: clientId }).sign(k.key)
    const signals: AbortSignal[] = []
    let answerFirst: () => Promise<void> = async () => undefined
    const signer = (_key: unknown, claims: Record<string, unknown>, ...rest: unknown[]): Promise<string> => {
      signals.push(rest[0] as AbortSignal)
      if (signals.length > 1) return sign(claims)
      return new Promise<string>((resolve) => { answerFirst = async () => resolve(await sign(claims)) })
    }
    const config: CredentialConfig = { tokenUrl: as.tokenUrl, clientId, clientAuth: { privateKey: new Secret(k.pem), alg: 'ES256', kid: clientId } }
    return { config, signer, signals, answerFirst: () => answerFirst() }
  }

  const requestsOf = (clientId: string) => as.requests.filter((r) => r.clientId === clientId).length

  it('a signer that never answers is bounded by timeoutMs: a retryable timeout, the next caller signs again, the late JWT is never sent', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const kms = await hangingKms('kms-hung')
    const p = createTokenProvider('kms-hung', { ...kms.config, timeoutMs: 5_000, maxAttempts: 1 }, { cache: new TokenCache(), log: leak.log, signer: kms.signer })
    try {
      // A caller without a signal of its own: only the token request's timeout can end its wait.
      let outcome: unknown
      void p.getToken().then(() => (outcome = 'token'), (e: unknown) => (outcome = leak.error(e)))
      await until(() => kms.signals.length === 1, 'the first signer call')
      await vi.advanceTimersByTimeAsync(4_999)
      expect(outcome).toBeUndefined()
      await vi.advanceTimersByTimeAsync(1)
      await until(() => outcome !== undefined, 'the first caller to give up')
      expect(outcome).toMatchObject({ code: 'ERR_HTTP_TIMEOUT', retryable: true, message: `token request to ${as.tokenUrl}: signing the client_assertion timed out after 5000 ms` })
      expect([kms.signals[0]!.aborted, (kms.signals[0]!.reason as Error).name]).toEqual([true, 'TimeoutError'])
      // The next caller starts a new fetch, and the signer signs this time.
      const token = await p.getToken().catch((e) => { throw leak.error(e) })
      expect([kms.signals.length, requestsOf('kms-hung')]).toEqual([2, 1])
      // The KMS answers the first call at last: its JWT is dropped, and the cached token stays.
      await kms.answerFirst()
      for (let i = 0; i < 50; i++) await immediate()
      expect(requestsOf('kms-hung')).toBe(1)
      expect((await p.getToken()).value.reveal()).toBe(token.value.reveal())
    } finally {
      await p.close()
    }
  })

  it("close() ends a hung signer call: another provider sharing the credential stops waiting for it and fetches for itself", async () => {
    const kms = await hangingKms('kms-close')
    // A timeout no test run reaches: only close() can end the first signer call.
    const config = { ...kms.config, timeoutMs: 600_000, maxAttempts: 1 }
    const cache = new TokenCache()
    const [a, b] = ['a', 'b'].map((name) => createTokenProvider(name, config, { cache, log: leak.log, signer: kms.signer }))
    const aResult = a!.getToken().catch((e: unknown) => leak.error(e))
    let bOutcome: unknown
    void b!.getToken().then((t) => (bOutcome = t), (e: unknown) => (bOutcome = leak.error(e)))
    await until(() => kms.signals.length === 1, 'the first signer call')
    await a!.close()
    expect(await aResult).toMatchObject({ code: 'ERR_SHUTDOWN', message: 'credential "a": provider closed' })
    await until(() => bOutcome !== undefined, "b's token")
    expect(bOutcome).toMatchObject({ tokenType: 'Bearer' })
    expect([kms.signals.length, requestsOf('kms-close')]).toEqual([2, 1])
    expect(kms.signals[0]!.aborted).toBe(true)
    await kms.answerFirst()
    await b!.close()
  })
})
