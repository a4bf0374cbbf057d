import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import { openPostgresStore } from '../../shared/store/index.ts'

// Found by a walkthrough: with a URL that names no password (postgres://weir@host/db), node-postgres
// read the URL over the password option, so --store-password-file never worked.
let server: EmbeddedPostgresServer
let dir: string
beforeAll(async () => {
  server = await startEmbeddedPostgres({ volatile: true })
  dir = mkdtempSync(join(tmpdir(), 'weir-pgpw-'))
}, 60_000)
afterAll(async () => {
  await server?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('the PostgreSQL store password', () => {
  it('comes from passwordFile (its first line) when the URL names none', async () => {
    const withPw = new URL(await server.createDatabase('pwfile'))
    const password = decodeURIComponent(withPw.password)
    withPw.password = ''
    const file = join(dir, 'pg-password')
    writeFileSync(file, `${password}\nignored second line\n`, { mode: 0o600 })
    const store = await openPostgresStore({ url: withPw.href, passwordFile: file })
    try {
      expect(await store.stats()).toEqual(expect.objectContaining({ queued: 0 }))
    } finally {
      await store.close()
    }
  })

  it('none at all: the error says where a password comes from, never a password', async () => {
    const withPw = new URL(await server.createDatabase('nopw'))
    const secret = decodeURIComponent(withPw.password)
    withPw.password = ''
    const saved = process.env.PGPASSWORD
    delete process.env.PGPASSWORD
    try {
      const e = await openPostgresStore({ url: withPw.href }).then(() => undefined, (err: Error) => err)
      expect(e?.message).toMatch(/^PostgreSQL store at 127\.0\.0\.1:\d+\/nopw: .*password.* \(the password comes from the URL, PGPASSWORD or --store-password-file\)$/)
      expect(e?.message).not.toContain(secret)
    } finally {
      if (saved !== undefined) process.env.PGPASSWORD = saved
    }
  })
})
