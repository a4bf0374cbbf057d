import { join } from 'node:path'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { builtinComponents } from '../../components/index.ts'
import { credentialViews } from '../../engine/admin/api.ts'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { startChannel, type ChannelHandle } from '../../engine/runtime/index.ts'
import { loadChannelObject } from '../../shared/config/load.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { createTokenProvider, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { feedSource, until, useRuntimeFixture } from '../runtime/_helpers.ts'
import { call, sample } from './_admin.ts'

const CLIENT_SECRET = 'shared-metrics-secret-4b8e1f0a7c'
const CHANNELS = ['billing', 'lab-results'] as const

/**
 * Per test: channels "billing" and "lab-results", each with credential "partner" defined alike (so
 * their providers share one token cache slot, as in `weir run`), against an embedded authorization
 * server, and an admin server attached to them.
 */
function useSharedCredential() {
  const rt = useRuntimeFixture()
  const http = createHttpClient({ log: silentLogger })
  const fx = { as: undefined as unknown as AuthorizationServer, admin: undefined as unknown as AdminServer, clientId: 'shared', feeds: [] as Array<ReturnType<typeof feedSource>>, handles: [] as ChannelHandle[] }
  afterAll(() => http.close())
  beforeEach(async () => {
    const as = fx.as = await startAuthorizationServer()
    as.registerClient({ clientId: fx.clientId, authMethod: 'client_secret_basic', secret: CLIENT_SECRET, scopes: ['results.write'] })
    fx.admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: OPEN_CONFIG, log: silentLogger, http })
    const cache = new TokenCache()
    const credential = (name: string, ch: { credentials: Record<string, unknown> }) => createTokenProvider(name, ch.credentials[name] as CredentialConfig, { log: silentLogger, dataDir: rt.dir.path, cache })
    const partner = { grant: 'client_credentials', tokenUrl: as.tokenUrl, clientId: fx.clientId, clientAuth: { method: 'client_secret_basic', secret: { $env: 'PARTNER_SECRET' } }, scope: 'results.write' }
    fx.feeds = CHANNELS.map(() => feedSource())
    fx.handles = []
    for (const [i, name] of CHANNELS.entries()) {
      const raw = { name, source: { type: 'feed' }, credentials: { partner }, destinations: [{ name: 'api', type: 'http', config: { url: rt.api.url, credential: 'partner' } }] }
      const loaded = await loadChannelObject(raw, { file: join(rt.dir.path, `${name}.json`), env: { PARTNER_SECRET: CLIENT_SECRET }, registry: createRegistry([...builtinComponents, fx.feeds[i]!.definition]) })
      fx.handles.push(await startChannel(loaded, { store: rt.store, log: silentLogger, dataDir: rt.dir.path, observer: fx.admin.observer, http, credential }))
    }
    rt.handles.push(...fx.handles)
    fx.admin.attach({ store: rt.store, handles: fx.handles })
  })
  afterEach(async () => {
    await fx.admin.close()
    await fx.as.close()
  })
  return Object.assign(fx, { rt })
}

describe('token metrics of a credential two channels share', () => {
  const fx = useSharedCredential()
  /** Token requests the authorization server received from this test's client. */
  const atServer = () => fx.as.requests.filter((r) => r.clientId === fx.clientId).length
  /** The token request counters /metrics reports, by channel, and their sum. */
  const reported = async () => {
    const a = await call(fx.admin.url, '/metrics')
    expect(a.status).toBe(200)
    const byChannel = CHANNELS.map((channel) => sample(a.text, 'weir_token_requests_total', { channel, credential: 'partner' }) ?? 0)
    return { byChannel, sum: byChannel.reduce((x, y) => x + y, 0), failures: CHANNELS.map((channel) => sample(a.text, 'weir_token_fetch_failures_total', { channel, credential: 'partner' }) ?? 0) }
  }

  it('sums, over the channels, to the token requests the authorization server received: one fetch is counted once', async () => {
    // Both channels need a token at once: one fetch for the shared slot.
    await Promise.all(fx.feeds.map((f, i) => f.emit({ n: i })))
    await until(() => fx.rt.api.received.length === 2, 10_000, 'both messages delivered')
    expect(atServer()).toBe(1)
    let m = await reported()
    expect(m.sum).toBe(1)
    expect(m.byChannel.sort()).toEqual([0, 1])

    // More messages in both channels reuse the cached token: no request, no count.
    for (let n = 0; n < 5; n++) for (const f of fx.feeds) await f.emit({ n })
    await until(() => fx.rt.api.received.length === 12, 10_000, 'all messages delivered')
    expect(atServer()).toBe(1)
    expect((await reported()).sum).toBe(1)

    // A retryable failure then a success (two requests) through the second channel's operator check.
    fx.as.setFailure({ status: 503, count: 1 })
    await fx.handles[1]!.checkCredential('partner')
    expect(atServer()).toBe(3)
    m = await reported()
    expect(m.sum).toBe(3)
    expect(m.failures).toEqual([0, 0])

    // The dashboard's view of the credential agrees: shown once, the same total.
    const views = credentialViews(fx.handles)
    expect(views).toHaveLength(1)
    expect(views[0]!.channels.sort()).toEqual([...CHANNELS].sort())
    expect(views[0]!.requests.sent).toBe(atServer())
  })
})
