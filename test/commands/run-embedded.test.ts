// `weir run --embedded` through the real binary (bin/weir.js on dist/; needs `npm run build`): a
// channel of made-up hosts runs against the embedded authorization server, API and MLLP receiver,
// its credentials registered with their own secret and key, until SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { freePort } from '../../engine/embedded/postgres.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { run } from '../../engine/commands/run.ts'
import type { CommandIO } from '../../engine/cli-io.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { runCli } from '../_cli.ts'
import { tempDir, until } from '../_setup.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const SECRET = `crm-${randomBytes(18).toString('base64url')}`
const ER7 = 'MSH|^~\\&|WEIR|HOSP|LAB|HOSP|20260301120000||ORU^R01^ORU_R01|MSG00001|P|2.5.1\rPID|1||203713^^^HOSP^MR||LOVELACE^ADA'

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/**
 * A channel in a directory of its own: an http-listener on a free port taking ER7 text, to a CRM
 * (client_secret_basic, its secret from $env), a partner API (private_key_jwt ES256, its key from
 * $file) and a lab system over MLLP, all at hosts that do not exist.
 */
async function channelDir() {
  const tmp = await tempDir('weir-run-embedded-')
  cleanups.push(tmp.cleanup)
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  await writeFile(join(tmp.dir, 'partner.pem'), pem, { mode: 0o600 })
  const port = await freePort()
  const file = join(tmp.dir, 'orders.json')
  await writeFile(file, JSON.stringify({
    name: 'orders',
    credentials: {
      crm: { tokenUrl: 'https://login.crm-weir.example/oauth2/token', clientId: 'weir-crm', clientAuth: { method: 'client_secret_basic', secret: { $env: 'CRM_SECRET' } } },
      partner: { tokenUrl: 'https://auth.partner-weir.example/token', clientId: 'weir-partner', clientAuth: { method: 'private_key_jwt', alg: 'ES256', kid: 'k1', privateKey: { $file: 'partner.pem' } } },
    },
    source: { type: 'http-listener', config: { port, host: '127.0.0.1', path: '/orders', contentTypes: ['x-application/hl7-v2+er7'] } },
    destinations: [
      { name: 'crm', type: 'http', config: { url: 'https://api.crm-weir.example/v1/orders?source=weir', credential: 'crm' } },
      { name: 'partner', type: 'http', config: { url: 'https://api.partner-weir.example/inbound/orders', credential: 'partner' } },
      { name: 'lab', type: 'mllp', config: { host: 'lab.hospital-weir.example', port: 2575 } },
    ],
  }))
  // The key's body, as it would show if the output printed the key.
  const keyBody = pem.split('\n')[1]!
  return { dir: tmp.dir, file, port, keyBody, dataDir: join(tmp.dir, 'data') }
}

/** Spawns `weir run <file> --embedded --data-dir <dataDir> --admin off` with info logs, collecting stdout and stderr. */
function spawnEmbedded(file: string, dataDir: string) {
  const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'bin/weir.js'), 'run', file, '--embedded', '--data-dir', dataDir, '--admin', 'off'], {
    cwd: ROOT, env: { ...process.env, CRM_SECRET: SECRET, WEIR_LOG_LEVEL: 'info', CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  cleanups.push(async () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const out = { stdout: '', stderr: '' }
  child.stdout!.on('data', (d) => (out.stdout += d))
  child.stderr!.on('data', (d) => (out.stderr += d))
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)))
  const waitFor = (cond: () => boolean, what: string) => until(() => {
    if (child.exitCode !== null) throw new Error(`weir run exited early (${child.exitCode}): ${out.stderr}${out.stdout}`)
    return cond()
  }, 20_000, what)
  return { child, out, exited, waitFor }
}

/** The JSON log lines of stdout. */
const logLines = (stdout: string) => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)

