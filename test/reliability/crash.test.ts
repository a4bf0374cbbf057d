import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Pool } from 'undici'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { tempDir } from '../_setup.ts'
import { report, root, server, tally, textCollector, until } from './_helpers.ts'

const collector = textCollector()
const secret = randomBytes(24).toString('base64url')
const concurrency = 8
let as: AuthorizationServer
let api: Awaited<ReturnType<typeof server>>
let dir: Awaited<ReturnType<typeof tempDir>>
const keys: string[] = []
const children = new Set<ChildProcess>()

const freePort = () => new Promise<number>((ok) => {
  const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => ok(p)) })
})

beforeAll(async () => {
  collector.capture()
  dir = await tempDir('weir-rel-crash-')
  as = await startAuthorizationServer({ tokenLifetimeSec: 3600 })
  as.registerClient({ clientId: 'crash', authMethod: 'client_secret_basic', secret })
  api = await server(async (req, _body, res) => {
    try {
      await as.verifyAccessToken(req.headers.authorization)
    } catch {
      return void res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end()
    }
    keys.push(String(req.headers['idempotency-key']))
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
  })
})
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await api?.close()
  await as?.close()
  await dir?.cleanup()
  collector.release()
})

describe('SIGKILL of weir run during a 10,000-message stream', () => {
  it('delivers every acknowledged message after a restart; duplicates within the in-flight bound', async () => {
    const port = await freePort()
    const file = join(dir.dir, 'crash.json')
    await writeFile(file, JSON.stringify({
      name: 'crash',
      credentials: { api: { tokenUrl: as.tokenUrl, clientId: 'crash', clientAuth: { method: 'client_secret_basic', secret: { $env: 'CRASH_SECRET' } } } },
      source: { type: 'http-listener', config: { port, path: '/in' } },
      filters: [{ type: 'map', config: { jsonata: "{ 'resourceType': 'Observation', 'n': n }" } }],
      destinations: [{ name: 'api', type: 'http', config: { url: `${api.url}/fhir/Observation`, credential: 'api' }, retry: { maxAttempts: 50, initialDelayMs: 20, maxDelayMs: 200 } }],
      options: { concurrency },
    }))
    const start = async () => {
      const child = spawn(process.execPath, [join(root, 'bin/weir.js'), 'run', file, '--data-dir', join(dir.dir, 'data')], {
        cwd: root, env: { ...process.env, WEIR_LOG_LEVEL: 'info', CI: '1', CRASH_SECRET: secret }, stdio: ['ignore', 'pipe', 'pipe'],
      })
      children.add(child)
      let output = ''
      child.stdout!.on('data', (d) => { output += d; collector.add(String(d)) })
      child.stderr!.on('data', (d) => { output += d; collector.add(String(d)) })
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((ok) => child.on('exit', (code, signal) => ok({ code, signal })))
      await until(() => { if (child.exitCode !== null) throw new Error(`weir run exited: ${output}`); return output.includes('"msg":"listening"') }, 30_000, 'weir run listening')
      return { child, exited, output: () => output }
    }

    let weir = await start()
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 32 })
    const total = 10_000
    const acked = new Map<number, string>()
    let retriedSends = 0
    const send = async (n: number) => {
      for (let i = 0; i < 1000; i++) {
        try {
          const res = await pool.request({ method: 'POST', path: '/in', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n, pad: 'x'.repeat(200) }) })
          const text = await res.body.text()
          if (res.statusCode === 202) return void acked.set(n, (JSON.parse(text) as { id: string }).id)
        } catch { /* the engine is down: send again */ }
        retriedSends++
        await new Promise((ok) => setTimeout(ok, 25))
      }
      throw new Error(`message ${n} never acknowledged`)
    }
    let next = 0
    const sending = Promise.all(Array.from({ length: 32 }, async () => { for (let n = next++; n < total; n = next++) await send(n) }))
    await until(() => acked.size >= 4000, 60_000, '4000 acknowledged')
    weir.child.kill('SIGKILL')
    expect((await weir.exited).signal).toBe('SIGKILL')
    const ackedAtKill = acked.size
    const deliveredAtKill = new Set(keys).size
    weir = await start()
    // Written before the port file, but the pipe may deliver it after the file is seen.
    await until(() => /unclean stop detected/.test(weir.output()), 10_000, 'the unclean-stop line').catch(() => {})
    expect(weir.output()).toMatch(/unclean stop detected: (messages that were in flight are queued again|no message was recorded in flight)/)
    await sending
    await pool.close()
    expect(acked.size).toBe(total)
    const ackedKeys = [...acked.values()].map((id) => `${id}:api`)
    await until(() => { const got = new Set(keys); return ackedKeys.every((k) => got.has(k)) }, 60_000, 'every acknowledged message delivered')
    weir.child.kill('SIGTERM')
    expect((await weir.exited).code).toBe(0)

    const { distinct, duplicated } = tally(keys)
    const lost = ackedKeys.filter((k) => !distinct.has(k)).length
    expect(lost).toBe(0)
    expect(duplicated).toBeLessThanOrEqual(concurrency)
    expect(deliveredAtKill).toBeLessThan(ackedAtKill) // the kill really was mid-stream
    report({
      scenario: 'SIGKILL of weir run mid-stream', injected: `kill -9 after ${ackedAtKill} of ${total} acknowledged (${deliveredAtKill} delivered), restart`,
      sent: total, delivered: ackedKeys.filter((k) => distinct.has(k)).length, lost, duplicated,
      notes: `in-flight bound ${concurrency} (channel concurrency); ${retriedSends} sends refused or failed while the engine was down, sent again`,
    })
  }, 150_000)

  it('leaves no secret or token in the engine output or any error text', () => {
    expect(collector.leaks([secret, ...as.secretsSeen()])).toEqual([])
  })
})
