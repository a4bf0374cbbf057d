import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import { createTokenProvider, importRefreshToken, TokenCache, type CredentialConfig, type RefreshTokenStore } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { openDb, type Db } from '../../shared/store/postgres/db.ts'
import { migrate } from '../../shared/store/postgres/migrations.ts'
import { createPostgresTokenState } from '../../shared/store/postgres/oauth-state.ts'
import { answerHoldingProxy, leakCollector } from './_helpers.ts'

const KEY = 'k'.repeat(32)
const leak = leakCollector()
let pg: EmbeddedPostgresServer
let as: AuthorizationServer
let databases = 0
const pools: Db[] = []

beforeAll(async () => {
  ;[pg, as] = await Promise.all([startEmbeddedPostgres({ volatile: true }), startAuthorizationServer({ tokenLifetimeSec: 600 })])
}, 60_000)
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.end()))
})
afterAll(async () => {
  expect(leak.leaks(as.secretsSeen())).toEqual([])
  await as?.close()
  await pg?.stop()
})

/** A fresh database with the store's schema, and `n` token states over it (one per "engine", each its own pool). */
async function database(n: number, options: { leaseMs?: number; secretKey?: string } = {}): Promise<{ db: Db; sql: Db['sql']; states: RefreshTokenStore[]; url: string }> {
  const url = await pg.createDatabase(`oauth_${++databases}`)
  const db = openDb(url, { max: 2 })
  pools.push(db)
  await migrate(db, { allowMigration: true })
  const states = Array.from({ length: n }, () => {
    const own = openDb(url, { max: 3 })
    pools.push(own)
    return createPostgresTokenState({ db: own, secretKey: options.secretKey ?? KEY, leaseMs: options.leaseMs ?? 3000 })
  })
  return { db, sql: db.sql, states, url }
}

let clients = 0
function client(extra: { secret?: string } = {}) {
  const id = `pg-client-${++clients}`
  const secret = `${id}-secret-value`
  as.registerClient({ clientId: id, authMethod: 'client_secret_basic', secret, scopes: ['read'] })
  const requests = () => as.requests.filter((r) => r.clientId === id)
  return { id, config: { tokenUrl: as.tokenUrl, clientId: id, scope: 'read', clientAuth: { method: 'client_secret_basic', secret: new Secret(extra.secret ?? secret) } } as CredentialConfig, requests }
}

/** One provider per state, each with its own cache: as many "engines" as states. */
function engines(states: RefreshTokenStore[], name: string, config: CredentialConfig) {
  return states.map((shared) => createTokenProvider(name, config, { shared, cache: new TokenCache(), log: leak.log }))
}