describe('weir run --embedded', () => {
  it('rehearses the channel against the embedded servers: delivered to each destination with its own credential, nothing sent to the hosts it names', async () => {
    const ch = await channelDir()
    const run = spawnEmbedded(ch.file, ch.dataDir)
    await run.waitFor(() => run.out.stdout.includes('"msg":"weir running"'), 'weir running')

    // Where it all went, on stderr: the servers and each credential and destination, as written and as pointed.
    const as = /authorization server: (http:\/\/127\.0\.0\.1:\d+)/.exec(run.out.stderr)?.[1]
    const api = /API: (http:\/\/127\.0\.0\.1:\d+)/.exec(run.out.stderr)?.[1]
    expect(as && api).toBeTruthy()
    expect(run.out.stderr).toMatch(/a rehearsal against embedded servers; nothing leaves 127\.0\.0\.1/)
    expect(run.out.stderr).toContain(`credential "crm" (client_credentials grant, client authentication client_secret_basic): https://login.crm-weir.example/oauth2/token → ${as}/tenants/crm/token`)
    expect(run.out.stderr).toContain(`credential "partner" (client_credentials grant, client authentication private_key_jwt): https://auth.partner-weir.example/token → ${as}/tenants/partner/token`)
    expect(run.out.stderr).toContain(`destination "crm" (http): https://api.crm-weir.example/v1/orders?source=weir → ${api}/v1/orders?source=weir`)
    expect(run.out.stderr).toContain(`destination "partner" (http): https://api.partner-weir.example/inbound/orders → ${api}/inbound/orders`)
    expect(run.out.stderr).toMatch(/destination "lab" \(mllp\): lab\.hospital-weir\.example:2575 → 127\.0\.0\.1:\d+ \(an embedded receiver answering AA\)/)

    const res = await fetch(`http://127.0.0.1:${ch.port}/orders`, { method: 'POST', headers: { 'content-type': 'x-application/hl7-v2+er7' }, body: ER7 })
    expect(res.status).toBe(202)
    // The embedded API logs each request it answered: both destinations' tokens were accepted.
    const answered = () => logLines(run.out.stdout).filter((l) => l.msg === 'embedded API answered')
    await run.waitFor(() => answered().length >= 2, 'two requests answered')
    expect(answered().map((l) => [l.method, l.path, l.status]).sort()).toEqual([['POST', '/inbound/orders', 200], ['POST', '/v1/orders', 200]])

    run.child.kill('SIGTERM')
    expect(await run.exited).toBe(0)
    const listed = await runCli(['messages', 'list', '--json', '--data-dir', ch.dataDir])
    expect(listed.code).toBe(0)
    expect((JSON.parse(listed.out) as Array<{ channel: string; status: string }>).map((m) => [m.channel, m.status])).toEqual([['orders', 'delivered']])
    const output = run.out.stdout + run.out.stderr
    expect(output).not.toContain(SECRET)
    expect(output).not.toContain(ch.keyBody)
    expect(output).not.toMatch(/eyJ[\w-]+\.eyJ/) // no access token (a JWT) either
  })

  it('refuses --store (a cluster) as bad usage, exit 2, without printing the password', async () => {
    const ch = await channelDir()
    const r = await runCli(['run', ch.file, '--embedded', '--store', 'postgres://weir:pw5ecret@127.0.0.1:5432/weir', '--data-dir', ch.dataDir, '--admin', 'off'], { ...process.env, CRM_SECRET: SECRET })
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/--embedded .*cannot join a cluster: leave out --store/)
    expect(r.err).not.toContain('pw5ecret')
  })

  it('refuses --alerts as bad usage, exit 2: an alerts file\'s credentials would reach their real token endpoints', async () => {
    const ch = await channelDir()
    const r = await runCli(['run', ch.file, '--embedded', '--alerts', join(ch.dir, 'alerts.json'), '--data-dir', ch.dataDir, '--admin', 'off'], { ...process.env, CRM_SECRET: SECRET })
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/leave out --alerts/)
  })

  it('refuses a data directory holding unfinished messages of the channel, which it would deliver to the embedded API (exit 1)', async () => {
    const ch = await channelDir()
    const store = openSqliteStore({ dataDir: ch.dataDir })
    await store.enqueue('orders', { body: 'an order of an earlier run' })
    await store.close()
    const r = await runCli(['run', ch.file, '--embedded', '--data-dir', ch.dataDir, '--admin', 'off'], { ...process.env, CRM_SECRET: SECRET, WEIR_LOG_LEVEL: 'warn' })
    expect(r.code).toBe(1)
    expect(r.err).toContain(`${ch.dataDir} holds unfinished messages of channel "orders"`)
    expect(r.err).toMatch(/Rehearse with a data directory of its own \(--data-dir\)/)
    // Still queued for its destination, not delivered elsewhere.
    const listed = await runCli(['messages', 'list', '--json', '--data-dir', ch.dataDir])
    expect((JSON.parse(listed.out) as Array<{ status: string }>).map((m) => m.status)).toEqual(['queued'])
  })

  it('refuses, too, a data directory holding an unfinished notification of the channel\'s own alerts (their webhook channel)', async () => {
    const ch = await channelDir()
    const definition = JSON.parse(await readFile(ch.file, 'utf8')) as Record<string, unknown>
    definition.alerts = { webhooks: { ops: { url: 'https://hooks.ops-weir.example/weir' } }, alerts: [{ name: 'old', condition: 'queue-age', maxAgeSeconds: 60, webhook: 'ops' }] }
    await writeFile(ch.file, JSON.stringify(definition))
    const store = openSqliteStore({ dataDir: ch.dataDir })
    await store.enqueue('weir-alerts.orders.ops', { body: { alert: 'old', state: 'firing' } })
    await store.close()
    const r = await runCli(['run', ch.file, '--embedded', '--data-dir', ch.dataDir, '--admin', 'off'], { ...process.env, CRM_SECRET: SECRET, WEIR_LOG_LEVEL: 'warn' })
    expect(r.code).toBe(1)
    expect(r.err).toContain(`${ch.dataDir} holds unfinished messages of channel "weir-alerts.orders.ops"`)
  })

  it('imports a refresh token the embedded server issued for a refresh_token credential, gives a baseUrlFromToken destination the API, and accepts a static token and an API key', async () => {
    const tmp = await tempDir('weir-run-embedded-')
    cleanups.push(tmp.cleanup)
    await writeFile(join(tmp.dir, 'crm-secret.txt'), SECRET, { mode: 0o600 })
    const file = join(tmp.dir, 'mixed.json')
    await writeFile(file, JSON.stringify({
      name: 'mixed',
      credentials: {
        crm: { grant: 'refresh_token', tokenUrl: 'https://auth.crm-weir.example/oauth2/token', clientId: 'weir-crm-app', clientAuth: { method: 'client_secret_post', secret: { $file: 'crm-secret.txt' } } },
        sf: { tokenUrl: 'https://login.sf-weir.example/services/oauth2/token', clientId: 'weir-sf', clientAuth: { method: 'client_secret_post', secret: { $file: 'crm-secret.txt' } } },
        legacy: { grant: 'static', token: { $env: 'LEGACY_TOKEN' } },
      },
      source: { type: 'http-listener', config: { port: 0, host: '127.0.0.1', path: '/in' } },
      destinations: [
        { name: 'crm', type: 'http', config: { url: 'https://api.crm-weir.example/v2/orders', credential: 'crm' } },
        { name: 'sf', type: 'http', config: { url: '/services/data/v61.0/sobjects/Contact', baseUrlFromToken: 'instance_url', credential: 'sf' } },
        { name: 'legacy', type: 'http', config: { url: 'https://legacy-weir.example/orders', credential: 'legacy' } },
        { name: 'keyed', type: 'http', config: { url: 'https://keyed-weir.example/orders', secretHeaders: { 'x-api-key': { $env: 'API_KEY' } } } },
      ],
    }))
    let out = ''
    const io: CommandIO = { out: (t) => { out += `${t}\n` }, err: (t) => { out += `${t}\n` }, env: { ...process.env, LEGACY_TOKEN: 'legacy-static-token-value', API_KEY: 'an-api-key-value', WEIR_LOG_LEVEL: 'info' }, cwd: tmp.dir, isTTY: false }
    const stop = new AbortController()
    let handle: ChannelHandle | undefined
    const ran = run([file, '--embedded', '--data-dir', join(tmp.dir, 'data'), '--admin', 'off'], io, { signal: stop.signal, onStarted: (hs) => { handle = hs[0] } })
    let ended: number | undefined
    void ran.then((code) => { ended = code }, () => { ended = -1 })
    await until(() => {
      if (ended !== undefined) throw new Error(`weir run ended (${ended}): ${out}`)
      return handle !== undefined
    }, 20_000, 'started')
    const res = await fetch(`http://127.0.0.1:${handle!.source.address!()!.port}/in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id":1}' })
    expect(res.status).toBe(202)
    await until(() => handle!.counters().delivered + handle!.counters().errors >= 1, 20_000, 'delivered')
    stop.abort()
    expect(await ran).toBe(0)
    expect(handle!.counters()).toMatchObject({ delivered: 1, errors: 0 })
    const answered = logLines(out).filter((l) => l.msg === 'embedded API answered').map((l) => [l.path, l.status]).sort()
    expect(answered).toEqual([['/orders', 200], ['/orders', 200], ['/services/data/v61.0/sobjects/Contact', 200], ['/v2/orders', 200]])
    expect(out).toContain('credential "crm" (refresh_token grant, client authentication client_secret_post)')
    expect(out).toContain('a refresh token it issued is in the token store')
    expect(out).toMatch(/destination "sf" \(http\): \/services\/data\/v61\.0\/sobjects\/Contact on the token's instance_url → http:\/\/127\.0\.0\.1:\d+\/services/)
    for (const secret of [SECRET, 'legacy-static-token-value', 'an-api-key-value']) expect(out).not.toContain(secret)
  })
})
