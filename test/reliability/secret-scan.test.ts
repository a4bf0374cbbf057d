import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exportJWK } from 'jose'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { inParallel, pemLines, report, server, startTestChannel, textCollector, until } from './_helpers.ts'

/**
 * The secret scan: a channel with three credentials (client_secret_basic, client_secret_post,
 * private_key_jwt), one of them misconfigured (invalid_client), tokens revoked mid-stream, and a
 * hostile API that echoes the request's Authorization header and API key back in its error bodies.
 * Every log line, everything written to stdout/stderr, every error and response excerpt in the
 * message log is collected; none may contain a secret, a key, an assertion or a token.
 */
const collector = textCollector()
const basicSecret = randomBytes(24).toString('base64url')
const postSecret = randomBytes(24).toString('base64url')
const apiKey = `key-${randomBytes(20).toString('hex')}`
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
let as: AuthorizationServer

beforeAll(async () => {
  collector.capture()
  as = await startAuthorizationServer({ tokenLifetimeSec: 3600 })
  as.registerClient({ clientId: 'scan-basic', authMethod: 'client_secret_basic', secret: basicSecret })
  as.registerClient({ clientId: 'scan-post', authMethod: 'client_secret_post', secret: postSecret })
  as.registerClient({ clientId: 'scan-jwt', authMethod: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(createPublicKey(privateKey))), alg: 'RS384', kid: 'scan-k1' }] } })
})
afterAll(async () => {
  await as?.close()
  collector.release()
})

describe('secret scan', () => {
  it('finds no secret, key, assertion or token in any log line, output or error text', async () => {
    let n = 0
    // Every 4th request: 500 with the Authorization and API key headers echoed in the body; every 7th: 401 invalid_token.
    const api = await server(async (req, body, res) => {
      n++
      if (n % 7 === 0) return void res.writeHead(401, { 'www-authenticate': `Bearer error="invalid_token", error_description="bad token ${req.headers.authorization}"` }).end(JSON.stringify({ error: 'invalid_token', seen: req.headers.authorization }))
      if (n % 4 === 0) return void res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'boom', echo: { authorization: req.headers.authorization, key: req.headers['x-api-key'] }, body }))
      try {
        await as.verifyAccessToken(req.headers.authorization)
      } catch {
        return void res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end()
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, token: req.headers.authorization }))
    })
    const retry = { maxAttempts: 4, initialDelayMs: 10, maxDelayMs: 50 }
    const breaker = { failureThreshold: 1000, resetAfterMs: 100 }
    const ch = await startTestChannel({
      name: 'secret-scan',
      credentials: {
        basic: { tokenUrl: as.tokenUrl, clientId: 'scan-basic', clientAuth: { method: 'client_secret_basic', secret: { $env: 'SCAN_BASIC' } }, failFastMs: 100 },
        post: { tokenUrl: as.tokenUrl, clientId: 'scan-post', clientAuth: { method: 'client_secret_post', secret: { $env: 'SCAN_POST' } }, failFastMs: 100 },
        jwt: { tokenUrl: as.tokenUrl, clientId: 'scan-jwt', clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid: 'scan-k1', privateKey: { $env: 'SCAN_KEY' } }, failFastMs: 100 },
        wrong: { tokenUrl: as.tokenUrl, clientId: 'scan-basic', clientAuth: { method: 'client_secret_post', secret: { $env: 'SCAN_POST' } }, failFastMs: 100 },
      },
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [
        { name: 'basic', type: 'http', config: { url: `${api.url}/a`, credential: 'basic', secretHeaders: { 'x-api-key': { $env: 'SCAN_API_KEY' } } }, retry, circuitBreaker: breaker },
        { name: 'post', type: 'http', config: { url: `${api.url}/b`, credential: 'post' }, retry, circuitBreaker: breaker },
        { name: 'jwt', type: 'http', config: { url: `${api.url}/c`, credential: 'jwt' }, retry, circuitBreaker: breaker },
        // The broken credential's deliveries retry for as long as the test runs: slower, so that ~100 of them
        // retrying every 50 ms do not load the store's writer and the event loop (with the whole suite beside
        // it on two cores) until no slot is free for the last messages to start.
        { name: 'wrong', type: 'http', config: { url: `${api.url}/d`, credential: 'wrong' }, retry: { ...retry, initialDelayMs: 200, maxDelayMs: 1000 }, circuitBreaker: breaker },
      ],
      // failFastMs 100: a token the hostile API rejected after its renewal (every 7th request is a 401) is
      // kept that long, not the default 30 s, during which every delivery with it waits.
      // 16: up to 128 messages under way (8 × concurrency), so all 120 start although each holds a delivery waiting for the broken credential.
      options: { concurrency: 16 },
    }, { log: collector.log, env: { SCAN_BASIC: basicSecret, SCAN_POST: postSecret, SCAN_KEY: keyPem, SCAN_API_KEY: apiKey } })
    const ids: string[] = []
    let deliveredParts = 0
    let erroredParts = 0
    try {
      await inParallel(120, 8, async (i) => {
        ids.push(await ch.post({ n: i }))
        if (i === 60) as.revokeAll()
      })
      // The misconfigured credential's deliveries keep waiting for it (a credential failure spends no
      // retry budget): the run ends once the others are finished and each of those was tried.
      const settled = async (id: string) => {
        const d = await ch.store.get(id)
        return d !== undefined && d.deliveries.length === 4 && d.deliveries.every((x) => x.destination === 'wrong' ? x.attempts > 0 && x.status !== 'delivered' : x.status === 'delivered' || x.status === 'error')
      }
      await until(async () => (await Promise.all(ids.map(settled))).every(Boolean), 30_000, 'every delivery finished or, for the broken credential, tried')
      // The message log: every error, attempt error and response excerpt.
      for (const id of ids) {
        const d = await ch.store.get(id)
        collector.add(JSON.stringify(d))
        deliveredParts += d!.deliveries.filter((x) => x.status === 'delivered').length
        erroredParts += d!.deliveries.filter((x) => x.status === 'error').length
      }
      const listed = await ch.store.list({ limit: 1000 })
      collector.add(JSON.stringify(listed))
    } finally {
      await ch.close()
      await api.close()
    }
    const secrets = [basicSecret, postSecret, apiKey, ...pemLines(keyPem), ...as.secretsSeen()]
    expect(as.secretsSeen().length).toBeGreaterThan(5) // tokens, assertions and secrets were really in play
    expect(collector.texts.join('\n')).toMatch(/invalid_client/) // the misconfigured credential did fail, and said so
    expect(collector.leaks(secrets)).toEqual([])
    report({
      scenario: 'secret scan', injected: '4 credentials (one invalid_client), revokeAll() mid-stream, an API echoing Authorization and API-key headers in 500 and 401 bodies',
      sent: ids.length * 4, delivered: deliveredParts, lost: 0, duplicated: 0, inError: erroredParts,
      notes: `deliveries (message × destination); ${collector.texts.length} log lines, outputs and message-log records scanned for ${secrets.length} secret values: 0 found; the errors are the deliveries out of retries against the hostile API; the misconfigured credential's deliveries wait for it, retrying`,
    })
  }, 60_000)
})
