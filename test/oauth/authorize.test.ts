import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startAuthorizationServer, type AuthorizationServer, type ClientAuthMethod } from '../../engine/embedded/authorization-server.ts'
import { main } from '../../engine/cli.ts'
import type { CommandIO } from '../../engine/cli-io.ts'
import { browserCommand } from '../../engine/open-browser.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { checkCredential, createRefreshTokenStore, listenForCallback, type CredentialConfig } from '../../shared/oauth/index.ts'
import { keyFor } from './_helpers.ts'

const SECRET = randomBytes(32).toString('base64url')
const STORE_KEY = 'authorize-test-store-key'
let as: AuthorizationServer
let dir: string
let env: NodeJS.ProcessEnv
let savedKey: string | undefined
const http = createHttpClient()

beforeAll(async () => {
  as = await startAuthorizationServer()
  dir = await mkdtemp(join(tmpdir(), 'weir-authorize-'))
  const key = await keyFor('ES256', 'crm-k1')
  env = { WEIR_SECRET_KEY: STORE_KEY, CRM_SECRET: SECRET, CRM_KEY: key.pem }
  // weir token reads the store key from the command's environment: the process's is set to another key.
  savedKey = process.env.WEIR_SECRET_KEY
  process.env.WEIR_SECRET_KEY = Buffer.alloc(32, 7).toString('base64')
  const redirectUris = ['http://127.0.0.1/callback']
  for (const authMethod of ['client_secret_post', 'client_secret_basic', 'client_secret_jwt', 'none'] as const) {
    as.registerClient({ clientId: `crm-${authMethod}`, authMethod, ...(authMethod === 'none' ? {} : { secret: SECRET }), redirectUris, scopes: ['crm.read'] })
  }
  as.registerClient({ clientId: 'crm-private_key_jwt', authMethod: 'private_key_jwt', jwks: { keys: [key.jwk] }, redirectUris, scopes: ['crm.read'] })
  as.registerClient({ clientId: 'crm-refuser', authMethod: 'client_secret_post', secret: SECRET, redirectUris, consent: 'deny' })
})
afterAll(async () => {
  if (savedKey === undefined) delete process.env.WEIR_SECRET_KEY
  else process.env.WEIR_SECRET_KEY = savedKey
  await as.close()
  await http.close()
  await rm(dir, { recursive: true, force: true })
})

const CLIENT_AUTH: Record<ClientAuthMethod, Record<string, unknown>> = {
  client_secret_post: { method: 'client_secret_post', secret: { $env: 'CRM_SECRET' } },
  client_secret_basic: { method: 'client_secret_basic', secret: { $env: 'CRM_SECRET' } },
  client_secret_jwt: { method: 'client_secret_jwt', secret: { $env: 'CRM_SECRET' } },
  private_key_jwt: { method: 'private_key_jwt', alg: 'ES256', kid: 'crm-k1', privateKey: { $env: 'CRM_KEY' } },
  none: { method: 'none' },
  tls_client_auth: {},
}

/** A channel file whose credential `crm` is a refresh_token credential of the embedded server (plus `over`). */
async function channel(over: Record<string, unknown> = {}, clientId = 'crm-client_secret_post'): Promise<string> {
  const method = clientId.slice(4) as ClientAuthMethod
  const crm = { grant: 'refresh_token', tokenUrl: as.tokenUrl, authorizationUrl: as.authorizationUrl, issuer: as.issuer, clientId, clientAuth: CLIENT_AUTH[method] ?? CLIENT_AUTH.client_secret_post, scope: 'crm.read', ...over }
  const file = join(dir, `ch-${randomBytes(6).toString('hex')}.json`)
  await writeFile(file, JSON.stringify({
    name: 'authorize-test', credentials: { crm },
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
  }))
  return file
}

