import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const parent = mkdtempSync(join(tmpdir(), 'weir-demo-cluster-'))
// Not there yet, as ./data on a fresh clone: the demo creates it, owner-only (weir run refuses anything else).
const dataDir = join(parent, 'data')
afterAll(() => rmSync(parent, { recursive: true, force: true }))

/** Runs a script to its end (asynchronously, so the test's own timers keep running); its output and exit status. */
function run(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
}

describe('npm run demo:cluster', () => {
  it('runs three engines on an embedded PostgreSQL, kills one, and reports every acknowledged message delivered; exit 0', async () => {
    const { WEIR_SECRET_KEY: _none, ...env } = process.env
    const r = await run(['--import', 'tsx', 'engine/demo-cluster.ts'], { ...env, WEIR_DATA_DIR: dataDir, WEIR_DEMO_N: '400', CI: 'true' }, 150_000)
    expect(r.status, r.stderr).toBe(0)
    expect(statSync(dataDir).mode & 0o777).toBe(0o700)
    expect(r.stdout).toContain('400 messages acknowledged')
    expect(r.stdout).toMatch(/400 delivered to the API, \d+ duplicates/)
    const takeover = /claims taken over (\d+\.\d) s after the kill \(lease 5 s\)/.exec(r.stdout)
    expect(takeover, r.stdout).not.toBeNull()
    // Within the lease and 5 s more, as the cluster promises (measured beside the sending, not after it).
    expect(Number(takeover![1])).toBeLessThanOrEqual(10)
    expect(r.stdout).toMatch(/messages in the database: 400 delivered$/m)
  }, 180_000)
})
