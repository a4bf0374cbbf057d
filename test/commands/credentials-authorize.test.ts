// `weir credentials authorize` runs every check that can refuse (the credential, the store key
// guard, the token store) before it starts the consent: a person who consents is never then told
// that the token cannot be stored. Here the "browser" opens the printed URL at once, so any consent
// started reaches the authorization endpoint.
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { main } from '../../engine/cli.ts'
import type { CommandIO } from '../../engine/cli-io.ts'
import { createRefreshTokenStore, importRefreshToken } from '../../shared/oauth/refresh-store.ts'
import { encryptContent } from '../../shared/store/encrypted.ts'
import { keyIdOf } from '../../shared/store/keyring.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { tempDir } from '../runtime/_helpers.ts'

const REFRESH = 'rt-authorize-order-refresh-value'

/** The authorization server: every request it gets is counted; /authorize consents at once, /token issues a refresh token. */
let as: Server
let base = ''
const seen: string[] = []
beforeAll(async () => {
  as = createServer((req, res) => {
    const url = new URL(req.url ?? '/', base)
    seen.push(url.pathname)
    if (url.pathname === '/authorize') {
      const back = new URL(url.searchParams.get('redirect_uri')!)
      back.search = new URLSearchParams({ code: 'code-authorize-order', state: url.searchParams.get('state')! }).toString()
      return void res.writeHead(302, { location: back.href }).end()
    }
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: 'at-authorize-order', token_type: 'Bearer', expires_in: 300, refresh_token: REFRESH }))
  })
  await new Promise<void>((ok) => as.listen(0, '127.0.0.1', ok))
  base = `http://127.0.0.1:${(as.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((ok) => as.close(() => ok())))

let dir: Awaited<ReturnType<typeof tempDir>>
const saved = process.env.WEIR_SECRET_KEY
beforeEach(async () => {
  delete process.env.WEIR_SECRET_KEY // the store key comes from the command's environment only
  dir = await tempDir('weir-authorize-order-')
  seen.length = 0
})
afterEach(async () => {
  if (saved === undefined) delete process.env.WEIR_SECRET_KEY
  else process.env.WEIR_SECRET_KEY = saved
  await dir.remove()
})
const dataOf = () => join(dir.path, 'data')
const oauthOf = () => join(dataOf(), 'oauth')

async function channelFile(): Promise<string> {
  const file = join(dir.path, 'crm.json')
  await writeFile(file, JSON.stringify({
    name: 'crm',
    credentials: { crm: { grant: 'refresh_token', tokenUrl: `${base}/token`, authorizationUrl: `${base}/authorize`, clientId: 'app', clientAuth: { method: 'client_secret_post', secret: 'client-secret-value' } } },
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'file', config: { directory: join(dir.path, 'out') } }],
  }))
  return file
}

/** Runs `weir credentials authorize` in-process; a URL it prints is opened at once, as a browser would. */
async function authorize(env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const opened: Promise<unknown>[] = []
  const io: CommandIO = {
    out: (t) => void (out += `${t}\n`),
    err: (t) => {
      err += `${t}\n`
      const m = /^ {2}(http\S+)$/m.exec(t)
      if (m) opened.push(fetch(m[1]!, { redirect: 'follow' }).then((r) => r.text(), () => undefined))
    },
    env, cwd: dir.path, isTTY: false,
  }
  const code = await main(['credentials', 'authorize', await channelFile(), 'crm', '--no-browser', '--timeout', '10s', '--data-dir', dataOf()], io)
  await Promise.all(opened)
  return { code, out, err }
}

describe('weir credentials authorize checks before the consent', () => {
  it('a lost store key (messages sealed with it, oauth/ gone): refused before any request reaches the authorization endpoint', async () => {
    const lost = randomBytes(32)
    const store = encryptContent(openSqliteStore({ dataDir: dataOf() }), { key: async () => lost, channels: true })
    await store.enqueue('crm', { body: { n: 1 } })
    await store.close()
    const r = await authorize()
    expect(r.code).toBe(1)
    expect(r.err).toContain(`the store key ${join(oauthOf(), 'secret.key')} is missing, but the store holds 1 message(s) encrypted with key ${keyIdOf(lost)}`)
    expect(r.err).not.toContain('Open this URL')
    expect(seen).toEqual([])
    expect(await readdir(oauthOf()).catch((): string[] => [])).toEqual([])
  })

  it('a token entry the store key cannot open (another WEIR_SECRET_KEY): refused before the consent', async () => {
    const first = randomBytes(32).toString('base64')
    await mkdir(oauthOf(), { recursive: true })
    await importRefreshToken(createRefreshTokenStore({ dir: oauthOf(), key: first }), 'crm', 'rt-earlier-value-123')
    const r = await authorize({ WEIR_SECRET_KEY: randomBytes(32).toString('base64') })
    expect(r.code).toBe(1)
    expect(r.err).toContain('the token store entry for "crm" cannot be decrypted with the store key from WEIR_SECRET_KEY')
    expect(seen).toEqual([])
  })

  it('with a usable store the consent goes on and the token is stored', async () => {
    const r = await authorize({ WEIR_SECRET_KEY: randomBytes(32).toString('base64') })
    expect([r.code, r.out]).toEqual([0, 'stored the refresh token of credential "crm" (store key "crm", version 1); it was not printed\n'])
    expect(seen).toEqual(['/authorize', '/token'])
    expect(r.out + r.err).not.toContain(REFRESH)
  })
})
