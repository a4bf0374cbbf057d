import { describe, expect, it } from 'vitest'
import { HttpStatusError, PermanentError } from '../../shared/errors.ts'
import { classify } from '../../shared/failure.ts'
import { createTokenProvider, FailFastError, OAuthChallengeError, OAuthResponseError, ReauthRequiredError, TokenCache } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { loopbackServer, staticTokenProvider } from '../_setup.ts'
import { useLeakCheckedServer } from './_helpers.ts'

const fx = useLeakCheckedServer()
const { leak, http } = fx

describe('a failure of the credential is retried by a delivery', () => {
  const refused = new OAuthResponseError('token endpoint https://fx.as.example/token answered 401 invalid_client', { status: 401, error: 'invalid_client' })
  it.each([
    ['invalid_client', refused, { retryable: true, credential: true }],
    ['invalid_grant (refresh token)', new ReauthRequiredError('refresh token rejected'), { retryable: true, credential: true }],
    ['fail-fast, coming back when the next token request may go', new FailFastError('api', refused, 31_000, 1_000), { retryable: true, retryAfterMs: 30_000, credential: true }],
    ['401 after renewal', new OAuthChallengeError('POST https://api.example/in answered 401 invalid_token again after renewing the access token', 401, { scheme: 'Bearer', parameters: { error: 'invalid_token' } }), { retryable: true, credential: true }],
    ['403 insufficient_scope: the API refuses this request, not the credential', new HttpStatusError('POST https://api.example/in answered 403', 403), { retryable: false }],
    ['401 naming another error (insufficient_scope), not renewed: this request, not the credential', new OAuthChallengeError('POST https://api.example/in answered 401 insufficient_scope', 401, { scheme: 'Bearer', parameters: { error: 'insufficient_scope' } }, { credentialOutage: false }), { retryable: false }],
    ['a component that decides the failure is permanent', new PermanentError('patient unknown', { cause: refused }), { retryable: false }],
  ])('%s', (_name, error, expected) => {
    expect(classify(error)).toEqual(expected)
  })
})

describe('an API that rejects the renewed token too', () => {
  it('renews once per failFastMs, however many requests meet the 401; the next renewal after it', async () => {
    const id = 'hold-401'
    fx.as.registerClient({ clientId: id, authMethod: 'client_secret_basic', secret: `${id}-secret-value` })
    let calls = 0
    const api = await loopbackServer((_req, res) => {
      calls++
      res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end()
    })
    let now = Date.now()
    const p = createTokenProvider('api', { tokenUrl: fx.as.tokenUrl, clientId: id, failFastMs: 30_000, clientAuth: { secret: new Secret(`${id}-secret-value`) } }, { cache: new TokenCache(), log: leak.log, now: () => now })
    const url = `${api.url}/in`
    const send = () => http.request({ method: 'POST', url, body: '{}', credential: p }).then(() => { throw new Error('delivered') }, (e: unknown) => leak.error(e) as Error & { code: string })
    const tokens = () => fx.as.requests.filter((r) => r.clientId === id).length
    try {
      const first = await send()
      expect([first.code, first.message]).toEqual(['ERR_OAUTH_CHALLENGE', `POST ${url} answered 401 invalid_token again after renewing the access token`])
      expect([tokens(), calls]).toEqual([2, 2])
      const later = await Promise.all(Array.from({ length: 5 }, send))
      expect(later.map((e) => e.message)).toEqual(Array(5).fill(`POST ${url} answered 401 invalid_token; not renewed: the token renewed after an earlier 401 was rejected too`))
      expect([tokens(), calls]).toEqual([2, 7]) // one call each, no token request
      now += 30_000
      await send()
      expect([tokens(), calls]).toEqual([3, 9]) // failFastMs later: one renewal again
    } finally {
      await p.close()
      await api.close()
    }
  })
})

describe('a 401 from the API, through the shared client', () => {
  it.each([
    ['naming insufficient_scope: not renewed, fails this message alone', 'Bearer error="insufficient_scope", scope="patient/Observation.write"', false],
    ['invalid_token on every request: renewed, rejected again, the credential is down', 'Bearer error="invalid_token"', true],
  ])('%s', async (_name, challenge, outage) => {
    const api = await loopbackServer((_, res) => {
      res.writeHead(401, { 'www-authenticate': challenge })
      res.end()
    })
    try {
      const err = await http.request({ method: 'POST', url: api.url, body: '{}', credential: staticTokenProvider('api', 'eyJ0ZXN0.cGF5bG9hZA.c2ln') }).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(OAuthChallengeError)
      expect(classify(err).retryable).toBe(outage)
    } finally {
      await api.close()
    }
  })
})
