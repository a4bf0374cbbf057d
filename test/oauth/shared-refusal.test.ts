import { hostname } from 'node:os'
import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { createTokenProvider, TokenCache, type CredentialConfig } from '../../shared/oauth/index.ts'
import { createLogger } from '../../shared/log/index.ts'
import { Secret } from '../../shared/secret.ts'
import { useEmbeddedPostgres, useTokenStateClusters } from '../_postgres.ts'
import { until, type LogLine } from '../_setup.ts'

const KEY = 'k'.repeat(32)
const ERROR = 50
const WARN = 40
const DEBUG = 20
const pg = useEmbeddedPostgres()
/** `n` token states over one fresh database, each its own pool, each speaking for engine `engine-<i>`. */
const cluster = useTokenStateClusters(pg, 'refusal', KEY)
let as: AuthorizationServer
const everyLine: string[] = []

beforeAll(async () => { as = await startAuthorizationServer({ tokenLifetimeSec: 600 }) })
afterAll(async () => {
  // No secret the server saw, no token, in any line logged.
  for (const s of as.secretsSeen()) if (s.length >= 8) expect(everyLine.filter((l) => l.includes(s))).toEqual([])
  await as?.close()
})


/** A logger whose lines are collected, parsed. */
function collector() {
  const lines: LogLine[] = []
  const log = createLogger({
    level: 'debug', pretty: false,
    destination: new Writable({ write(chunk, _enc, cb) { everyLine.push(String(chunk)); lines.push(JSON.parse(String(chunk)) as LogLine); cb() } }),
  })
  return { log, lines, said: (msg: RegExp) => lines.filter((l) => msg.test(l.msg)) }
}

let clients = 0
function client() {
  const id = `refusal-client-${++clients}`
  const secret = `${id}-secret-value`
  as.registerClient({ clientId: id, authMethod: 'client_secret_basic', secret, scopes: ['read'] })
  const config = (s: string): CredentialConfig => ({ tokenUrl: as.tokenUrl, clientId: id, scope: 'read', failFastMs: 300_000, clientAuth: { method: 'client_secret_basic', secret: new Secret(s) } })
  return {
    right: config(secret), wrong: config('not-the-secret-value'), requests: () => as.requests.filter((r) => r.clientId === id),
    /** The server takes another secret from now on (revoked): the one every engine has is refused. */
    revoke: () => as.registerClient({ clientId: id, authMethod: 'client_secret_basic', secret: `${id}-new-secret-value`, scopes: ['read'] }),
  }
}

/**
 * Three engines over one fresh database, each with its own collected log, on a clock the test
 * moves with `advance`; engines 2 and 3 (`good2`, `good3`) hold a client's right secret.
 */
async function threeEngines() {
  const { states } = await cluster(3)
  const c = client()
  let clock = Date.now()
  const now = () => clock
  const logs = [collector(), collector(), collector()]
  const provider = (i: number, config: CredentialConfig) => createTokenProvider('crm', config, { shared: states[i]!, cache: new TokenCache(), log: logs[i]!.log, now, random: () => 0 })
  const [good2, good3] = [provider(1, c.right), provider(2, c.right)]
  return { c, logs, provider, good2, good3, advance: (ms: number) => { clock += ms } }
}

