import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMetrics } from '../../engine/admin/metrics.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { defineComponent } from '../../shared/component.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { createTokenProvider, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { channel, destination, feedSource, useRuntimeFixture } from '../runtime/_helpers.ts'

const SECRET = 'partner-client-secret-5b8e2d41a7'
let as: AuthorizationServer
beforeAll(async () => { as = await startAuthorizationServer() })
afterAll(async () => { await as.close() })

/** A client_credentials credential of client `id` (registered with SECRET) that sends `secret`. */
function credential(id: string, secret: string, extra: Partial<CredentialConfig> = {}): CredentialConfig {
  as.registerClient({ clientId: id, authMethod: 'client_secret_basic', secret: SECRET })
  return { tokenUrl: as.tokenUrl, clientId: id, clientAuth: { secret: new Secret(secret) }, ...extra }
}

describe('token counters', () => {
  it('a token the endpoint issued counts as fetched', async () => {
    const p = createTokenProvider('ok', credential('ok', SECRET), { cache: new TokenCache() })
    await p.getToken()
    expect(p.stats()).toEqual({ tokenRequests: 1, tokensFetched: 1, tokenRequestsFailed: 0, tokenErrors: 0 })
    expect(p.status!()).toMatchObject({ tokenRequests: 1, tokensFetched: 1, tokenRequestsFailed: 0, tokenErrors: 0 })
    await p.close()
  })

  it('invalid_client (a wrong secret) counts as a failed request, not as a fetched token', async () => {
    const p = createTokenProvider('wrong', credential('wrong', 'not-the-registered-secret'), { cache: new TokenCache() })
    await expect(p.getToken()).rejects.toMatchObject({ error: 'invalid_client' })
    expect(as.requests.filter((r) => r.clientId === 'wrong').map((r) => r.status)).toEqual([401])
    expect(p.stats()).toEqual({ tokenRequests: 1, tokensFetched: 0, tokenRequestsFailed: 1, tokenErrors: 1 })
    await p.close()
  })

  it('network errors count as failed requests, each retry included, and never as fetched tokens', async () => {
    const closed = await startAuthorizationServer()
    await closed.close()
    const p = createTokenProvider('down', { tokenUrl: closed.tokenUrl, clientId: 'down', clientAuth: { secret: new Secret(SECRET) }, maxAttempts: 2 }, { cache: new TokenCache(), random: () => 0 })
    await expect(p.getToken()).rejects.toMatchObject({ retryable: true })
    expect(p.stats()).toEqual({ tokenRequests: 2, tokensFetched: 0, tokenRequestsFailed: 2, tokenErrors: 1 })
    await p.close()
  })
})

describe('channel counters and /metrics', () => {
  const rt = useRuntimeFixture()

  it('a channel whose credential gets invalid_client shows no fetched token, one failed request, in its counters and in the metrics', async () => {
    const src = feedSource()
    const uses = defineComponent({
      type: 'uses-partner', kind: 'destination', description: 'd', configSchema: { type: 'object' },
      create: (_c, ctx) => { ctx.credential('partner'); return { deliver: async () => ({ status: 200 }) } },
    })
    const ch = channel({ dir: rt.dir.path, source: src.definition, destinations: [destination('api', '', { definition: uses, config: {} })] })
    ch.credentials = { partner: {} }
    const config = credential('partner-wrong', 'not-the-registered-secret')
    const http = createHttpClient()
    const h = await startChannel(ch, { store: rt.store, log: silentLogger, dataDir: rt.dir.path, http, credential: (name) => createTokenProvider(name, config, { cache: new TokenCache() }) })
    rt.handles.push(h)
    await expect(h.checkCredential('partner')).rejects.toMatchObject({ error: 'invalid_client' })
    expect(h.counters()).toMatchObject({ tokensFetched: 0, tokenRequestsFailed: 1 })

    const metrics = createMetrics({ handles: () => [h], store: () => undefined })
    const value = async (name: string) => (await metrics.registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.credential === 'partner')?.value
    expect(await value('weir_token_requests_total')).toBe(1)
    expect(await value('weir_token_requests_failed_total')).toBe(1)
    expect(await value('weir_tokens_fetched_total')).toBe(0)
    expect(await value('weir_token_fetch_failures_total')).toBe(1)
    await h.stop()
    await http.close()
  })
})
