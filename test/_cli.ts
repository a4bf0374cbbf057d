import type { CommandIO } from '../engine/cli-io.ts'
import { main } from '../engine/cli.ts'

/** Runs the CLI in-process, capturing what it prints. */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const io: CommandIO = { out: (t) => { out += t.endsWith('\n') ? t : t + '\n' }, err: (t) => { err += t.endsWith('\n') ? t : t + '\n' }, env, cwd: process.cwd(), isTTY: false }
  const code = await main(argv, io)
  return { code, out, err }
}
