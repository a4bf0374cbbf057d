import { describe, expect, it } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { maskedUrl, storeUrlOf } from '../../engine/store.ts'
import { createRefreshTokenStore } from '../../shared/oauth/index.ts'

describe('--store URLs', () => {
  it('accepts the libpq forms without a host: a Unix socket in ?host=, or PGHOST', () => {
    expect(storeUrlOf({ store: 'postgres:///weir?host=/var/run/postgresql' }, { env: {} })).toBe('postgres:///weir?host=/var/run/postgresql')
    expect(storeUrlOf({ store: 'postgres:///weir' }, { env: { PGHOST: '127.0.0.1' } })).toBe('postgres:///weir')
    expect(() => storeUrlOf({ store: 'postgres:///weir' }, { env: {} })).toThrow(/names no host/)
  })

  it('hides a password in the query as well as in the user info', () => {
    expect(maskedUrl('postgres://u:pw@h:5432/db?sslmode=require&password=s3cret&sslpassword=k3y')).toBe('postgres://u:***@h:5432/db?sslmode=require&password=***&sslpassword=***')
    let message = ''
    try { storeUrlOf({ store: 'postgres://u@h:port/db?password=s3cret' }, { env: {} }) } catch (e) { message = (e as Error).message }
    expect(message).toMatch(/port "port" is not a number/)
    expect(message).not.toContain('s3cret')
  })
})

describe('the refresh-token store with an unreadable token entry', () => {
  it('refuses to make a new key beside it with ERR_STORE, not a parse error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-token-entry-'))
    try {
      await writeFile(join(dir, 'stray.token'), '')
      const e = await createRefreshTokenStore({ dir }).write('k', { refreshToken: 'r' }, 0).catch((x: unknown) => x) as { code?: string; name?: string }
      expect(e.code).toBe('ERR_STORE')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
