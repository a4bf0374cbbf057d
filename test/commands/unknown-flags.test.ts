// A flag that a command does not take (one another command takes, or a typo): one line naming the
// command (and subcommand) with the flags it takes, or the nearest of them; exit 2, no stack. The
// subcommands of weir credentials each take only their own flags; every flag a command takes still
// parses, before or after its subcommand.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'
import { tempDir } from '../_setup.ts'

let root: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { root = await tempDir('weir-unknown-flags-') })
afterAll(() => root.cleanup())

/** What `argv` printed and returned, run with an empty environment (no $WEIR_STORE, no $WEIR_DATA_DIR). */
const cli = (argv: string[]) => runCli(argv, {})

describe('a flag the command does not take', () => {
  it.each([
    [['validate', 'x.json', '--data-dir', 'd'], 'validate', 'unknown option --data-dir for weir validate: it takes --quiet and --alerts'],
    [['validate', 'x.json', '--alert', 'alerts.json'], 'validate', 'unknown option --alert for weir validate; did you mean --alerts?'],
    [['run', 'x.json', '--force'], 'run', 'unknown option --force for weir run: it takes --data-dir, --allow-open-data-dir, --encrypt-content, --max-store-bytes, --sync, --store, --store-password-file, --lease-ms, --commit-delay-ms, --jwks, --jwks-sets, --admin, --admin-config, --standby, --alerts and --embedded'],
    [['run', 'x.json', '--data-dri', 'd'], 'run', 'unknown option --data-dri for weir run; did you mean --data-dir?'],
    [['test', 'x.test.json', '--data-dir', 'd'], 'test', 'unknown option --data-dir for weir test: it takes --reporter, --output and --verbose'],
    [['test', 'x.test.json', '-x'], 'test', 'unknown option -x for weir test: it takes --reporter, --output and --verbose'],
    [['test', 'x.test.json', '--reportr', 'junit'], 'test', 'unknown option --reportr for weir test; did you mean --reporter?'],
    [['backup', 'b.db', '--out', 'x'], 'backup', 'unknown option --out for weir backup: it takes --data-dir, --force, --store, --store-password-file, --lease-ms and --commit-delay-ms'],
    [['backup', 'b.db', '--forse'], 'backup', 'unknown option --forse for weir backup; did you mean --force?'],
    [['token', 'x.json', 'api', '--alg', 'RS256'], 'token', 'unknown option --alg for weir token: it takes --show, --json, --timeout, --data-dir, --store and --store-password-file'],
    [['token', 'x.json', 'api', '--shwo'], 'token', 'unknown option --shwo for weir token; did you mean --show?'],
    [['cluster', 'status', '--force'], 'cluster', 'unknown option --force for weir cluster status: it takes --store, --store-password-file, --lease-ms, --commit-delay-ms and --json'],
    [['cluster', 'status', '--jsn'], 'cluster', 'unknown option --jsn for weir cluster status; did you mean --json?'],
    [['messages', 'list', '--chanel', 'adt'], 'messages', 'unknown option --chanel for weir messages; did you mean --channel?'],
    [['messages', 'purge', '--before', '30d', '--dry-run'], 'messages', 'unknown option --dry-run for weir messages: it takes --data-dir, --channel, --status, --since, --limit, --json, --before, --until, --confirm, --older-than, --key, --channel-file, --yes, --include-errors, --all, --store, --store-password-file, --lease-ms and --commit-delay-ms'],
  ])('weir %j: one line naming %s and its flags (or the nearest); exit 2', async (argv, command, line) => {
    const r = await cli(argv)
    expect([r.code, r.out, r.err]).toEqual([2, '', `weir ${command}: ${line} (see weir ${command} --help)\n`])
  })
})