/** Runs the CLI in-process; `url` resolves with the authorization URL once it is printed. */
function startCli(argv: string[]) {
  let out = ''
  let err = ''
  let printed!: (url: string) => void
  const urlPrinted = new Promise<string>((resolve) => (printed = resolve))
  const io: CommandIO = {
    out: (t) => void (out += t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => {
      err += t.endsWith('\n') ? t : `${t}\n`
      const m = /^ {2}(http\S+)$/m.exec(t)
      if (m) printed(m[1]!)
    },
    env, cwd: dir, isTTY: false,
  }
  const done = main(argv, io).then((code) => ({ code, out, err }))
  const url = Promise.race([urlPrinted, done.then((r) => Promise.reject(new Error(`exited ${r.code} before printing a URL: ${r.err}`)))])
  url.catch(() => undefined) // a run that fails early is awaited through `done`
  return { url, done }
}

const authorize = (file: string, dataDir: string, ...flags: string[]) => startCli(['credentials', 'authorize', file, 'crm', '--data-dir', dataDir, '--timeout', '20s', ...flags])

/** The browser: GET the authorization URL, then the redirect it answers with (never followed automatically). */
async function browse(url: string, tamper?: (location: URL) => void) {
  const res = await http.request({ url, throwHttpErrors: false })
  expect(res.status).toBe(302)
  const location = new URL(String(res.headers.location))
  tamper?.(location)
  const page = await http.request({ url: location.href, throwHttpErrors: false })
  return { location, page }
}

const storeOf = (dataDir: string) => createRefreshTokenStore({ dir: join(dir, dataDir, 'oauth'), key: STORE_KEY })

/** Every value the test saw that must never be printed: the code, what the server received or issued. */
function leaked(text: string, extra: string[]): string[] {
  return [...as.secretsSeen(), ...extra].filter((s) => s.length >= 8 && text.includes(s)).map((s) => `${s.slice(0, 4)}… (${s.length} chars)`)
}

describe('weir credentials authorize', () => {
  it.each(['client_secret_post', 'client_secret_basic', 'client_secret_jwt', 'private_key_jwt', 'none'])('%s: consent, code exchange, refresh token stored encrypted; weir token then uses it', async (method) => {
    const file = await channel({ authorizationParams: { prompt: 'consent' } }, `crm-${method}`)
    const dataDir = `data-${method}`
    const run = authorize(file, dataDir)
    const url = new URL(await run.url)
    expect(Object.fromEntries(url.searchParams)).toEqual({
      response_type: 'code', client_id: `crm-${method}`, redirect_uri: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/callback$/), scope: 'crm.read', prompt: 'consent',
      state: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/), code_challenge: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), code_challenge_method: 'S256',
    })
    const { location, page } = await browse(url.href)
    expect([page.status, page.headers['content-type'], page.body]).toEqual([200, 'text/html; charset=utf-8', expect.stringContaining('You may close this tab.')])
    const r = await run.done
    expect([r.code, r.out]).toEqual([0, 'stored the refresh token of credential "crm" (store key "crm", version 1); it was not printed\n'])
    const exchange = as.requests.at(-1)!
    expect(exchange).toMatchObject({ grant: 'authorization_code', authMethod: method, status: 200, form: { code: '[REDACTED]', code_verifier: '[REDACTED]', redirect_uri: url.searchParams.get('redirect_uri') } })
    expect(exchange.form.scope).toBeUndefined()

    const stored = await storeOf(dataDir).read('crm')
    expect(as.secretsSeen()).toContain(stored!.refreshToken)
    const onDisk = await Promise.all((await readdir(join(dir, dataDir, 'oauth'))).map((f) => readFile(join(dir, dataDir, 'oauth', f), 'utf8')))
    expect(onDisk.some((t) => t.includes(stored!.refreshToken!))).toBe(false)

    const tok = await startCli(['token', file, 'crm', '--data-dir', dataDir]).done
    expect([tok.code, as.requests.at(-1)!.grant]).toEqual([0, 'refresh_token'])
    expect(tok.out).toMatch(/^credential crm: Bearer token\n {2}scope: {3}crm\.read\n/)
    expect(leaked(r.out + r.err + tok.out + tok.err + page.body, [location.searchParams.get('code')!])).toEqual([])
  })

  it('discovers both endpoints from issuer and checks iss (RFC 8414, RFC 9207)', async () => {
    const file = await channel({ tokenUrl: undefined, authorizationUrl: undefined, issuer: as.issuer })
    const run = authorize(file, 'data-discovery')
    const url = await run.url
    expect(url.startsWith(`${as.authorizationUrl}?`)).toBe(true)
    await browse(url)
    expect((await run.done).code).toBe(0)
    expect((await storeOf('data-discovery').read('crm'))?.version).toBe(1)
  })

  it('a fixed port registered with the provider is used as is', async () => {
    const port = await freePort()
    const redirectUri = `http://127.0.0.1:${port}/weir/cb`
    as.registerClient({ clientId: 'crm-fixed', authMethod: 'client_secret_post', secret: SECRET, redirectUris: [redirectUri] })
    const run = authorize(await channel({ redirectUri, scope: undefined }, 'crm-fixed'), 'data-fixed')
    const url = new URL(await run.url)
    expect(url.searchParams.get('redirect_uri')).toBe(redirectUri)
    await browse(url.href)
    expect((await run.done).code).toBe(0)
  })

  it('a wrong state is refused; the page says so and nothing is stored', async () => {
    const run = authorize(await channel(), 'data-state')
    const { page } = await browse(await run.url, (l) => l.searchParams.set('state', 'forged-state'))
    expect([page.status, page.body]).toEqual([400, expect.stringContaining('state does not match this request')])
    const r = await run.done
    expect([r.code, r.err.split('\n').at(-2)]).toEqual([1, 'weir credentials authorize: credential "crm": the callback\'s state does not match this request (an old browser tab, or a request that did not come from this consent); nothing was stored'])
    expect(await storeOf('data-state').read('crm')).toBeUndefined()
  })

  it('a replayed code is refused and revokes the tokens it bought: weir token then asks for re-authorization', async () => {
    const file = await channel({ storeKey: 'crm-replay' }) // its own token cache slot in this process
    const run = authorize(file, 'data-replay')
    const url = new URL(await run.url)
    const { location } = await browse(url.href)
    expect((await run.done).code).toBe(0)
    const replay = await http.request({
      url: as.tokenUrl, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, throwHttpErrors: false,
      body: new URLSearchParams({ grant_type: 'authorization_code', code: location.searchParams.get('code')!, redirect_uri: url.searchParams.get('redirect_uri')!, code_verifier: randomBytes(32).toString('base64url'), client_id: 'crm-client_secret_post', client_secret: SECRET }).toString(),
    })
    expect(JSON.parse(replay.body)).toMatchObject({ error: 'invalid_grant', error_description: 'authorization code already used; the tokens issued for it are revoked' })
    const tok = await startCli(['token', file, 'crm', '--data-dir', 'data-replay']).done
    expect([tok.code, tok.err]).toEqual([1, expect.stringContaining('the refresh token was rejected (invalid_grant: refresh token revoked); re-authorize')])
  })

  it('a PKCE mismatch (the challenge swapped on the way) fails the exchange; nothing is stored', async () => {
    const run = authorize(await channel(), 'data-pkce')
    const url = new URL(await run.url)
    url.searchParams.set('code_challenge', createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url'))
    await browse(url.href)
    const r = await run.done
    expect([r.code, r.err.split('\n').at(-2)]).toEqual([1, `weir credentials authorize: credential "crm": token endpoint ${as.tokenUrl} answered 400 invalid_grant: PKCE verification failed: code_verifier does not match code_challenge`])
    expect(await storeOf('data-pkce').read('crm')).toBeUndefined()
  })

  it('a denied consent shows the server\'s error and error_description, on the page and in the terminal', async () => {
    const run = authorize(await channel({ scope: undefined }, 'crm-refuser'), 'data-deny')
    const { page } = await browse(await run.url)
    expect([page.status, page.body]).toEqual([400, expect.stringContaining('the authorization server refused: access_denied: the user denied the request')])
    const r = await run.done
    expect([r.code, r.err.split('\n').at(-2)]).toEqual([1, 'weir credentials authorize: credential "crm": the authorization server refused: access_denied: the user denied the request'])
  })

  it('a hostile error_description is cut and stripped of control characters in the terminal, and escaped on the page', async () => {
    const run = authorize(await channel(), 'data-hostile')
    const url = new URL(await run.url)
    const callback = new URL(url.searchParams.get('redirect_uri')!)
    callback.searchParams.set('state', url.searchParams.get('state')!)
    callback.searchParams.set('error', 'access_denied')
    callback.searchParams.set('error_description', `<script>alert(1)</script>\u001b[31m\r\nweir: forged line ${'x'.repeat(400)}`)
    const page = await http.request({ url: callback.href, throwHttpErrors: false })
    expect(page.body).toContain('&#60;script&#62;alert(1)&#60;/script&#62;')
    expect(page.body).not.toContain('<script>')
    const line = (await run.done).err.split('\n').at(-2)!
    expect(line).toBe(`weir credentials authorize: credential "crm": the authorization server refused: access_denied: <script>alert(1)</script> [31m weir: forged line ${'x'.repeat(151)}…`) // 200 characters of description
  })

  it('an iss that is not the configured issuer is refused (RFC 9207 mix-up)', async () => {
    const run = authorize(await channel({ issuer: 'http://127.0.0.1:9/elsewhere' }), 'data-iss')
    const { page } = await browse(await run.url)
    expect([page.status, page.body]).toEqual([400, expect.stringContaining(`is not the configured issuer http://127.0.0.1:9/elsewhere`)])
    const r = await run.done
    expect([r.code, r.err.split('\n').at(-2)]).toEqual([1, `weir credentials authorize: credential "crm": the callback's iss "${as.issuer}" is not the configured issuer http://127.0.0.1:9/elsewhere (RFC 9207: the answer comes from another authorization server); nothing was stored`])
  })

  it('times out with a clear message and exit code 1', async () => {
    const run = startCli(['credentials', 'authorize', await channel(), 'crm', '--data-dir', 'data-timeout', '--timeout', '300ms'])
    const redirect = new URL(await run.url).searchParams.get('redirect_uri')
    const r = await run.done
    expect([r.code, r.err.split('\n').at(-2)]).toEqual([1, `weir credentials authorize: credential "crm": no authorization response reached ${redirect} within 300 ms; run the command again and complete the consent in the browser (--timeout waits longer)`])
  })

  it.each<[string, string[], Record<string, unknown>, number, string]>([
    ['a bad --timeout', ['--timeout', 'soon'], {}, 2, 'weir credentials: --timeout must be a duration like 300s, 10m or 500ms; not "soon"'],
    ['no authorization endpoint', [], { authorizationUrl: undefined, issuer: undefined }, 1, 'weir credentials: credential "crm" #/authorizationUrl: weir credentials authorize needs authorizationUrl, or issuer to discover it'],
    ['a redirect URI that is not loopback', [], { redirectUri: 'http://example.com/cb' }, 1, '#/credentials/crm/redirectUri: must match pattern'],
  ])('%s is a user error, exit %i (2: bad usage)', async (_n, flags, over, code, message) => {
    const r = await authorize(await channel(over), 'data-usage', ...flags).done
    expect([r.code, r.err]).toEqual([code, expect.stringContaining(message)])
  })
})

