import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { errorCodes } from '../../shared/errors.ts'
import { createRefreshTokenStore, createTokenProvider, importRefreshToken, TokenCache, type CredentialConfig, type RefreshTokenStore } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { answerHoldingProxy, holdingProxy, instrumentStore, leakCollector, type StoreEvent } from './_helpers.ts'

const leak = leakCollector()
let as: AuthorizationServer
let base: string
beforeAll(async () => {
  as = await startAuthorizationServer({ tokenLifetimeSec: 600 })
  base = await mkdtemp(join(tmpdir(), 'weir-rt-'))
})
afterAll(async () => {
  // Every log line and error message of this file (issue 3).
  expect(leak.texts.length).toBeGreaterThan(0)
  expect(leak.leaks(as.secretsSeen())).toEqual([])
  await as.close()
  await rm(base, { recursive: true, force: true })
})

let n = 0
async function setup(opts: { rotate?: boolean } = {}) {
  const id = `rt-client-${++n}`
  const secret = `${id}-secret-value`
  as.registerClient({ clientId: id, authMethod: 'client_secret_post', secret, scopes: ['read', 'offline'], ...(opts.rotate === false ? { rotateRefreshTokens: false } : {}) })
  const dir = join(base, id)
  const rt = as.issueRefreshToken(id, { scope: 'read offline' })
  await importRefreshToken(createRefreshTokenStore({ dir, key: 'k'.repeat(32) }), 'shared', rt)
  const config: CredentialConfig = { grant: 'refresh_token', tokenUrl: as.tokenUrl, clientId: id, storeKey: 'shared', clientAuth: { method: 'client_secret_post', secret: new Secret(secret) } }
  const provider = (name: string, now?: () => number) =>
    createTokenProvider(name, config, { store: createRefreshTokenStore({ dir, key: 'k'.repeat(32) }), cache: new TokenCache(), log: leak.log, ...(now ? { now } : {}) })
  const refreshes = () => as.requests.filter((r) => r.clientId === id && r.grant === 'refresh_token')
  const stored = () => createRefreshTokenStore({ dir, key: 'k'.repeat(32) }).read('shared')
  return { id, secret, dir, rt, config, provider, refreshes, stored }
}

/** `store` whose next `failures` writes fail as a dropped database connection does (retryably). */
function failingWrites(store: RefreshTokenStore, failures: number): RefreshTokenStore & { failed: () => number } {
  let failed = 0
  return {
    read: (k) => store.read(k),
    withLease: (k, fn) => store.withLease(k, fn),
    async write(k, v, version) {
      if (failed < failures) {
        failed++
        throw new errorCodes.ERR_STORE('connection reset while writing', { retryable: true })
      }
      return store.write(k, v, version)
    },
    failed: () => failed,
  }
}