describe('PostgreSQL token state', () => {
  it('seals entries (no token in clear in the table), keeps versions, and rejects a stale compare-and-swap or a wrong key', async () => {
    const { db, sql, states: [state] } = await database(1)
    const e1 = await importRefreshToken(state!, 'crm', 'refresh-token-plaintext-1')
    const e2 = await state!.write('crm', { refreshToken: 'refresh-token-plaintext-2', accessToken: 'access-token-plaintext' }, 1)
    expect([e1.version, e2.version]).toEqual([1, 2])
    expect(await state!.read('crm')).toMatchObject({ version: 2, refreshToken: 'refresh-token-plaintext-2', accessToken: 'access-token-plaintext' })
    const rows = await sql`SELECT * FROM weir_oauth_state`
    expect(rows.map((r) => [r.key, r.version])).toEqual([['crm', 2]])
    expect(JSON.stringify(rows)).not.toMatch(/plaintext/)
    const stale = leak.error(await state!.write('crm', { refreshToken: 'x-refresh-token' }, 1).catch((e) => e)) as Record<string, unknown>
    expect([stale.code, stale.message]).toEqual(['ERR_STORE', 'token store entry "crm" changed: expected version 1, found 2'])
    const wrong = createPostgresTokenState({ db, secretKey: 'another key entirely' })
    const err = leak.error(await wrong.read('crm').catch((e) => e)) as Record<string, unknown>
    expect([err.code, err.message]).toEqual(['ERR_STORE', 'the OAuth state of "crm" cannot be decrypted: every engine of the cluster needs the same WEIR_SECRET_KEY'])
    const none = leak.error((() => { try { return createPostgresTokenState({ db, secretKey: undefined }) } catch (e) { return e } })()) as Record<string, unknown>
    expect([none.code, none.message]).toEqual(['ERR_STORE', 'the PostgreSQL store keeps OAuth tokens (and content with encryptContent) encrypted with WEIR_SECRET_KEY: set the same WEIR_SECRET_KEY on every engine of the cluster'])
  })

  it('the lease is exclusive across engines, renewed while held, and taken over once a dead holder stops renewing it', async () => {
    const { sql, states: [a, b] } = await database(2, { leaseMs: 600 })
    const order: string[] = []
    let releaseA!: () => void
    const holding = new Promise<void>((r) => (releaseA = r))
    const first = a!.withLease('k', async () => { order.push('a in'); await holding; order.push('a out') })
    await expect.poll(() => order).toEqual(['a in'])
    const second = b!.withLease('k', async () => { order.push('b in') })
    // Held three leases long: a renews it, so b still waits.
    await new Promise((r) => setTimeout(r, 1800))
    expect(order).toEqual(['a in'])
    releaseA()
    await Promise.all([first, second])
    expect(order).toEqual(['a in', 'a out', 'b in'])
    expect(await sql`SELECT holder FROM weir_oauth_state WHERE key = 'k'`).toEqual([{ holder: null }])

    // A holder that died: its lease is left in the table, renewed by nobody.
    await sql`UPDATE weir_oauth_state SET holder = 'dead-engine', lease_until = clock_timestamp() + interval '400 milliseconds' WHERE key = 'k'`
    const [dead] = await sql<{ until: number }>`SELECT (extract(epoch FROM lease_until) * 1000)::float8 AS until FROM weir_oauth_state WHERE key = 'k'`
    let tookAt = 0
    await b!.withLease('k', async () => { tookAt = Date.now() })
    expect(tookAt).toBeGreaterThanOrEqual(Math.floor(dead!.until))
  })

  it('a lease lost while held (taken over by another engine, or not renewable for a lease: the database out of reach) aborts the holder\'s signal, retryably', async () => {
    const aborted = (signal: AbortSignal) => new Promise<unknown>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('lease signal not aborted within 3 s')), 3000)
      signal.addEventListener('abort', () => (clearTimeout(t), resolve(signal.reason)))
    })
    const { sql, url, states: [a] } = await database(1, { leaseMs: 600 })
    const taken = await a!.withLease('k', async (lease) => {
      await lease!.confirm()
      await sql`UPDATE weir_oauth_state SET holder = 'another-engine' WHERE key = 'k'`
      const reason = await aborted(lease!.signal)
      return { reason, confirm: await lease!.confirm().then(() => 'held', (e: unknown) => e) }
    })
    expect(taken.reason).toMatchObject({ code: 'ERR_STORE', retryable: true, message: expect.stringContaining('lost the lease on "k"') })
    expect(taken.confirm).toBe(taken.reason)
    expect(await sql`SELECT holder FROM weir_oauth_state WHERE key = 'k'`).toEqual([{ holder: 'another-engine' }]) // the new holder's, left alone

    const own = openDb(url, { max: 1 })
    const unreachable = createPostgresTokenState({ db: own, secretKey: KEY, leaseMs: 600 })
    const startedAt = Date.now()
    const lost = await unreachable.withLease('k2', async (lease) => {
      await own.end() // every renewal fails from now on
      return { reason: await aborted(lease!.signal), after: Date.now() - startedAt }
    })
    expect(lost.reason).toMatchObject({ code: 'ERR_STORE', retryable: true, message: expect.stringContaining('not renewed for 600 ms') })
    expect(lost.after).toBeGreaterThanOrEqual(600)
  })

  it('client_credentials: three engines with cold caches make one token request between them', async () => {
    const { states } = await database(3)
    const c = client()
    const providers = engines(states, 'cc', c.config)
    const tokens = await Promise.all(providers.flatMap((p) => [p.getToken(), p.getToken()]))
    expect(new Set(tokens.map((t) => t.value.reveal())).size).toBe(1)
    expect(c.requests()).toHaveLength(1)
    await Promise.all(providers.map((p) => p.close()))
  })

  it('a 401 on the shared token: every engine invalidates it, one of them renews it, the others take the new one', async () => {
    const { states } = await database(3)
    const c = client()
    const providers = engines(states, 'cc', c.config)
    const old = await providers[0]!.getToken()
    await Promise.all(providers.map((p) => p.getToken()))
    for (const p of providers) p.invalidate(old)
    const renewed = await Promise.all(providers.map((p) => p.getToken()))
    expect(new Set(renewed.map((t) => t.value.reveal()))).toEqual(new Set([renewed[0]!.value.reveal()]))
    expect(renewed[0]!.value.reveal()).not.toBe(old.value.reveal())
    expect(c.requests()).toHaveLength(2)
    await Promise.all(providers.map((p) => p.close()))
  })

  it('a refusal is shared: the other engines fail fast with the server\'s error, without a token request of their own', async () => {
    const { states } = await database(3)
    const c = client({ secret: 'not-the-secret-value' })
    const [first, ...others] = engines(states, 'cc', { ...c.config, failFastMs: 60_000 })
    const err = leak.error(await first!.getToken().catch((e) => e)) as Record<string, unknown>
    expect([err.code, err.error]).toEqual(['ERR_OAUTH_RESPONSE', 'invalid_client'])
    for (const p of others) {
      const e = leak.error(await p.getToken().catch((x) => x)) as Record<string, unknown>
      expect([e.code, e.error, e.message]).toEqual(['ERR_OAUTH_RESPONSE', 'invalid_client', err.message])
      const again = leak.error(await p.getToken().catch((x) => x)) as Record<string, unknown>
      expect([again.code, again.error]).toEqual(['ERR_OAUTH_FAIL_FAST', 'invalid_client'])
    }
    expect(c.requests()).toHaveLength(1)
    await Promise.all([first!, ...others].map((p) => p.close()))
  })

  it('refresh_token: three engines refreshing at once rotate once; the spent token is never presented again', async () => {
    const { sql, states } = await database(3)
    const id = `pg-rt-${++clients}`
    as.registerClient({ clientId: id, authMethod: 'client_secret_post', secret: `${id}-secret-value`, scopes: ['read'] })
    const rt = as.issueRefreshToken(id, { scope: 'read' })
    await importRefreshToken(states[0]!, 'crm', rt)
    // failFastMs 0: each round renews, though the token dropped is the renewal of the one before.
    const config: CredentialConfig = { grant: 'refresh_token', tokenUrl: as.tokenUrl, clientId: id, failFastMs: 0, clientAuth: { method: 'client_secret_post', secret: new Secret(`${id}-secret-value`) } }
    const spentBefore = as.spentRefreshTokenUses()
    const providers = engines(states, 'crm', config)
    let [current] = await Promise.all(providers.map((p) => p.getToken()))
    for (let round = 0; round < 5; round++) {
      for (const p of providers) p.invalidate(current!)
      const renewed = await Promise.all(providers.map((p) => p.getToken()))
      expect(new Set(renewed.map((t) => t.value.reveal())).size).toBe(1)
      current = renewed[0]
    }
    await Promise.all(providers.map((p) => p.close()))
    const refreshes = as.requests.filter((r) => r.clientId === id)
    expect(refreshes.map((r) => r.status)).toEqual(Array(6).fill(200))
    expect(as.spentRefreshTokenUses()).toBe(spentBefore)
    expect(await sql`SELECT version FROM weir_oauth_state WHERE key = 'crm'`).toEqual([{ version: 7 }])
    expect(JSON.stringify(await sql`SELECT * FROM weir_oauth_state`)).not.toContain(rt)
  })

  it('refresh_token: an engine whose lease runs out while its refresh is answered writes the rotated token under a new lease, over the refusal another engine recorded', async () => {
    const { sql, states } = await database(2)
    const id = `pg-rt-${++clients}`
    as.registerClient({ clientId: id, authMethod: 'client_secret_post', secret: `${id}-secret-value`, scopes: ['read'] })
    const rt = as.issueRefreshToken(id, { scope: 'read' })
    await importRefreshToken(states[0]!, 'crm', rt)
    const config: CredentialConfig = { grant: 'refresh_token', tokenUrl: as.tokenUrl, clientId: id, clientAuth: { method: 'client_secret_post', secret: new Secret(`${id}-secret-value`) } }
    const proxy = await answerHoldingProxy(as.tokenUrl)
    const a = createTokenProvider('crm', { ...config, tokenUrl: proxy.url }, { shared: states[0], cache: new TokenCache(), log: leak.log, random: () => 0 })
    const b = createTokenProvider('crm', config, { shared: states[1], cache: new TokenCache(), log: leak.log })
    try {
      const first = a.getToken().catch((e) => leak.error(e))
      await proxy.answered(1) // the server rotated the refresh token for engine A; its answer is on the way
      await sql`UPDATE weir_oauth_state SET holder = NULL, lease_until = NULL WHERE key = 'crm'` // A's lease ran out
      // B takes the lease and presents the refresh token the table still holds: spent.
      expect((leak.error(await b.getToken().catch((e) => e)) as Record<string, unknown>).code).toBe('ERR_OAUTH_REAUTH_REQUIRED')
      proxy.release()
      const t = await first
      expect((t as Record<string, unknown>).code).toBeUndefined()
      const stored = await states[1]!.read('crm')
      expect([stored?.refreshToken === rt, stored?.failure, stored?.accessToken === (t as { value: Secret }).value.reveal()]).toEqual([false, undefined, true])
      expect(as.requests.filter((r) => r.clientId === id).map((r) => [r.status, r.error ?? null])).toEqual([[200, null], [400, 'invalid_grant']])
      expect(await sql`SELECT holder FROM weir_oauth_state WHERE key = 'crm'`).toEqual([{ holder: null }])
    } finally {
      await proxy.close()
      await a.close()
      await b.close()
    }
  })
})