describe('the loopback callback', () => {
  it('keeps a redirect URI without a path as configured (http://localhost, no trailing slash) and takes the answer on /', async () => {
    const cb = await listenForCallback('http://localhost', { state: 'st', requireIss: false }, 5000)
    try {
      expect(cb.redirectUri).toMatch(/^http:\/\/localhost:\d+$/)
      const page = await http.request({ url: `http://127.0.0.1:${new URL(cb.redirectUri).port}/?state=st&code=the-code-value`, throwHttpErrors: false })
      expect([page.status, await cb.code]).toEqual([200, 'the-code-value'])
    } finally {
      await cb.close()
    }
  })

  it('refuses an answer without iss when the server promises one (RFC 9207 §2.4); other paths are 404 and do not count', async () => {
    const cb = await listenForCallback('http://127.0.0.1/cb', { state: 'st', issuer: 'https://as.example', requireIss: true }, 5000)
    try {
      expect((await http.request({ url: `${cb.redirectUri.replace('/cb', '/favicon.ico')}`, throwHttpErrors: false })).status).toBe(404)
      const page = await http.request({ url: `${cb.redirectUri}?state=st&code=the-code-value`, throwHttpErrors: false })
      const err = await cb.code.catch((e) => e)
      expect([page.status, err.code, err.message]).toEqual([400, 'ERR_OAUTH_AUTHORIZATION', 'the authorization server promises an iss parameter (RFC 9207) but the callback has none; nothing was stored'])
    } finally {
      await cb.close()
    }
  })
})

