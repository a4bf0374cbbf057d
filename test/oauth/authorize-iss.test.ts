// RFC 9207 mix-up defence in `weir credentials authorize`: a callback that carries `iss` is only
// accepted when the credential names the issuer to compare it with.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { main } from '../../engine/cli.ts'
import type { CommandIO } from '../../engine/cli-io.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { createRefreshTokenStore } from '../../shared/oauth/index.ts'

const SECRET = randomBytes(32).toString('base64url')
const STORE_KEY = 'authorize-iss-store-key'
let as: AuthorizationServer
let dir: string
const http = createHttpClient()
const env = { WEIR_SECRET_KEY: STORE_KEY, CRM_SECRET: SECRET }

beforeAll(async () => {
  as = await startAuthorizationServer()
  dir = await mkdtemp(join(tmpdir(), 'weir-authorize-iss-'))
  as.registerClient({ clientId: 'crm', authMethod: 'client_secret_post', secret: SECRET, redirectUris: ['http://127.0.0.1/callback'], scopes: ['crm.read'] })
})
afterAll(async () => {
  await as.close()
  await http.close()
  await rm(dir, { recursive: true, force: true })
})

async function channel(over: Record<string, unknown>): Promise<string> {
  const crm = { grant: 'refresh_token', tokenUrl: as.tokenUrl, authorizationUrl: as.authorizationUrl, clientId: 'crm', clientAuth: { method: 'client_secret_post', secret: { $env: 'CRM_SECRET' } }, scope: 'crm.read', ...over }
  const file = join(dir, `ch-${randomBytes(6).toString('hex')}.json`)
  await writeFile(file, JSON.stringify({ name: 'iss-test', credentials: { crm }, source: { type: 'http-listener', config: { port: 0 } }, destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }] }))
  return file
}

/** Runs `weir credentials authorize` in-process, plays the browser (GET the URL, follow its one redirect, `tamper` first), returns the run's outcome and the page. */
async function consent(file: string, dataDir: string, tamper: (location: URL) => void = () => undefined) {
  let out = ''
  let err = ''
  let printed!: (url: string) => void
  const url = new Promise<string>((resolve) => (printed = resolve))
  const io: CommandIO = {
    out: (t) => void (out += `${t}\n`),
    err: (t) => {
      err += `${t}\n`
      const m = /^ {2}(http\S+)$/m.exec(t)
      if (m) printed(m[1]!)
    },
    env, cwd: dir, isTTY: false,
  }
  const done = main(['credentials', 'authorize', file, 'crm', '--data-dir', dataDir, '--timeout', '20s', '--no-browser'], io)
  const res = await http.request({ url: await url, throwHttpErrors: false })
  const location = new URL(String(res.headers.location))
  tamper(location)
  const page = await http.request({ url: location.href, throwHttpErrors: false })
  return { code: await done, out, err, page }
}

const stored = (dataDir: string) => createRefreshTokenStore({ dir: join(dir, dataDir, 'oauth'), key: STORE_KEY }).read('crm')

describe('weir credentials authorize: iss without a configured issuer', () => {
  it('refuses a callback whose iss cannot be checked (only authorizationUrl configured), printing the iss to compare; nothing stored', async () => {
    const r = await consent(await channel({}), 'data-evil', (l) => l.searchParams.set('iss', 'https://evil.example'))
    expect([r.code, r.out, r.page.status]).toEqual([1, '', 400])
    expect(r.err.trim().split('\n').at(-1)).toBe('weir credentials authorize: credential "crm": the callback carries iss "https://evil.example" but the credential names no issuer to compare it with (RFC 9207 mix-up defence); set "issuer" to your provider\'s issuer identifier (its documentation or /.well-known/openid-configuration says it) if this is it; nothing was stored')
    expect(await stored('data-evil')).toBeUndefined()
  })

  it('refuses the genuine server\'s iss too until issuer is set; with issuer set the same consent is stored', async () => {
    const refused = await consent(await channel({}), 'data-genuine')
    expect([refused.code, refused.err]).toEqual([1, expect.stringContaining(`the callback carries iss "${as.issuer}" but the credential names no issuer`)])
    expect(await stored('data-genuine')).toBeUndefined()
    const ok = await consent(await channel({ issuer: as.issuer }), 'data-genuine')
    expect([ok.code, ok.out]).toEqual([0, 'stored the refresh token of credential "crm" (store key "crm", version 1); it was not printed\n'])
  })

  it('accepts a callback without iss when the server does not promise one (authorizationUrl only)', async () => {
    const r = await consent(await channel({}), 'data-noiss', (l) => l.searchParams.delete('iss'))
    expect(r.code).toBe(0)
    expect((await stored('data-noiss'))?.refreshToken).toBeTruthy()
  })
})
