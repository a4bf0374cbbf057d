import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'
import { wellFormed } from './_xml.ts'

const DIR = mkdtempSync(join(tmpdir(), 'weir-cli-test-'))
afterAll(() => rmSync(DIR, { recursive: true, force: true }))

const passing = join(DIR, 'passing.test.json')
writeFileSync(passing, JSON.stringify({
  channel: resolve('channels/epic-adt-to-fhir.json'),
  server: { clients: { epic: { scopes: ['system/Patient.rs', 'system/Patient.c'] } } },
  api: [{ method: 'POST', path: '/api/FHIR/R4/Patient', answers: [{ status: 201 }] }],
  cases: [
    { name: 'delivered', steps: [{ send: { body: { event: 'A01', mrn: '1', firstName: 'A', lastName: 'B', sex: 'F', dob: '20000101' } } }], expect: { requestCount: 1, messages: [{ status: 'delivered' }] } },
    { name: 'filtered', steps: [{ send: { body: { event: 'A03', mrn: '2', firstName: 'C', lastName: 'D', sex: 'M', dob: '20000101' } } }], expect: { requestCount: 0, messages: [{ status: 'filtered', filteredBy: '^filters/0 "admissions-only" \\(match\\)$' }] } },
  ],
}))
const failing = join(DIR, 'failing.test.json')
writeFileSync(failing, readFileSync(passing, 'utf8').replace('"requestCount":1', '"requestCount":2'))
const broken = resolve('channels/broken/epic-rs256.test.json')

describe('weir test', () => {
  it('exits 0 when every case passes and ends with "N passed, N failed"', async () => {
    const { code, out } = await runCli(['test', passing])
    expect(code).toBe(0)
    expect(out).toMatch(/^  ✓ delivered \(\d+ ms\)$/m)
    expect(out.trimEnd().split('\n').at(-1)).toBe('2 passed, 0 failed')
  })

  it('exits 1 when any case fails, with the reason on the case line', async () => {
    const { code, out } = await runCli(['test', passing, failing])
    expect(code).toBe(1)
    expect(out).toContain('  ✗ delivered: expect.requestCount: the API received 1 requests, expected 2')
    expect(out.trimEnd().split('\n').at(-1)).toBe('3 passed, 1 failed')
  })

  it('expect.messages[].filteredBy: the filter that dropped the message, or a failure naming the one that did (or none)', async () => {
    const wrong = join(DIR, 'filtered-by.test.json')
    writeFileSync(wrong, readFileSync(passing, 'utf8').replace('"messages":[{"status":"delivered"}]', '"messages":[{"status":"delivered","filteredBy":"admissions"}]').replace('admissions-only\\" \\\\(match', 'to-fhir-patient\\" \\\\(map'))
    const { code, out } = await runCli(['test', wrong])
    expect(code).toBe(1)
    expect(out).toContain('  ✗ delivered: message 1: not filtered (delivered), expected filtered by /admissions/')
    expect(out).toContain('  ✗ filtered: message 1: filtered by filters/0 "admissions-only" (match), expected filtered by /^filters/0 "to-fhir-patient" \\(map\\)$/')
  })

  it('--reporter junit --output FILE writes valid JUnit XML', async () => {
    const file = join(DIR, 'results.xml')
    const { code, out } = await runCli(['test', passing, broken, '--reporter', 'junit', '--output', file])
    expect(code).toBe(1)
    expect(out).toContain(`JUnit XML written to ${file}`)
    const xml = readFileSync(file, 'utf8')
    expect(wellFormed(xml)).toBe(true)
    expect(xml).toMatch(/<testsuites name="weir" tests="3" failures="1" /)
    expect(xml).toContain('<failure message="channels/broken/epic-rs256.json#/credentials/epic/clientAuth/alg: epic-backend requires RS384 or ES384 (SMART Backend Services); got RS256">')
  })

  it('an --output that cannot be written is a user error naming it, not an internal error', async () => {
    const file = join(DIR, 'no-such-dir', 'results.xml')
    const { code, out, err } = await runCli(['test', passing, '--reporter', 'junit', '--output', file])
    expect(out.trimEnd().split('\n').at(-1)).toBe('2 passed, 0 failed')
    expect(err).toBe(`weir test: cannot write ${file} (ENOENT)\n`)
    expect(code).toBe(1)
  })

  it('a test file that does not validate is a failure, reported with its JSON pointer', async () => {
    const bad = join(DIR, 'bad.test.json')
    writeFileSync(bad, JSON.stringify({ channel: 'x.json', cases: [{ name: 'n', steps: [{ tick: true, send: { body: 1 } }], expect: {} }] }))
    const { code, out } = await runCli(['test', bad])
    expect(code).toBe(1)
    expect(out).toMatch(/✗ \(test file\): .*bad\.test\.json#\/cases\/0\/steps\/0/)
    expect(out.trimEnd().split('\n').at(-1)).toBe('0 passed, 1 failed')
  })

  it('a channel that `weir validate` refuses fails every case with the same problem, though the cases replace its port', async () => {
    const channel = join(DIR, 'port-string.json')
    writeFileSync(channel, JSON.stringify({
      name: 'p', source: { type: 'http-listener', config: { port: '7001' } },
      destinations: [{ name: 'd', type: 'file', config: { directory: 'out' } }],
    }))
    const t = join(DIR, 'port-string.test.json')
    writeFileSync(t, JSON.stringify({ channel: 'port-string.json', cases: [{ name: 'c1', steps: [{ send: { body: { a: 1 } } }], expect: { messages: [{ status: 'delivered' }] } }] }))
    const problem = `${channel}#/source/config/port: must be integer`
    const validate = await runCli(['validate', channel])
    expect(validate.err).toContain(problem)
    expect(validate.code).toBe(1)
    const { code, out } = await runCli(['test', t])
    expect(out).toContain(`  ✗ c1: ${problem}`)
    expect(out.trimEnd().split('\n').at(-1)).toBe('0 passed, 1 failed')
    expect(code).toBe(1)
  })

  it('--verbose prints each message\'s path under its case', async () => {
    const { code, out } = await runCli(['test', passing, '--verbose'])
    expect(code).toBe(0)
    const lines = out.split('\n').map((l) => l.replace(/\(01[0-9A-Z]{24}\)/, '(ID)').replace(/\(\d+ ms\)/, '(N ms)'))
    expect(lines.slice(1, 12)).toEqual([
      '  ✓ delivered (N ms)',
      '      message 1 (ID): delivered',
      '        filters/0 (match): passed',
      '        filters/1 (map): passed',
      '        epic-fhir (http): delivered',
      '          attempt 1: delivered, HTTP 201 (N ms)',
      '  ✓ filtered (N ms)',
      '      message 1 (ID): filtered',
      '        filters/0 (match): filtered',
      '        epic-fhir (http): filtered (no attempt)',
      '2 passed, 0 failed',
    ])
  })

  it('bad usage exits 2', async () => {
    expect((await runCli(['test'])).code).toBe(2)
    expect((await runCli(['test', passing, '--reporter', 'tap'])).code).toBe(2)
  })
})
