// A refresh-token lease lost while held (its lock removed or taken over): the holder is told, sends
// and writes nothing under it, and keeps the token the server rotated for it until a new lease.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readdir, rm, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { createRefreshTokenStore, createTokenProvider, importRefreshToken, TokenCache, type CredentialConfig, type RefreshTokenStore } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { answerHoldingProxy, leakCollector } from './_helpers.ts'

const KEY = 'k'.repeat(32)
const leak = leakCollector()
let lenient: AuthorizationServer
let strict: AuthorizationServer
let base: string
beforeAll(async () => {
  // Default server: a spent refresh token is only refused. Strict: it revokes its whole grant (RFC 9700 §4.14.2).
  ;[lenient, strict] = await Promise.all([startAuthorizationServer({ tokenLifetimeSec: 600 }), startAuthorizationServer({ tokenLifetimeSec: 600, revokeGrantOnReuse: true })])
  base = await mkdtemp(join(tmpdir(), 'weir-lease-'))
})
afterAll(async () => {
  expect(leak.leaks([...lenient.secretsSeen(), ...strict.secretsSeen()])).toEqual([])
  await Promise.all([lenient.close(), strict.close()])
  await rm(base, { recursive: true, force: true })
})

let n = 0
async function setup(as: AuthorizationServer) {
  const id = `lease-client-${++n}`
  const secret = `${id}-secret-value`
  as.registerClient({ clientId: id, authMethod: 'client_secret_post', secret, scopes: ['read', 'offline'] })
  const dir = join(base, id)
  const rt = as.issueRefreshToken(id, { scope: 'read offline' })
  await importRefreshToken(createRefreshTokenStore({ dir, key: KEY }), 'shared', rt)
  const config: CredentialConfig = { grant: 'refresh_token', tokenUrl: as.tokenUrl, clientId: id, storeKey: 'shared', clientAuth: { method: 'client_secret_post', secret: new Secret(secret) } }
  const store = () => createRefreshTokenStore({ dir, key: KEY })
  const provider = (name: string, opts: { tokenUrl?: string; store?: RefreshTokenStore; now?: () => number } = {}) =>
    createTokenProvider(name, { ...config, ...(opts.tokenUrl ? { tokenUrl: opts.tokenUrl } : {}) }, { store: opts.store ?? store(), cache: new TokenCache(), log: leak.log, random: () => 0, ...(opts.now ? { now: opts.now } : {}) })
  const refreshes = () => as.requests.filter((r) => r.clientId === id && r.grant === 'refresh_token').map((r) => [r.status, r.error ?? null])
  /** Removes the lease's lock file, as a cleaner or an operator would (the holder's lease is lost; the next holder takes it). */
  const dropLock = async () => {
    const locks = (await readdir(dir)).filter((f) => f.endsWith('.lock'))
    expect(locks).toHaveLength(1)
    await unlink(join(dir, locks[0]!))
  }
  return { dir, rt, config, store, provider, refreshes, dropLock }
}

/** `store` whose first holder, having read the entry under its lease, is held (frozen) until thaw(). */
function frozenAfterReading(store: RefreshTokenStore) {
  let taken!: () => void
  const tookIt = new Promise<void>((r) => (taken = r))
  let thaw!: () => void
  const thawed = new Promise<void>((r) => (thaw = r))
  let inLease = false
  let first = true
  const frozen: RefreshTokenStore = {
    async read(k) {
      const entry = await store.read(k)
      if (inLease && first) {
        first = false
        taken()
        await thawed
      }
      return entry
    },
    write: (k, v, version) => store.write(k, v, version),
    withLease: (k, fn) => store.withLease(k, async (lease) => {
      inLease = true
      try {
        return await fn(lease)
      } finally {
        inLease = false
      }
    }),
  }
  return { store: frozen, tookIt, thaw }
}

