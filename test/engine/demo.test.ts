import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const parent = mkdtempSync(join(tmpdir(), 'weir-demo-'))
// Not there yet, as `./data` on a fresh clone: the demo creates it.
const dataDir = join(parent, 'data')
afterAll(() => rmSync(parent, { recursive: true, force: true }))

describe('npm start (the demo)', () => {
  it('runs the demo channel end to end and ends with a summary and exit 0', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'engine/demo.ts'], { encoding: 'utf8', env: { ...process.env, WEIR_DATA_DIR: dataDir, CI: 'true' }, timeout: 60_000 })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('120 HL7 v2 messages sent over MLLP: 120 ACK AA (AA only after each was durably stored)')
    expect(r.stdout).toMatch(/108 delivered to the API as FHIR Patients, 12 filtered \(discharges\), 0 in error/)
    expect(r.stdout).toMatch(/1 access token fetched with private_key_jwt \(RS384\)/)
    expect(r.stdout).toContain('npx weir messages list --channel demo-adt-to-fhir')
    // The private key it generated is never printed.
    expect(r.stdout).not.toMatch(/BEGIN PRIVATE KEY/)
    // The directory it created is owner-only, as `weir run` requires.
    expect(statSync(dataDir).mode & 0o777).toBe(0o700)
  })

  it('runs again in the same data directory: new control ids, none dropped as a duplicate of the first run', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'engine/demo.ts'], { encoding: 'utf8', env: { ...process.env, WEIR_DATA_DIR: dataDir, CI: 'true' }, timeout: 60_000 })
    expect([r.status, r.stderr]).toEqual([0, ''])
    expect(r.stdout).toMatch(/108 delivered to the API as FHIR Patients, 12 filtered \(discharges\), 0 in error/)
    expect(r.stdout).not.toContain('duplicates')
  })

  it('says what is wrong, without a stack trace, when the data directory is open to others; exit 1', () => {
    const open = mkdtempSync(join(tmpdir(), 'weir-demo-open-'))
    try {
      chmodSync(open, 0o755)
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'engine/demo.ts'], { encoding: 'utf8', env: { ...process.env, WEIR_DATA_DIR: open, CI: 'true' }, timeout: 60_000 })
      expect(r.status).toBe(1)
      expect(r.stderr.trim()).toBe(`weir demo: the data directory ${open} may be read by group or others (mode 0755); it holds patient data: chmod 700 it (or start with --allow-open-data-dir, or set WEIR_DATA_DIR_ALLOW_OPEN_MODE=1)`)
    } finally {
      rmSync(open, { recursive: true, force: true })
    }
  })
})
