// weir --help through the real binary (bin/weir.js on dist/, as a user runs it): the text ends with
// one newline, so a shell prompt starts on a line of its own. Needs `npm run build`.
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'

const weir = (args: string[]) => spawnSync(process.execPath, ['bin/weir.js', ...args], { encoding: 'utf8', env: { ...process.env, CI: 'true' } })

describe('weir --help', () => {
  it.each([
    [['--help'], 0],
    [[], 2],
  ])('weir %j prints the help ending with one newline (exit %i)', async (args, status) => {
    const r = weir(args)
    expect([r.status, r.stderr]).toEqual([status, ''])
    expect(r.stdout).toMatch(/^weir: an integration engine/)
    expect(r.stdout.endsWith('weir --version prints the version.\n')).toBe(true)
    expect(r.stdout).toBe((await runCli(args)).out)
  })
})