describe('refresh-token lease lost while held (file store)', () => {
  it('a renewal that finds the lock removed or taken over aborts the lease signal; confirm() fails retryably', async () => {
    const dir = join(base, 'signal')
    const store = createRefreshTokenStore({ dir, key: KEY, leaseTtlMs: 300 })
    const seen = await store.withLease('k1', async (lease) => {
      expect(lease).toBeDefined()
      await lease!.confirm() // held: no error
      await unlink(join(dir, (await readdir(dir)).find((f) => f.endsWith('.lock'))!))
      // The periodic renewal (every 100 ms here) notices by itself.
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('lease signal not aborted within 1 s')), 1000)
        lease!.signal.addEventListener('abort', () => (clearTimeout(t), resolve()))
      })
      return { reason: lease!.signal.reason as Record<string, unknown>, confirm: await lease!.confirm().then(() => undefined, (e: Record<string, unknown>) => e) }
    })
    expect(seen.reason).toMatchObject({ code: 'ERR_STORE', retryable: true })
    expect(String(seen.reason.message)).toMatch(/lost the lease on "k1"/)
    expect(seen.confirm).toBe(seen.reason)
  })

  it('lost while its refresh is answered: the holder does not write under it, and writes the rotated token under a new lease over the refusal another holder recorded', async () => {
    const s = await setup(lenient)
    const logged = leak.lines.length
    const proxy = await answerHoldingProxy(lenient.tokenUrl)
    const a = s.provider('a', { tokenUrl: proxy.url })
    const b = s.provider('b')
    try {
      const first = a.getToken().catch((e) => leak.error(e))
      await proxy.answered(1) // the server rotated the refresh token for A; its answer is on the way
      await s.dropLock() // meanwhile A's lease is lost
      // B takes the free lease and presents the refresh token the store still holds: spent.
      const bErr = leak.error(await b.getToken().catch((e) => e)) as Record<string, unknown>
      expect(bErr.code).toBe('ERR_OAUTH_REAUTH_REQUIRED')
      proxy.release()
      const t = await first
      expect((t as Record<string, unknown>).code).toBeUndefined() // A keeps the token the server gave it
      const stored = await s.store().read('shared')
      expect([stored?.refreshToken === s.rt, stored?.failure, stored?.accessToken === (t as { value: Secret }).value.reveal()]).toEqual([false, undefined, true])
      // The next start (its access token due) refreshes with the token A stored.
      const later = await s.provider('restarted', { now: () => Date.now() + 590_000 }).getToken().catch((e) => leak.error(e))
      expect((later as Record<string, unknown>).code).toBeUndefined()
      expect(s.refreshes()).toEqual([[200, null], [400, 'invalid_grant'], [200, null]])
      expect(leak.lines.slice(logged).filter((l) => /"credential":"a"/.test(l) && /lost the lease on/.test(l))).toHaveLength(1) // reported, then retried
      expect((await readdir(s.dir)).filter((f) => f.endsWith('.lock'))).toEqual([])
    } finally {
      await proxy.close()
      await a.close()
      await b.close()
    }
  })

  it('lost before its refresh request is sent: the holder does not spend the refresh token another holder rotated (a strict server would revoke the grant)', async () => {
    const s = await setup(strict)
    const logged = leak.lines.length
    const frozen = frozenAfterReading(s.store())
    const a = s.provider('a', { store: frozen.store })
    const b = s.provider('b')
    try {
      const first = a.getToken().catch((e) => leak.error(e))
      await frozen.tookIt // A holds the lease and has read the entry; it freezes there
      await s.dropLock() // and loses it
      const tb = await b.getToken() // B takes the lease and rotates
      frozen.thaw()
      const t = await first
      expect((t as Record<string, unknown>).code).toBeUndefined()
      expect((t as { value: Secret }).value.reveal()).toBe(tb.value.reveal()) // A takes B's token under a new lease
      expect(strict.spentRefreshTokenUses()).toBe(0)
      expect(leak.lines.slice(logged).filter((l) => /"credential":"a"/.test(l) && /lost the lease on/.test(l))).toHaveLength(1)
      expect(s.refreshes()).toEqual([[200, null]])
      // The grant is alive: the stored refresh token still refreshes.
      const later = await s.provider('restarted', { now: () => Date.now() + 590_000 }).getToken().catch((e) => leak.error(e))
      expect((later as Record<string, unknown>).code).toBeUndefined()
    } finally {
      await a.close()
      await b.close()
    }
  })
})