describe('refresh-token store', () => {
  it('encrypts entries (mode 0600), keeps versions, and rejects a stale compare-and-swap', async () => {
    const dir = join(base, 'plain')
    const store = createRefreshTokenStore({ dir })
    const e1 = await importRefreshToken(store, 'k1', 'refresh-token-plaintext-1')
    const e2 = await importRefreshToken(store, 'k1', 'refresh-token-plaintext-2')
    expect([e1.version, e2.version]).toEqual([1, 2])
    expect((await store.read('k1'))?.refreshToken).toBe('refresh-token-plaintext-2')
    const files = await readdir(dir)
    expect(files.sort()).toHaveLength(2) // secret.key + one entry
    for (const f of files) {
      expect((await stat(join(dir, f))).mode & 0o777).toBe(0o600)
      expect(await readFile(join(dir, f), 'utf8')).not.toContain('refresh-token-plaintext')
    }
    const err = leak.error(await store.write('k1', { refreshToken: 'x-refresh-token' }, 1).catch((e) => e)) as Record<string, unknown>
    expect([err.code, err.message]).toEqual(['ERR_STORE', 'token store entry "k1" changed: expected version 1, found 2'])
    const wrongKey = createRefreshTokenStore({ dir, key: 'another key entirely' })
    const err2 = leak.error(await wrongKey.read('k1').catch((e) => e)) as Record<string, unknown>
    // A passphrase where secret.key sealed the entries: refused before a salt (another key) is made.
    expect([err2.code, err2.message]).toEqual(['ERR_STORE', `WEIR_SECRET_KEY is a passphrase, but ${dir} holds 1 token store entry sealed with another key (${join(dir, 'secret.key')}, used while WEIR_SECRET_KEY is not set): a new salt would make a key that opens none of them. Unset WEIR_SECRET_KEY to go on with ${join(dir, 'secret.key')}. Nothing was changed`])
  })

  it('two providers refreshing at the same moment: one refresh request, both get the new token, no spent token; a third uses the rotated one', async () => {
    const s = await setup()
    const [a, b] = [s.provider('a'), s.provider('b')]
    const [ta, tb] = await Promise.all([a.getToken(), b.getToken()])
    expect(s.refreshes()).toHaveLength(1)
    expect(ta.value.reveal()).toBe(tb.value.reveal())
    expect(as.spentRefreshTokenUses()).toBe(0)
    const stored = await createRefreshTokenStore({ dir: s.dir, key: 'k'.repeat(32) }).read('shared')
    expect(stored?.version).toBe(2)
    expect(stored?.refreshToken).not.toBe(s.rt)
    // A new provider started later, when the stored access token is near expiry, refreshes with the rotated token.
    const c = s.provider('c', () => Date.now() + 590_000)
    const tc = await c.getToken()
    expect(tc.value.reveal()).not.toBe(ta.value.reveal())
    expect(s.refreshes().map((r) => [r.status, r.error ?? null])).toEqual([[200, null], [200, null]])
    expect(as.spentRefreshTokenUses()).toBe(0)
  })

  it('two processes refreshing at the same moment: the lease is contended, one refresh request, the other re-reads the rotated token', async () => {
    const s = await setup()
    // Refresh requests are held until both processes want the lease: neither can finish first.
    const proxy = await holdingProxy(as.tokenUrl, (form) => form.get('grant_type') === 'refresh_token')
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'refresh-child.ts'), proxy.url, s.id, s.dir], {
      env: { ...process.env, CHILD_SECRET: s.secret }, stdio: ['pipe', 'pipe', 'pipe'],
    })
    try {
      const events: Record<'parent' | 'child', Array<StoreEvent | { op: 'ready' } | { op: 'token'; hash: string }>> = { parent: [], child: [] }
      let errOut = ''
      let buffered = ''
      child.stdout.on('data', (d) => {
        buffered += d
        const lines = buffered.split('\n')
        buffered = lines.pop()!
        for (const l of lines) if (l.trim()) events.child.push(JSON.parse(l))
      })
      child.stderr.on('data', (d) => (errOut += d))
      const exited = new Promise<number>((r) => child.on('exit', (code) => r(code ?? -1)))
      const turn = () => new Promise<void>((r) => setImmediate(r))
      const has = (who: 'parent' | 'child', op: string) => events[who].some((e) => e.op === op)
      const mine = createTokenProvider('parent', { grant: 'refresh_token', tokenUrl: proxy.url, clientId: s.id, storeKey: 'shared', clientAuth: { method: 'client_secret_post', secret: new Secret(s.secret) } }, {
        store: instrumentStore(createRefreshTokenStore({ dir: s.dir, key: 'k'.repeat(32) }), (e) => events.parent.push(e)), cache: new TokenCache(), log: leak.log,
      })
      while (!has('child', 'ready')) await turn()
      child.stdin.write('go\n')
      const token = mine.getToken()
      await proxy.held(1)
      while (!(has('parent', 'lease-wanted') && has('child', 'lease-wanted'))) await turn()
      proxy.release()
      const t = await token
      expect(await exited, errOut).toBe(0)
      const childHash = events.child.find((e): e is { op: 'token'; hash: string } => e.op === 'token')?.hash
      expect(childHash).toBe(createHash('sha256').update(t.value.reveal()).digest('hex'))
      expect(s.refreshes()).toHaveLength(1)
      expect(as.spentRefreshTokenUses()).toBe(0)
      // One process refreshed and wrote version 2; the other waited on the lease, then re-read version 2 under it and sent nothing.
      const writer = has('parent', 'write') ? 'parent' : 'child'
      const waiter = writer === 'parent' ? 'child' : 'parent'
      expect(events[writer].filter((e) => e.op === 'write')).toEqual([{ op: 'write', version: 2 }])
      expect(events[waiter].filter((e) => e.op !== 'ready' && e.op !== 'token')).toEqual([
        { op: 'read', inLease: false, version: 1 }, { op: 'lease-wanted' }, { op: 'lease-acquired' }, { op: 'read', inLease: true, version: 2 }, { op: 'lease-released' },
      ])
      await mine.close()
    } finally {
      child.kill()
      await proxy.close()
    }
  }, 20_000)

  it('a provider closed while its refresh is answered keeps the rotated refresh token: close() waits for it to be written', async () => {
    const s = await setup()
    const proxy = await answerHoldingProxy(as.tokenUrl)
    try {
      const closing = createTokenProvider('closing', { ...s.config, tokenUrl: proxy.url }, { store: createRefreshTokenStore({ dir: s.dir, key: 'k'.repeat(32) }), cache: new TokenCache(), log: leak.log })
      const waiting = closing.getToken().catch((e) => e)
      await proxy.answered(1) // the server has rotated; its answer is on the way
      let closedYet = false
      const closed = closing.close().then(() => (closedYet = true))
      expect((leak.error(await waiting) as Record<string, unknown>).code).toBe('ERR_SHUTDOWN') // callers are let go at once
      await new Promise((r) => setTimeout(r, 100))
      expect(closedYet).toBe(false) // close() waits for the rotation the server made
      proxy.release()
      await closed
      const stored = await s.stored()
      expect([stored?.version, stored?.refreshToken === s.rt]).toEqual([2, false])
      // The next start (its access token due) refreshes with the rotated token.
      const t = await s.provider('restarted', () => Date.now() + 590_000).getToken().catch((e) => leak.error(e))
      expect((t as Record<string, unknown>).code).toBeUndefined()
      expect(s.refreshes().map((r) => [r.status, r.error ?? null])).toEqual([[200, null], [200, null]])
      expect(as.spentRefreshTokenUses()).toBe(0)
    } finally {
      await proxy.close()
    }
  })

  it('a rotated refresh token the store fails to write once is written again under the lease: one refresh request, none spent', async () => {
    const s = await setup()
    const store = failingWrites(createRefreshTokenStore({ dir: s.dir, key: 'k'.repeat(32) }), 1)
    const events: StoreEvent[] = []
    const p = createTokenProvider('write-once', s.config, { store: instrumentStore(store, (e) => events.push(e)), cache: new TokenCache(), log: leak.log, random: () => 0 })
    const t = await p.getToken().catch((e) => leak.error(e))
    expect((t as Record<string, unknown>).code).toBeUndefined()
    expect(store.failed()).toBe(1)
    expect(events.filter((e) => e.op === 'lease-acquired')).toHaveLength(1) // written again before the lease was let go
    const stored = await s.stored()
    expect([stored?.version, stored?.refreshToken === s.rt]).toEqual([2, false])
    expect(s.refreshes()).toHaveLength(1)
    expect(as.spentRefreshTokenUses()).toBe(0)
    await p.close()
  })

  it('a rotated refresh token the store keeps refusing stays in memory and is written before any further token request', async () => {
    const s = await setup()
    // Every write of the first attempt fails; the fetch is retried, and the next write goes through.
    const store = failingWrites(createRefreshTokenStore({ dir: s.dir, key: 'k'.repeat(32) }), 4)
    const p = createTokenProvider('write-later', s.config, { store, cache: new TokenCache(), log: leak.log, random: () => 0 })
    const t = await p.getToken().catch((e) => leak.error(e))
    expect((t as Record<string, unknown>).code).toBeUndefined()
    expect(store.failed()).toBe(4)
    const stored = await s.stored()
    expect([stored?.version, stored?.refreshToken === s.rt, stored?.accessToken === (t as { value: Secret }).value.reveal()]).toEqual([2, false, true])
    expect(s.refreshes()).toHaveLength(1)
    expect(as.spentRefreshTokenUses()).toBe(0)
    await p.close()
  })

  it('a refresh that outlasts leaseTtlMs keeps its lease: the other holder waits, then takes the rotated token; one refresh request, none spent', async () => {
    const s = await setup()
    const proxy = await holdingProxy(as.tokenUrl, (form) => form.get('grant_type') === 'refresh_token')
    const store = () => createRefreshTokenStore({ dir: s.dir, key: 'k'.repeat(32), leaseTtlMs: 300 })
    const slow = createTokenProvider('slow', { ...s.config, tokenUrl: proxy.url }, { store: store(), cache: new TokenCache(), log: leak.log })
    const other = createTokenProvider('other', s.config, { store: store(), cache: new TokenCache(), log: leak.log })
    try {
      const first = slow.getToken()
      await proxy.held(1)
      const second = other.getToken()
      await new Promise((r) => setTimeout(r, 1000)) // the held request outlives three lease TTLs
      expect(s.refreshes()).toHaveLength(0) // the other holder is still waiting for the lease
      proxy.release()
      const [a, b] = await Promise.all([first, second])
      expect(b.value.reveal()).toBe(a.value.reveal())
      expect(s.refreshes()).toHaveLength(1)
      expect(as.spentRefreshTokenUses()).toBe(0)
      expect((await readdir(s.dir)).filter((f) => f.endsWith('.lock'))).toEqual([])
    } finally {
      await slow.close()
      await other.close()
      await proxy.close()
    }
  })

  it('a holder whose lease was taken over leaves the new holder\'s lock in place', async () => {
    const dir = join(base, 'takeover')
    const store = createRefreshTokenStore({ dir, key: 'k'.repeat(32), leaseTtlMs: 300 })
    let lock = ''
    await store.withLease('k1', async () => {
      lock = join(dir, (await readdir(dir)).find((f) => f.endsWith('.lock'))!)
      // Meanwhile another holder took the lease over (this one froze past the TTL): its lock now.
      await writeFile(lock, JSON.stringify({ pid: process.pid, at: Date.now(), nonce: 'the-new-holder' }))
    })
    expect(JSON.parse(await readFile(lock, 'utf8'))).toMatchObject({ nonce: 'the-new-holder' })
  })

  it('keeps the old refresh token when the response has none', async () => {
    const s = await setup({ rotate: false })
    const p = s.provider('keep', () => Date.now())
    await p.getToken()
    const stored = await createRefreshTokenStore({ dir: s.dir, key: 'k'.repeat(32) }).read('shared')
    expect([stored?.version, stored?.refreshToken === s.rt]).toEqual([2, true])
  })

  it('invalid_grant with no rotation elsewhere: ERR_OAUTH_REAUTH_REQUIRED carrying the provider error, then fail fast', async () => {
    const s = await setup()
    as.revokeAll()
    const p = s.provider('revoked')
    const err = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
    expect(err).toMatchObject({
      code: 'ERR_OAUTH_REAUTH_REQUIRED', error: 'invalid_grant', error_description: 'refresh token revoked', error_uri: `${as.issuer}/errors#invalid_grant`,
      message: 'the refresh token was rejected (invalid_grant: refresh token revoked); re-authorize and run weir credentials import <channel.json> revoked --refresh-token-file FILE',
    })
    const again = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
    expect(again.code).toBe('ERR_OAUTH_FAIL_FAST')
    expect(s.refreshes()).toHaveLength(1)
  })

  it('no stored refresh token: a clear re-authorization error', async () => {
    const p = createTokenProvider('empty', { grant: 'refresh_token', tokenUrl: as.tokenUrl, clientId: 'x', clientAuth: { method: 'none' } }, { store: createRefreshTokenStore({ dir: join(base, 'empty'), key: 'k'.repeat(32) }), cache: new TokenCache(), log: leak.log })
    const err = leak.error(await p.getToken().catch((e) => e)) as Record<string, unknown>
    expect([err.code, err.message]).toEqual(['ERR_OAUTH_REAUTH_REQUIRED', 'no refresh token is stored: run weir credentials import <channel.json> empty --refresh-token-file FILE'])
  })
})


