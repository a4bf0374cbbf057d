// A test file given to weir run, or a channel file to weir test, through the real binary (bin/weir.js
// on dist/, as a user runs it): the schema problems at their pointers and exit 1 as before, and one
// line saying which command takes the file. Needs `npm run build`.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const BIN = resolve('bin/weir.js')

describe('a file given to the wrong command', () => {
  let dir: string
  const weir = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: dir, env: { ...process.env, CI: 'true' } })
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'weir-wrong-command-'))
    const channel = { name: 'adt', source: { type: 'http-listener', config: { port: 0 } }, destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }] }
    writeFileSync(join(dir, 'adt.json'), JSON.stringify(channel))
    writeFileSync(join(dir, 'adt.test.json'), JSON.stringify({ channel: 'adt.json', cases: [{ name: 'one', steps: [], expect: {} }] }))
    writeFileSync(join(dir, 'lone.json'), JSON.stringify(channel))
    writeFileSync(join(dir, 'broken.json'), JSON.stringify({ ...channel, source: { type: 'http-listener', config: { port: 'x' } } }))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('weir run x.test.json: the problems at their pointers, then the hint to run it with weir test; exit 1', () => {
    const r = weir(['run', 'adt.test.json', '--data-dir', 'data'])
    expect(r.status).toBe(1)
    const lines = r.stderr.trim().split('\n')
    expect(lines).toContain('adt.test.json#: must have required property "source"')
    expect(lines).toContain('adt.test.json#/cases: unknown property "cases"; expected one of "$schema", "name", "description", "credentials", "credentialsFile", "source", "filters", "destinations", "options", "alerts"')
    expect(lines.at(-1)).toBe('adt.test.json: this looks like a test file (it has "channel" or "cases"): run it with weir test adt.test.json')
    expect(lines.filter((l) => l.includes('weir test'))).toHaveLength(1)
  })

  it('weir test x.json: the problems at their pointers, then that weir test takes its test file (the one beside it named); exit 1', () => {
    const r = weir(['test', 'adt.json'])
    expect(r.status).toBe(1)
    expect(r.stdout).toContain('adt.json#: must have required property "cases"')
    expect(r.stdout).toContain('adt.json#/source: unknown property "source"')
    expect(r.stdout).toContain('\n    adt.json: this is a channel file; weir test takes its test file (*.test.json, naming the channel in "channel"): weir test adt.test.json\n')
    expect(r.stdout.trim().split('\n').at(-1)).toBe('0 passed, 1 failed')
  })

  it('weir test x.json without a test file beside it: the hint names none', () => {
    const r = weir(['test', 'lone.json'])
    expect(r.status).toBe(1)
    expect(r.stdout).toContain('\n    lone.json: this is a channel file; weir test takes its test file (*.test.json, naming the channel in "channel")\n')
  })

  it('a channel file with problems of its own given to weir run: no hint', () => {
    const r = weir(['run', 'broken.json', '--data-dir', 'data'])
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('broken.json#/source/config/port: must be integer')
    expect(r.stderr).not.toContain('weir test')
  })
})