describe('embedded authorization server: revokeGrantOnReuse', () => {
  it('a spent refresh token presented again revokes the grant: its rotated refresh token and its access tokens', async () => {
    const strict = await startAuthorizationServer({ revokeGrantOnReuse: true })
    try {
      strict.registerClient({ clientId: 'strict', authMethod: 'client_secret_post', secret: 'strict-secret-value' })
      const post = async (refreshToken: string) => {
        const res = await fetch(strict.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'strict', client_secret: 'strict-secret-value' }) })
        return { status: res.status, body: await res.json() as Record<string, string> }
      }
      const first = strict.issueRefreshToken('strict')
      const ok = await post(first)
      expect(ok.status).toBe(200)
      expect(await strict.verifyAccessToken(`Bearer ${ok.body.access_token}`)).toMatchObject({ claims: { client_id: 'strict' } })
      expect((await post(first)).body).toMatchObject({ error: 'invalid_grant', error_description: 'refresh token already used' })
      expect((await post(ok.body.refresh_token!)).body).toMatchObject({ error: 'invalid_grant', error_description: 'refresh token revoked' })
      const err = await strict.verifyAccessToken(`Bearer ${ok.body.access_token}`).catch((e) => e)
      expect(err.error).toBe('invalid_token')
      expect(strict.spentRefreshTokenUses()).toBe(1)
    } finally {
      await strict.close()
    }
  })
})
