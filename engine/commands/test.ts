import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseFlags, type CommandIO } from '../cli-io.ts'
import { runChannelTest, type TestFileResult } from '../harness/run.ts'
import { junitXml } from '../harness/junit.ts'
import { wrongCommandHint } from './file-kind.ts'
import { ConfigError, formatProblem, isWeirError, errorCodes } from '../../shared/errors.ts'

export const summary = 'prove channels against the embedded authorization server and API (*.test.json)'
export const usage = `usage: weir test <file.test.json...> [--verbose] [--reporter text|junit] [--output FILE]

Runs each case of each test file on fresh embedded servers: the channel's token endpoints and the
URLs of its source, filters and destinations are replaced (and what a component sends through
ctx.http elsewhere goes to the embedded API), unless the test file keeps their origin (keepUrls);
its clients are registered from its own credentials and checked strictly (alg, aud, iss/sub, scope,
auth method, provider preset rules). After a case's steps the channel stops, its components'
close() running, then the expectations are checked. Prints a line per case (with the reason of a
failure), then "N passed, N failed". Each case runs in a sandbox: its components get a fresh data
directory and a copy of the channel directory, so nothing is written next to the real channel.

  --verbose          under each case, each message's path: every filter's outcome (passed, filtered,
                     split, error) and every destination's status and attempts (outcome, HTTP status);
                     statuses as the steps left them, as a failing case's reason gives them (retrying:
                     waiting for its next attempt, though the stop at the end of the case queued it)
  --reporter junit   also write JUnit XML (to --output, default weir-test-results.xml)
  --output FILE      where the JUnit XML goes

exit status: 0 when every case passes, 1 otherwise, 2 on bad usage`

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseFlags(args, { reporter: { type: 'string', default: 'text' }, output: { type: 'string' }, verbose: { type: 'boolean', short: 'v', default: false } }, 'test')
  if (!positionals.length || !['text', 'junit'].includes(values.reporter!)) {
    io.err(usage)
    return 2
  }
  const results: TestFileResult[] = []
  let passed = 0
  let failed = 0
  for (const file of positionals) {
    try {
      io.out(file)
      const r = await runChannelTest(file, {
        verbose: values.verbose,
        onCase: (c) => {
          if (c.passed) { passed++; io.out(`  ✓ ${c.name} (${c.durationMs} ms)`) } else { failed++; io.out(`  ✗ ${c.name}: ${c.failures.join('; ')}`) }
          for (const line of c.trace ?? []) io.out(`      ${line}`)
        },
      })
      results.push(r)
    } catch (e) {
      if (!isWeirError(e) || !e.userError) throw e
      failed++
      const reason = e.code === 'ERR_CONFIG_INVALID' ? (e as ConfigError).problems.map(formatProblem).join('; ') : e.message
      io.out(`  ✗ (test file): ${reason}`)
      const hint = e.code === 'ERR_CONFIG_INVALID' ? await wrongCommandHint(resolve(file), file, 'test') : undefined
      if (hint) io.out(`    ${hint}`)
      results.push({ file, channel: '', cases: [{ name: '(test file)', passed: false, failures: [reason], durationMs: 0 }], durationMs: 0 })
    }
  }
  io.out(`${passed} passed, ${failed} failed`)
  if (values.reporter === 'junit') {
    const out = values.output ?? 'weir-test-results.xml'
    try {
      await writeFile(out, junitXml(results))
    } catch (e) {
      throw new errorCodes.ERR_FILE_ACCESS(`cannot write ${out} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
    io.out(`JUnit XML written to ${out}`)
  }
  return failed ? 1 : 0
}
