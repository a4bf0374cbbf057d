import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startAdminFor, type AdminServer } from '../../engine/admin/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { bearer, call, sessionCookie } from './_admin.ts'

const OPS_TOKEN = 'ops-3c9e1a7f5b2d48e6a0c4'
const RETIRED_TOKEN = 'ret-8a2f6c0e4b1d97f3e5a7'

let dir: Awaited<ReturnType<typeof tempDir>>
const running = new Set<AdminServer>()
beforeEach(async () => { dir = await tempDir('weir-admin-session-') })
afterEach(async () => {
  for (const a of running) await a.close()
  running.clear()
  await dir.remove()
})

/** Writes admin.json with "ops" ($env) and, unless `retired` is false, "retired" ($file). */
async function writeConfig(retired: boolean): Promise<string> {
  const file = join(dir.path, 'admin.json')
  await writeFile(join(dir.path, 'retired.token'), RETIRED_TOKEN)
  const tokens = [{ name: 'ops', role: 'operator', token: { $env: 'WEIR_OPS_TOKEN' } }]
  if (retired) tokens.push({ name: 'retired', role: 'operator', token: { $file: 'retired.token' } as never })
  await writeFile(file, JSON.stringify({ tokens }))
  return file
}

/** The admin server as `weir run --admin 127.0.0.1:0 --admin-config admin.json` starts it. */
async function start(): Promise<AdminServer> {
  const errors: string[] = []
  const admin = await startAdminFor({ admin: '127.0.0.1:0', 'admin-config': 'admin.json' }, { cwd: dir.path, env: { WEIR_OPS_TOKEN: OPS_TOKEN }, err: (t) => errors.push(t) }, { log: silentLogger })
  expect(errors).toEqual([])
  running.add(admin!)
  return admin!
}

async function stop(admin: AdminServer): Promise<void> {
  running.delete(admin)
  await admin.close()
}

const login = async (url: string, token: string) => {
  const a = await call(url, '/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
  expect(a.status).toBe(200)
  return sessionCookie(a)
}
const whoIs = async (url: string, headers: Record<string, string>) => {
  const a = await call(url, '/api/session', { headers })
  return a.status === 200 ? String(a.json.name) : a.status
}

describe('admin sessions and a token removed from the admin config', () => {
  it('reads the admin config at start only: editing the file while the engine runs changes no token and no session', async () => {
    await writeConfig(true)
    const admin = await start()
    const cookie = await login(admin.url, RETIRED_TOKEN)
    expect(await whoIs(admin.url, { cookie })).toBe('retired')

    await writeConfig(false)
    await writeFile(join(dir.path, 'retired.token'), 'something-else-entirely')
    // The running server neither re-reads the file nor the secret it names: the token is as valid as its session.
    expect(await whoIs(admin.url, bearer(RETIRED_TOKEN))).toBe('retired')
    expect(await whoIs(admin.url, { cookie })).toBe('retired')
    expect(process.listenerCount('SIGHUP')).toBe(0)
  })

  it('keeps sessions in memory only: after a restart without the token, neither its session nor the token is accepted', async () => {
    await writeConfig(true)
    const before = await start()
    const retired = await login(before.url, RETIRED_TOKEN)
    const ops = await login(before.url, OPS_TOKEN)
    await stop(before)

    await writeConfig(false)
    const after = await start()
    expect(await whoIs(after.url, { cookie: retired })).toBe(401)
    expect(await whoIs(after.url, bearer(RETIRED_TOKEN))).toBe(401)
    // Not even a session of a token still configured survives the restart.
    expect(await whoIs(after.url, { cookie: ops })).toBe(401)
    expect(await whoIs(after.url, { cookie: await login(after.url, OPS_TOKEN) })).toBe('ops')
  })
})