describe('consent configuration', () => {
  const base: CredentialConfig = { grant: 'refresh_token', tokenUrl: 'https://as.example/token', clientId: 'c', clientAuth: { secret: 's' } }
  it.each<[string, CredentialConfig, Array<[string, string]>]>([
    ['the consent fields on a refresh_token credential', { ...base, authorizationUrl: 'https://as.example/authorize', redirectUri: 'http://127.0.0.1:8765/cb', authorizationParams: { access_type: 'offline', prompt: 'consent' } }, []],
    ['a parameter Weir sets itself', { ...base, authorizationParams: { state: 'x', 'a/b': 'y', code_challenge_method: 'plain' } }, [
      ['/authorizationParams/state', '"state" is sent by Weir itself; a fresh one is made for each request'],
      ['/authorizationParams/code_challenge_method', '"code_challenge_method" is sent by Weir itself; it is always S256'],
    ]],
    ['another grant', { ...base, grant: 'client_credentials', authorizationUrl: 'https://as.example/authorize' }, [
      ['/authorizationUrl', 'authorizationUrl is for weir credentials authorize, which obtains a refresh token: it needs grant refresh_token; got client_credentials'],
    ]],
  ])('%s', (_n, config, problems) => {
    expect(checkCredential(config)).toEqual(problems)
  })

  it.each<[string, NodeJS.ProcessEnv, NodeJS.Platform, string | undefined]>([
    ['Linux with a display', { DISPLAY: ':0' }, 'linux', 'xdg-open'],
    ['Linux with Wayland', { WAYLAND_DISPLAY: 'wayland-0' }, 'linux', 'xdg-open'],
    ['Linux without a display (ssh, a container)', {}, 'linux', undefined],
    ['CI', { CI: 'true', DISPLAY: ':0' }, 'linux', undefined],
    ['macOS', {}, 'darwin', 'open'],
    ['Windows', {}, 'win32', 'rundll32'],
  ])('the browser on %s', (_n, e, platform, command) => {
    expect(browserCommand(e, platform)?.command).toBe(command)
  })
})

function freePort(): Promise<number> {
  const s = createServer()
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => {
    const { port } = s.address() as AddressInfo
    s.close(() => resolve(port))
  }))
}
