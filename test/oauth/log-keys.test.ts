import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { CommandIO } from '../../engine/cli-io.ts'
import { run as runCommand } from '../../engine/commands/run.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { createLogger } from '../../shared/log/index.ts'
import { createTokenProvider, TokenCache } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { startApi, tempDir } from '../runtime/_helpers.ts'
import { duplicateKeys, occurrences } from './_log-keys.ts'

const SECRET = 'epic-client-secret-7d1c2b9e4f'
const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')

let as: AuthorizationServer
beforeAll(async () => { as = await startAuthorizationServer() })
afterAll(async () => { await as.close() })

/** Every line parses, no key repeats in any object of any line, and no secret the server saw shows. */
function expectCleanLines(lines: string[]) {
  for (const line of lines) expect(() => JSON.parse(line)).not.toThrow()
  expect(lines.flatMap((l) => duplicateKeys(l))).toEqual([])
  expect(lines.filter((l) => occurrences(l, 'credential') > 1).length).toBe(0)
  expect(lines.filter((l) => occurrences(l, 'channel') > 1).length).toBe(0)
  const seen = as.secretsSeen()
  expect(lines.some((l) => seen.some((s) => l.includes(s))), 'a secret or token in the logs').toBe(false)
}

const messagesOf = (lines: string[], credential: string) =>
  lines.map((l) => JSON.parse(l) as { credential?: string; msg: string }).filter((l) => l.credential === credential).map((l) => l.msg)

describe('log lines of a token fetch', () => {
  const level = process.env.WEIR_LOG_LEVEL
  let dir: Awaited<ReturnType<typeof tempDir>>
  let api: Awaited<ReturnType<typeof startApi>>
  beforeEach(async () => {
    dir = await tempDir('weir-logkeys-')
    api = await startApi()
    process.env.WEIR_LOG_LEVEL = 'debug'
  })
  afterEach(async () => {
    if (level === undefined) delete process.env.WEIR_LOG_LEVEL
    else process.env.WEIR_LOG_LEVEL = level
    await api.close()
    await dir.remove()
  })

  it('`weir run` (as the demo runs it): each key once per line, for a fetched token and for invalid_client', async () => {
    as.registerClient({ clientId: 'epic-run', authMethod: 'client_secret_basic', secret: SECRET })
    const file = join(dir.path, 'adt.json')
    await writeFile(file, JSON.stringify({
      name: 'adt',
      credentials: { epic: { tokenUrl: as.tokenUrl, clientId: 'epic-run', clientAuth: { method: 'client_secret_basic', secret: { $env: 'EPIC_SECRET' } } } },
      source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0 } },
      destinations: [{ name: 'fhir', type: 'http', config: { url: api.url, credential: 'epic' } }],
    }))
    const out: string[] = []
    const io: CommandIO = { out: (t) => void out.push(t), err: (t) => void out.push(t), env: { EPIC_SECRET: SECRET }, cwd: dir.path, isTTY: false }
    const ac = new AbortController()
    let started!: (h: ChannelHandle[]) => void
    const up = new Promise<ChannelHandle[]>((ok) => (started = ok))
    const done = runCommand([file, '--data-dir', 'data'], io, { signal: ac.signal, onStarted: (h) => started(h), refreshMs: 20 })
    const [handle] = await Promise.race([up, done.then((code) => { throw new Error(`run exited ${code}`) })])
    await handle!.checkCredential('epic')
    as.registerClient({ clientId: 'epic-run', authMethod: 'client_secret_basic', secret: 'rotated-on-the-server-only' })
    await expect(handle!.checkCredential('epic')).rejects.toMatchObject({ error: 'invalid_client' })
    ac.abort()
    expect(await done).toBe(0)

    expect(messagesOf(out, 'epic')).toEqual(expect.arrayContaining(['token request', expect.stringMatching(/^credential broken: /)]))
    expectCleanLines(out)
  })

  it('a provider given a logger already bound to its credential (and channel) binds neither again', async () => {
    as.registerClient({ clientId: 'epic-direct', authMethod: 'client_secret_basic', secret: SECRET })
    const lines: string[] = []
    const log = createLogger({ pretty: false, level: 'debug', destination: new Writable({ write(c, _e, cb) { lines.push(String(c)); cb() } }) })
    const config = { tokenUrl: as.tokenUrl, clientId: 'epic-direct', clientAuth: { secret: new Secret(SECRET) } }
    const bound = createTokenProvider('epic', config, { log: log.child({ channel: 'adt', credential: 'epic' }), cache: new TokenCache() })
    const unbound = createTokenProvider('other', config, { log: log.child({ channel: 'adt' }), cache: new TokenCache() })
    await bound.getToken()
    await unbound.getToken()
    await bound.close()
    await unbound.close()
    expect(messagesOf(lines, 'epic')).toContain('token request')
    expect(messagesOf(lines, 'other')).toContain('token request')
    expectCleanLines(lines)
  })
})
