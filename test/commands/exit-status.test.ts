import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../_cli.ts'
import { openSqliteStore } from '../../shared/store/index.ts'

// Each command's --help says "2 on bad usage": a flag's value or a missing argument is bad usage as
// much as an unknown flag, whatever the command; a store that cannot be opened is not (1).
describe('exit status of bad usage', () => {
  let dir: string
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'weir-exit-'))
    chmodSync(dir, 0o700)
    await (await openSqliteStore({ dataDir: dir })).close()
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  const cases: [string, string[], RegExp][] = [
    ['purge with a mistyped duration', ['purge', '--before', '30days'], /--before must be an ISO date or a duration/],
    ['purge without --before', ['purge'], /purge needs --before/],
    ['a mistyped status', ['list', '--status', 'delivred'], /--status must be one of/],
    ['--since yesterday', ['list', '--since', 'yesterday'], /--since must be an ISO date or a duration/],
    ['--limit abc', ['list', '--limit', 'abc'], /--limit must be a positive integer/],
    ['resubmit --confirm without a filter', ['resubmit', '--confirm', '7'], /resubmit needs message ids or a filter/],
    ['show without an id', ['show'], /show takes one message id/],
    ['a cluster flag without --store', ['list', '--lease-ms', '5000'], /--lease-ms goes with --store postgres:\/\/… \(or WEIR_STORE\): without it this engine runs alone/],
    ['--lease-ms beyond an hour', ['list', '--lease-ms', '99999999999', '--store', 'postgres://weir@127.0.0.1:1/weir'], /--lease-ms must be an integer from 300 to 3600000 \(1 h\); not "99999999999"/],
    ['an empty --commit-delay-ms', ['list', '--commit-delay-ms', '', '--store', 'postgres://weir@127.0.0.1:1/weir'], /--commit-delay-ms must be an integer from 0 to 1000; not ""/],
  ]
  for (const [what, args, message] of cases) {
    it(`weir messages: ${what} is 2, one line, no stack`, async () => {
      const r = await runCli(['messages', ...args, '--data-dir', dir])
      expect([r.code, r.out]).toEqual([2, ''])
      expect(r.err).toMatch(message)
      expect(r.err.trim().split('\n')).toHaveLength(1)
    })
  }

  it.each([
    [['token', 'channel.json'], 'weir token: missing <credential> (usage: weir token <channel.json> <credential>; see --help)'],
    [['token', 'channel.json', 'api', 'extra'], 'weir token: unexpected argument "extra" (usage: weir token <channel.json> <credential>; see --help)'],
    [['credentials', 'explain', 'channel.json'], 'weir credentials: missing <credential> (usage: weir credentials explain <channel.json> <credential>; see --help)'],
    [['credentials', 'explian', 'channel.json', 'api'], 'weir credentials: unknown subcommand "explian"; expected authorize, import or explain (see --help)'],
    [['backup', 'a.db', 'b.db'], 'weir backup: unexpected argument "b.db" (usage: weir backup <dest-file> [--data-dir D] [--force]; see --help)'],
  ])('weir %j: one line saying which argument, exit 2', async (argv, line) => {
    const r = await runCli(argv)
    expect([r.code, r.out, r.err]).toEqual([2, '', line + '\n'])
  })

  it('a missing store is not bad usage: 1', async () => {
    const r = await runCli(['messages', 'list', '--data-dir', join(dir, 'nowhere')])
    expect(r.code).toBe(1)
    expect(r.err).toContain('no message store in')
  })

  it('an open data directory: weir messages names the environment variable only (it has no --allow-open-data-dir); exit 1', async () => {
    const open = mkdtempSync(join(tmpdir(), 'weir-exit-open-'))
    try {
      await (await openSqliteStore({ dataDir: open })).close()
      chmodSync(open, 0o755)
      const r = await runCli(['messages', 'list', '--data-dir', open], {})
      expect(r.code).toBe(1)
      expect(r.err.trim()).toBe(`weir messages: the data directory ${open} may be read by group or others (mode 0755); it holds patient data: chmod 700 it (or set WEIR_DATA_DIR_ALLOW_OPEN_MODE=1)`)
      const accepted = await runCli(['messages', 'list', '--data-dir', open], { WEIR_DATA_DIR_ALLOW_OPEN_MODE: '1' })
      expect(accepted.code).toBe(0)
      expect(accepted.err).not.toContain('may be read')
    } finally {
      rmSync(open, { recursive: true, force: true })
    }
  })
})