describe('a refusal recorded by another engine', () => {
  it('of the client every engine has (its secret revoked) is adopted naming the engine that was refused, logged once however many background refreshes find it', async () => {
    const { c, logs, provider, good2, good3, advance } = await threeEngines()
    await good2.getToken()
    await good3.getToken()
    expect(c.requests()).toHaveLength(1)

    // The shared token is due for refresh (not stale yet) when engine 1 asks, its secret (every engine's) revoked.
    advance(500_000)
    c.revoke()
    const bad1 = provider(0, c.right)
    const refused = await bad1.getToken().catch((e: unknown) => e) as { error?: string }
    expect(refused.error).toBe('invalid_client')

    const where = `(recorded by engine engine-1 on host ${hostname()}, pid ${process.pid})`
    // Each background refresh that fails tries again a quarter of the way to staleness: three before the token is stale.
    for (let step = 1; step <= 3; step++) {
      for (const [i, p] of [[1, good2], [2, good3]] as const) {
        await p.getToken()
        await until(() => logs[i]!.said(/^background token refresh failed$/).length === step, 10_000, `background refresh ${step} of engine ${i + 1}`)
      }
      advance(30_000)
    }
    for (const i of [1, 2]) {
      // Read again by each later background refresh: at debug.
      expect(logs[i]!.said(/^credential broken/).map((l) => l.level)).toEqual([ERROR, DEBUG, DEBUG])
      const broken = logs[i]!.said(/^credential broken/).filter((l) => l.level >= WARN)
      expect(broken.map((l) => [l.level, l.msg])).toEqual([[ERROR, `credential broken ${where}: token endpoint ${as.tokenUrl} answered 401 invalid_client: client secret mismatch`]])
      expect(broken[0]).toMatchObject({ error: 'invalid_client', recordedBy: { engine: 'engine-1', host: hostname(), pid: process.pid } })
      expect(logs[i]!.said(/^background token refresh failed$/).filter((l) => l.level >= WARN)).toHaveLength(1)
    }
    // Engine 1 was refused itself: it names no other engine.
    expect(logs[0]!.said(/^credential broken/).map((l) => l.msg)).toEqual([expect.stringMatching(/^credential broken: token endpoint/)])
    expect(c.requests()).toHaveLength(2)
    await Promise.all([bad1, good2, good3].map((p) => p.close()))
  })

  it('got with another secret (a wrong one on one engine) is not adopted: the engines with the right one go on, and only that engine fails', async () => {
    const { c, logs, provider, good2, good3, advance } = await threeEngines()
    await good2.getToken()
    advance(500_000)
    const bad1 = provider(0, c.wrong)
    expect(((await bad1.getToken().catch((e: unknown) => e)) as { error?: string }).error).toBe('invalid_client')
    // The others, due for refresh, ask the server (a background refresh) instead of failing fast on engine 1's refusal.
    await good2.getToken()
    await until(() => c.requests().length === 3 && c.requests()[2]!.status !== 0, 10_000, 'the background refresh of engine 2')
    expect(c.requests().map((r) => r.status)).toEqual([200, 401, 200])
    await good3.getToken()
    for (const i of [1, 2]) expect(logs[i]!.said(/^(credential broken|background token refresh failed)/)).toEqual([])
    // Engine 1 still fails: the entry's new token carries the right secret's proof, not engine 1's, so it is not adopted there.
    expect(logs[0]!.said(/^credential broken/).map((l) => l.msg)).toEqual([expect.stringMatching(/^credential broken: token endpoint .* invalid_client/)])
    await Promise.all([bad1, good2, good3].map((p) => p.close()))
  })

  it('recorded by an older weir (no recorder in the entry) is still read, said to be another engine\'s', async () => {
    const { states: [state], db } = await cluster(1)
    const c = client()
    const probe = createTokenProvider('crm', c.right, { shared: state!, cache: new TokenCache() })
    // The entry key is the provider's: learn it from a token it stores, then replace the entry by an old-style refusal.
    await probe.getToken()
    await probe.close()
    const rows = await db.sql<{ key: string; version: number }>`SELECT key, version FROM weir_oauth_state`
    const { key, version } = rows[0]!
    await state!.write(key, { failure: { code: 'ERR_OAUTH_RESPONSE', message: `token endpoint ${as.tokenUrl} answered 401 invalid_client: client secret mismatch`, status: 401, error: 'invalid_client', until: Date.now() + 60_000 } }, version)
    const l = collector()
    const p = createTokenProvider('crm', c.right, { shared: state!, cache: new TokenCache(), log: l.log })
    const err = await p.getToken().catch((e: unknown) => e) as { error?: string }
    expect(err.error).toBe('invalid_client')
    expect(l.said(/^credential broken/).map((x) => x.msg)).toEqual([`credential broken (recorded by another engine): token endpoint ${as.tokenUrl} answered 401 invalid_client: client secret mismatch`])
    await p.close()
  })
})
