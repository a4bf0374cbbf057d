// A flag that `weir keys` does not take with the subcommand given (one another command or subcommand
// takes, or a typo): one line naming the subcommand and the flags it takes, or the nearest of them;
// exit 2. Flags the subcommand takes still work before or after it.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'
import { tempDir } from '../_setup.ts'

let root: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { root = await tempDir('weir-keys-flags-') })
afterAll(() => root.cleanup())

describe('weir keys with a flag its subcommand does not take', () => {
  it.each([
    [['keys', 'rotate-store-key', '--store', 'postgres://weir@127.0.0.1:1/weir'], 'unknown option --store for weir keys rotate-store-key: it takes --data-dir'],
    [['keys', 'rotate-store-key', '--channel', 'adt'], 'unknown option --channel for weir keys rotate-store-key: it takes --data-dir'],
    [['keys', 'rotate-store-key', '--data-dri', 'data'], 'unknown option --data-dri for weir keys rotate-store-key; did you mean --data-dir?'],
    [['keys', 'generate', '--alg', 'NOPE', '--data-dir', 'data'], 'unknown option --data-dir for weir keys generate: it takes --alg, --kid and --out'],
    [['keys', 'prune', 'channel.json', 'api', '--delay', '0'], 'unknown option --delay for weir keys prune: it takes --assertion'],
    [['keys', 'rotate', 'channel.json', 'api', '--key', 'k2'], 'unknown option --key for weir keys rotate; did you mean --kid?'],
  ])('weir %j: names the subcommand and its flags; exit 2', async (argv, line) => {
    const r = await runCli(argv)
    expect([r.code, r.out, r.err]).toEqual([2, '', `weir keys: ${line} (see weir keys --help)\n`])
  })

  it('a flag it takes works before the subcommand as after it', async () => {
    const r = await runCli(['keys', '--alg', 'ES256', 'generate', '--kid', 'k1', '--out', root.dir])
    expect([r.code, r.err]).toEqual([0, ''])
    expect(existsSync(join(root.dir, 'k1.private.pem'))).toBe(true)
    const missing = join(root.dir, 'nowhere')
    const s = await runCli(['keys', '--data-dir', missing, 'rotate-store-key'], {})
    expect(s.code).toBe(1)
    expect(s.err).toContain(missing)
  })

  it.each([
    [['keys', 'rotate-store', '--data-dir', 'data'], 'unknown subcommand "rotate-store"'],
    // The subcommand comes first: a misplaced one is not looked for further on.
    [['keys', 'channel.json', 'rotate', 'api'], 'unknown subcommand "channel.json"'],
  ])('weir %j: one line naming the subcommands; exit 2', async (argv, what) => {
    const r = await runCli(argv)
    expect([r.code, r.out, r.err]).toEqual([2, '', `weir keys: ${what}; expected generate, rotate, prune or rotate-store-key (see --help)\n`])
  })

  it('without a subcommand, a flag none takes is named against every subcommand\'s flags; without one at all, the usage; exit 2', async () => {
    const r = await runCli(['keys', '--bogus'])
    expect([r.code, r.out, r.err]).toEqual([2, '', 'weir keys: unknown option --bogus for weir keys: it takes --alg, --kid, --out, --delay, --assertion and --data-dir (see weir keys --help)\n'])
    const u = await runCli(['keys', '--alg', 'ES256'])
    expect(u.code).toBe(2)
    expect(u.err).toMatch(/^usage: weir keys generate/)
  })
})
