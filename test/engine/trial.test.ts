// `npm run trial`: the servers it starts and the channel files it writes run a real cluster of two
// `weir run` engines, and the partner API's control makes it fail and mend.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { chmod, mkdir } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { startTrial, type Trial } from '../../engine/trial.ts'
import { openDb } from '../../shared/store/postgres/db.ts'
import { spawnWeirRun, tempDir, until } from '../runtime/_helpers.ts'

const children = new Set<ChildProcess>()
const cleanup: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
  for (const c of cleanup.splice(0).reverse()) await c()
})

const post = (port: number, id: number) => fetch(`http://127.0.0.1:${port}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id }) })

it('two engines on the trial store deliver to the partner API with tokens; /fail/503 holds messages back and /ok lets them through', async () => {
  const dir = await tempDir('weir-trial-')
  cleanup.push(() => dir.remove())
  const trial: Trial = await startTrial(dir.path, 2)
  cleanup.push(() => trial.close())
  const db = openDb(trial.storeUrl, { max: 1 })
  cleanup.push(() => db.end())
  process.env.WEIR_SECRET_KEY = 'trial passphrase of the test'
  const engines = trial.channelFiles.map((file, i) => spawnWeirRun(file, `${dir.path}/engine-${i}`, children, ['--store', trial.storeUrl, '--admin', 'off']))
  for (const [i, e] of engines.entries()) await e.until(() => post(trial.ports[i]!, 0).then((r) => r.status === 202, () => false))
  const statuses = async () => Object.fromEntries((await db.sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM weir_messages GROUP BY status`).map((r) => [r.status, r.n]))
  await until(async () => (await statuses()).delivered === 2, 20_000)
  expect(trial.received()).toBe(2)

  expect((await fetch(`${trial.controlUrl}/fail/503`, { method: 'POST' })).status).toBe(204)
  expect((await post(trial.ports[1]!, 1)).status).toBe(202)
  await until(() => trial.received() >= 3, 20_000)
  expect((await statuses()).delivered).toBe(2)
  expect((await fetch(`${trial.controlUrl}/ok`, { method: 'POST' })).status).toBe(204)
  await until(async () => (await statuses()).delivered === 3, 30_000)
  expect((await fetch(`${trial.controlUrl}/nothing`, { method: 'POST' })).status).toBe(404)
  for (const e of engines) expect(e.output()).not.toContain('trial passphrase')
}, 120_000)

it('Ctrl-C (SIGINT) stops the trial and leaves nothing behind: neither its directory nor the embedded PostgreSQL\'s', async () => {
  const root = await tempDir('weir-trial-int-')
  cleanup.push(() => root.remove())
  const tmp = `${root.path}/tmp`
  const data = `${root.path}/data`
  // Run as root, the embedded PostgreSQL runs as another user, who must reach its directory under TMPDIR.
  await mkdir(tmp, { recursive: true })
  await chmod(root.path, 0o711)
  await chmod(tmp, 0o1777)
  await mkdir(data, { recursive: true, mode: 0o700 })
  const pgDirs = () => readdirSync(tmp).filter((f) => f.startsWith('weir-'))
  const child = spawn(process.execPath, ['--import', 'tsx', 'engine/trial.ts'], { env: { ...process.env, TMPDIR: tmp, WEIR_DATA_DIR: data, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let out = ''
  child.stdout!.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr!.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)))
  await until(() => out.includes("The cluster's state") || child.exitCode !== null, 60_000)
  expect(out).toContain("The cluster's state")
  const port = Number(/@127\.0\.0\.1:(\d+)\//.exec(out)?.[1])
  expect(port).toBeGreaterThan(0)
  expect(pgDirs()).toHaveLength(1)
  child.kill('SIGINT')
  await exited
  expect(pgDirs()).toEqual([])
  expect(existsSync(join(data, 'trial'))).toBe(false)
  const refused = await new Promise<boolean>((ok) => connect(port, '127.0.0.1').once('connect', function (this: Socket) { this.destroy(); ok(false) }).once('error', () => ok(true)))
  expect(refused).toBe(true)
}, 90_000)
