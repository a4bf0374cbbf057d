// A delivery that fails against an API that quotes the request back: its Authorization header (the
// access token Weir holds) and the message body (which carries a JWT of the sender's). Neither the
// token nor the JWT may reach a log line, the stored error or excerpt, or the message view.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { shownMessage } from '../../engine/message-view.ts'
import { server, startTestChannel, textCollector } from '../reliability/_helpers.ts'

const SECRET = 'delivery-error-client-secret-value'
const USER_JWT = `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(JSON.stringify({ sub: 'sender', scope: 'orders' })).toString('base64url')}.c2VuZGVyLXNpZ25hdHVyZS1ieXRlcw`
const collector = textCollector()
let as: AuthorizationServer

beforeAll(async () => {
  as = await startAuthorizationServer({ tokenLifetimeSec: 3600 })
  as.registerClient({ clientId: 'echoed', authMethod: 'client_secret_post', secret: SECRET })
})
afterAll(async () => {
  await as?.close()
})

describe('a delivery error quoting the request', () => {
  it('keeps Weir\'s access token and the sender\'s JWT out of the logs, the stored error and excerpt, and the message view', async () => {
    const api = await server((req, body, res) => {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`rejected POST ${req.url} Authorization: ${req.headers.authorization} with body ${body}`)
    })
    const ch = await startTestChannel({
      name: 'echo',
      credentials: { api: { tokenUrl: as.tokenUrl, clientId: 'echoed', clientAuth: { method: 'client_secret_post', secret: { $env: 'ECHO_SECRET' } } } },
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'api', type: 'http', config: { url: `${api.url}/orders`, credential: 'api' }, retry: { maxAttempts: 1 } }],
    }, { log: collector.log, env: { ECHO_SECRET: SECRET } })
    try {
      const id = await ch.post({ order: 17, forwardedAuthorization: `Bearer ${USER_JWT}` })
      await ch.handle.whenIdle({ timeoutMs: 10_000 })
      const d = (await ch.store.get(id))!
      expect(d.message.status).toBe('error')
      const stored = JSON.stringify(d)
      const view = JSON.stringify(shownMessage(d))
      expect(d.attempts[0]!.excerpt).toContain('Authorization: Bearer [REDACTED]') // the echo was there, redacted
      const tokens = as.secretsSeen().filter((s) => s.startsWith('eyJ'))
      expect(tokens.length).toBeGreaterThan(0) // a token was really sent
      expect(collector.texts.some((t) => /answered 400/.test(t))).toBe(true) // the failure was logged
      collector.add(stored.replace(USER_JWT, '')) // the body stored as sent is the sender's; its errors and excerpts are not
      collector.add(view)
      expect(collector.leaks([SECRET, USER_JWT, ...as.secretsSeen()])).toEqual([])
    } finally {
      await ch.close()
      await api.close()
    }
  })
})