describe('weir credentials: each subcommand takes only its own flags', () => {
  it.each([
    [['credentials', 'authorize', 'x.json', 'api', '--refresh-token-file', 'rt.txt'], 'unknown option --refresh-token-file for weir credentials authorize: it takes --timeout, --no-browser, --data-dir, --store and --store-password-file'],
    [['credentials', 'authorize', 'x.json', 'api', '--no-browse'], 'unknown option --no-browse for weir credentials authorize; did you mean --no-browser?'],
    [['credentials', 'import', 'x.json', 'api', '--timeout', '5s'], 'unknown option --timeout for weir credentials import: it takes --refresh-token-file, --data-dir, --store and --store-password-file'],
    [['credentials', 'import', 'x.json', 'api', '--refresh-token', 'rt.txt'], 'unknown option --refresh-token for weir credentials import; did you mean --refresh-token-file?'],
    [['credentials', 'explain', 'x.json', 'api', '--data-dir', 'd'], 'unknown option --data-dir for weir credentials explain: it takes no option'],
    // A flag before the subcommand is checked against the subcommand's own as well.
    [['credentials', '--timeout', '5s', 'explain', 'x.json', 'api'], 'unknown option --timeout for weir credentials explain: it takes no option'],
    // Without a known subcommand the flag is checked against every subcommand's, before the subcommand is.
    [['credentials', 'explian', 'x.json', 'api', '--bogus'], 'unknown option --bogus for weir credentials: it takes --timeout, --no-browser, --data-dir, --store, --store-password-file and --refresh-token-file'],
  ])('weir %j: one line naming the subcommand and its flags (or the nearest); exit 2', async (argv, line) => {
    const r = await cli(argv)
    expect([r.code, r.out, r.err]).toEqual([2, '', `weir credentials: ${line} (see weir credentials --help)\n`])
  })

  it('a flag the subcommand takes works before it as after it', async () => {
    const file = join(root.dir, 'missing.json')
    for (const argv of [
      ['credentials', '--data-dir', root.dir, 'import', file, 'api', '--refresh-token-file', 'rt.txt'],
      ['credentials', 'authorize', file, 'api', '--timeout', '5s', '--no-browser', '--data-dir', root.dir],
      ['credentials', 'explain', file, 'api'],
    ]) {
      // Past the flags: the channel file is what is missing (exit 1), not a usage error.
      const r = await cli(argv)
      expect([r.code, r.out], argv.join(' ')).toEqual([1, ''])
      expect(r.err).toContain(file)
      expect(r.err).not.toContain('unknown option')
    }
  })
})

describe('the flags each command takes still parse', () => {
  it.each([
    [['validate', 'missing.json', '--quiet', '--alerts', 'missing-alerts.json'], 1, '0 valid, 2 invalid'],
    [['test', 'missing.test.json', '-v', '--reporter', 'text'], 1, '0 passed, 1 failed'],
    [['run', 'missing.json', '--sync', 'normal', '--jwks-sets', 'combined', '--max-store-bytes', '1048576', '--allow-open-data-dir'], 1, 'missing.json'],
    [['backup', 'b.db', '--force', '--data-dir', 'nowhere'], 1, 'no message store in'],
    [['backup', 'b.db', '--store', 'postgres://weir@127.0.0.1:1/weir'], 2, 'pg_dump'],
    [['token', 'missing.json', 'api', '--show', '--json', '--timeout', '5s', '--data-dir', 'nowhere'], 1, 'missing.json'],
    // The flag before the subcommand; past the flags, the store is what is missing.
    [['cluster', '--json', 'status'], 2, 'weir cluster needs the cluster\'s store'],
  ])('weir %j: exit %i, not an unknown option', async (argv, code, said) => {
    const r = await cli(argv.map((a) => (a.startsWith('missing') || a === 'nowhere' || a === 'b.db' ? join(root.dir, a) : a)))
    expect(r.code).toBe(code)
    expect(r.out + r.err).toContain(said)
    expect(r.err).not.toContain('unknown option')
    expect(r.err).not.toMatch(/\n\s+at /)
  })

  it('weir cluster status with an argument too many: one line, exit 2', async () => {
    const r = await cli(['cluster', 'status', 'extra'])
    expect([r.code, r.out, r.err]).toEqual([2, '', 'weir cluster: unexpected argument "extra" (usage: weir cluster status [--store postgres://…] [--json]; see --help)\n'])
  })

  it('weir cluster with an unknown subcommand: one line naming the one it has; exit 2', async () => {
    const r = await cli(['cluster', 'stats', '--json'])
    expect([r.code, r.out, r.err]).toEqual([2, '', 'weir cluster: unknown subcommand "stats"; expected status (see --help)\n'])
  })

  it('weir cluster without the subcommand still prints the usage; exit 2', async () => {
    const r = await cli(['cluster', '--json'])
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^usage: weir cluster status/)
  })
})
