import { parseArgs } from 'node:util'
import type { CommandIO } from '../cli-io.ts'
import { loadChannel } from '../load.ts'
import { formatProblem, isWeirError, ConfigError } from '../../shared/errors.ts'
import { loadTestFile } from '../harness/test-file.ts'

export const summary = 'check channel files: JSON, schemas, component configs, secrets (all errors at once)'
export const usage = `usage: weir validate <channel.json...> [--quiet]

Checks each channel file: JSON syntax (line and column), the channel schema, each component's
config against its own schema, secret references ({"$env": ...}, {"$file": ...}) and provider
rules of credential presets. Every problem is listed as file#/json/pointer: message.
Literal secrets in the file are warnings. A file named *.test.json is checked as a channel test
file (its schema, then the channel it names, with the test's env values).

  --quiet   print only problems and warnings

exit status: 0 when every file is valid, 1 when any is not, 2 on bad usage`

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { quiet: { type: 'boolean', default: false } } })
  if (positionals.length === 0) {
    io.err(usage)
    return 2
  }
  let failed = 0
  for (const file of positionals) {
    try {
      if (file.endsWith('.test.json')) {
        const t = await loadTestFile(file)
        const ch = await loadChannel(t.channel, { env: { ...io.env, ...t.env } })
        for (const w of ch.warnings) io.err(`warning: ${w}`)
        if (!values.quiet) io.out(`ok ${file}: test of channel "${ch.name}", ${t.cases.length} case(s)`)
        continue
      }
      const ch = await loadChannel(file, { env: io.env })
      for (const w of ch.warnings) io.err(`warning: ${w}`)
      if (!values.quiet) {
        io.out(`ok ${file}: channel "${ch.name}", source ${ch.source.definition.type}, ${ch.filters.length} filter(s), destinations ${ch.destinations.map((d) => d.name).join(', ')}`)
      }
    } catch (e) {
      if (!isWeirError(e) || !e.userError) throw e
      failed++
      const lines = e.code === 'ERR_CONFIG_INVALID' ? (e as ConfigError).problems.map(formatProblem) : [`${file}: ${e.message}`]
      for (const l of lines) io.err(l)
    }
  }
  if (positionals.length > 1 || failed) io.err(`${positionals.length - failed} valid, ${failed} invalid`)
  return failed ? 1 : 0
}
