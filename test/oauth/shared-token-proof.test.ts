import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { createTokenProvider, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import type { CredentialTokenProvider } from '../../shared/oauth/provider.ts'
import { Secret } from '../../shared/secret.ts'
import { useEmbeddedPostgres, useTokenStateClusters } from '../_postgres.ts'

const KEY = 'p'.repeat(32)
const pg = useEmbeddedPostgres()
/** `n` token states over one fresh database, each its own pool, each speaking for engine `engine-<i>`. */
const cluster = useTokenStateClusters(pg, 'token_proof', KEY)
let as: AuthorizationServer

beforeAll(async () => { as = await startAuthorizationServer({ tokenLifetimeSec: 600 }) })
afterAll(async () => { await as?.close() })


let clients = 0
/** A client of the server, its right and a wrong config, and the token requests the server got for it. */
function client() {
  const id = `token-proof-client-${++clients}`
  const secret = `${id}-secret-value`
  as.registerClient({ clientId: id, authMethod: 'client_secret_basic', secret, scopes: ['read'] })
  const config = (s: string): CredentialConfig => ({ tokenUrl: as.tokenUrl, clientId: id, scope: 'read', clientAuth: { method: 'client_secret_basic', secret: new Secret(s) } })
  return { right: config(secret), wrong: config('not-the-secret-value'), statuses: () => as.requests.filter((r) => r.clientId === id).map((r) => r.status) }
}

/** Four engines over one fresh database; each engine's provider has its own in-process cache. */
async function engines() {
  const { states } = await cluster(4)
  const c = client()
  const made: CredentialTokenProvider[] = []
  const provider = (i: number, config: CredentialConfig) => {
    const p = createTokenProvider('crm', config, { shared: states[i]!, cache: new TokenCache() })
    made.push(p)
    return p
  }
  return { c, states, provider, close: () => Promise.all(made.map((p) => p.close())) }
}

/** The shared state's key of a provider's access token (as provider.ts names it). */
const sharedKeyOf = (p: CredentialTokenProvider) => `token:${createHash('sha256').update((JSON.parse(p.cacheKey) as [string])[0]).digest('base64url')}`

describe('an access token stored in the shared state by another engine', () => {
  it('is not used by an engine with a wrong secret: its first call is refused by the server, and the engines with the right one keep the token', async () => {
    const { c, provider, close } = await engines()
    const good1 = provider(0, c.right)
    const token = await good1.getToken()
    expect(c.statuses()).toEqual([200])

    const bad2 = provider(1, c.wrong)
    const err = await bad2.getToken().catch((e: unknown) => e) as { code?: string; error?: string }
    expect([err.code, err.error]).toEqual(['ERR_OAUTH_RESPONSE', 'invalid_client'])
    expect(c.statuses()).toEqual([200, 401])

    // A third engine with the right secret adopts the stored token: engine 2's refusal is not its own.
    const good3 = provider(2, c.right)
    expect((await good3.getToken()).value.reveal()).toBe(token.value.reveal())
    expect(c.statuses()).toEqual([200, 401])

    // Engine 2's refusal is recorded for engines with its secret: a fourth like it fails at once, asking nothing.
    const bad4 = provider(3, c.wrong)
    expect(((await bad4.getToken().catch((e: unknown) => e)) as { error?: string }).error).toBe('invalid_client')
    expect(c.statuses()).toEqual([200, 401])
    await close()
  })

  it('is used by another engine with the right secret: one token request serves both', async () => {
    const { c, provider, close } = await engines()
    const first = await provider(0, c.right).getToken()
    const second = await provider(1, c.right).getToken()
    expect(second.value.reveal()).toBe(first.value.reveal())
    expect(c.statuses()).toEqual([200])
    await close()
  })

  it('stored by an older weir (no digest of the client proof) is used whatever the secret', async () => {
    const { c, states, provider, close } = await engines()
    const good1 = provider(0, c.right)
    const token = await good1.getToken()
    const key = sharedKeyOf(good1)
    const entry = await states[0]!.read(key)
    expect(entry?.accessTokenProof).toEqual(expect.any(String))
    const { version, updatedAt: _u, accessTokenProof: _p, ...older } = entry!
    await states[0]!.write(key, older, version)

    const bad2 = provider(1, c.wrong)
    expect((await bad2.getToken()).value.reveal()).toBe(token.value.reveal())
    expect(c.statuses()).toEqual([200])
    await close()
  })
})