describe('credentials sharing one refresh token (one storeKey)', () => {
  it('for different resources (RFC 8707): each gets an access token for its own resource, never the other\'s', async () => {
    const s = await setup()
    const cache = new TokenCache()
    const holder = (name: string, resource: string) => createTokenProvider(name, { ...s.config, resource }, { store: createRefreshTokenStore({ dir: s.dir, key: 'k'.repeat(32) }), cache, log: leak.log })
    const orders = holder('orders', 'https://orders.example/')
    const billing = holder('billing', 'https://billing.example/')
    try {
      const audienceOf = async (p: ReturnType<typeof holder>) => JSON.parse(Buffer.from((await p.getToken()).value.reveal().split('.')[1]!, 'base64url').toString()).aud
      expect(await audienceOf(orders)).toBe('https://orders.example/')
      // Before, billing took the access token orders had just stored in the shared entry.
      expect(await audienceOf(billing)).toBe('https://billing.example/')
      expect(await audienceOf(orders)).toBe('https://orders.example/')
      expect(s.refreshes().map((r) => r.form.resource)).toEqual(['https://orders.example/', 'https://billing.example/'])
      expect(as.spentRefreshTokenUses()).toBe(0)
    } finally {
      await orders.close()
      await billing.close()
    }
  })

  it('a refusal one holder recorded reaches the other as the server gave it: a body that was no OAuth error is not made an invalid_grant', async () => {
    const s = await setup()
    const [a, b] = [s.provider('refused-a'), s.provider('refused-b')]
    try {
      as.setFailure({ status: 400, body: '<html>Bad Request</html>', contentType: 'text/html' })
      type Refusal = { code: string; error?: string; status?: number }
      const ea = leak.error(await a.getToken().catch((e) => e)) as Refusal
      const eb = leak.error(await b.getToken().catch((e) => e)) as Refusal
      expect([ea.code, ea.error, ea.status]).toEqual(['ERR_OAUTH_RESPONSE', undefined, 400])
      expect([eb.code, eb.error, eb.status]).toEqual([ea.code, ea.error, ea.status])
      expect(s.refreshes()).toHaveLength(1) // b failed fast on a's recorded refusal
    } finally {
      await a.close()
      await b.close()
    }
  })
})
