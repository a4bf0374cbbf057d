import { spawnSync } from 'node:child_process'
import { writeFileSync, rmSync, mkdirSync, readdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'
import { version } from '../../engine/cli.ts'

const DIR = resolve('test/fixtures/config', `.cli-${process.pid}`)
mkdirSync(DIR, { recursive: true })
afterAll(() => rmSync(DIR, { recursive: true, force: true }))

describe('weir CLI', () => {
  it('--version prints the package version', async () => {
    expect(await runCli(['--version'])).toEqual({ code: 0, out: `${version()}\n`, err: '' })
    expect(version()).toMatch(/^\d+\.\d+\.\d+/)
  })

  it('--help lists the commands', async () => {
    const { code, out } = await runCli(['--help'])
    expect(code).toBe(0)
    for (const c of ['validate', 'run', 'test', 'messages', 'keys', 'token', 'credentials']) expect(out).toMatch(new RegExp(`^  ${c} `, 'm'))
  })

  it('an unknown command suggests the nearest and exits 2', async () => {
    expect(await runCli(['valdate'])).toEqual({ code: 2, out: '', err: 'weir: unknown command "valdate"; did you mean "validate"? (see weir --help)\n' })
  })

  it('validate without files prints usage and exits 2', async () => {
    const { code, err } = await runCli(['validate'])
    expect(code).toBe(2)
    expect(err).toMatch(/^usage: weir validate/)
  })

  it('the real binary: exit 1, all problems on stderr, no stack trace', () => {
    const f = resolve(DIR, 'bad.json')
    writeFileSync(f, JSON.stringify({ name: 'Bad', source: { type: 'nope' }, destinations: [] }))
    const r = spawnSync(process.execPath, ['bin/weir.js', 'validate', f], { encoding: 'utf8', env: { ...process.env, CI: 'true' } })
    expect(r.status).toBe(1)
    expect(r.stdout).toBe('')
    const lines = r.stderr.trim().split('\n')
    expect(lines).toHaveLength(4)
    expect(lines[0]).toMatch(/#\/name: must match pattern/)
    expect(lines.at(-1)).toBe('0 valid, 1 invalid')
    expect(r.stderr).not.toMatch(/\n\s+at |Error:/)
  })

  it('validate accepts every example channel and test file in channels/ (exit 0)', async () => {
    const files = readdirSync('channels').filter((f) => f.endsWith('.json')).map((f) => `channels/${f}`)
    expect(files.length).toBeGreaterThan(1)
    const { code, out, err } = await runCli(['validate', ...files])
    expect(err).toBe(`${files.length} valid, 0 invalid\n`)
    expect(code).toBe(0)
    expect(out.trim().split('\n')).toHaveLength(files.length)
  })

  it('the real binary: a channel file that does not exist is a user error', () => {
    const r = spawnSync(process.execPath, ['bin/weir.js', 'validate', 'no/such/file.json'], { encoding: 'utf8' })
    expect(r.status).toBe(1)
    expect(r.stderr).toBe('no/such/file.json#: file not found\n0 valid, 1 invalid\n')
  })
})

describe('weir validate checks the files a component config names', () => {
  const channel = (name: string, filters: unknown[], source: Record<string, unknown> = { port: 0 }) => {
    const file = resolve(DIR, `${name}.json`)
    writeFileSync(file, JSON.stringify({ name, source: { type: 'http-listener', config: source }, filters, destinations: [{ name: 'd', type: 'file', config: { directory: 'out' } }] }))
    return file
  }

  it.each([
    ['refs-schema', [{ type: 'validate', config: { schemaFile: 'schemas/patient.schema.json' } }], undefined, '#/filters/0/config/schemaFile: schema file not found'],
    ['refs-script', [{ type: 'script', config: { module: './missing-script.ts' } }], undefined, '#/filters/0/config/module: script module not found'],
    ['refs-tls', [], { port: 0, tls: { certFile: 'tls/missing.pem', key: { $env: 'REFS_TLS_KEY' } } }, '#/source/config/tls/certFile: cannot read TLS file'],
  ])('%s: a missing file is a problem at its pointer, exit 1', async (name, filters, source, expected) => {
    const file = channel(name, filters, source)
    const r = await runCli(['validate', file], { ...process.env, REFS_TLS_KEY: 'not-a-real-key-value' })
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`${name}.json${expected}`)])
    expect(r.err).not.toContain('not-a-real-key-value')
  })

  it('weir run names the channel file and pointer of a missing schemaFile', async () => {
    const file = channel('refs-run', [{ type: 'validate', config: { schemaFile: 'schemas/patient.schema.json' } }])
    const r = await runCli(['run', file, '--admin', 'off', '--data-dir', resolve(DIR, 'refs-run-data')])
    expect([r.code, r.err]).toEqual([1, expect.stringContaining('refs-run.json#/filters/0/config/schemaFile: schema file not found')])
  })
})
