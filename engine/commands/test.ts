import type { CommandIO } from '../cli-io.ts'

export const summary = 'run channel test files against the embedded authorization server and API'
export const usage = `usage: weir test <file.test.json...> [--reporter junit --output FILE]

Not available yet: the channel test harness arrives with issue 6.`

export async function run(_args: string[], io: CommandIO): Promise<number> {
  io.err('weir test: the channel test harness is not implemented yet (issue 6)')
  return 1
}
