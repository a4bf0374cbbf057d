import { existsSync, readFileSync } from 'node:fs'
import { isWeirError } from '../shared/errors.ts'
import { nearest } from '../shared/config/problems.ts'
import { processIO, type CommandIO } from './cli-io.ts'

export interface CommandModule {
  summary: string
  usage: string
  run(args: string[], io: CommandIO): Promise<number>
}

/** The commands, each a module under engine/commands/, loaded on demand so `weir --help` stays fast. */
const COMMAND_NAMES = ['validate', 'run', 'test', 'messages', 'backup', 'keys', 'token', 'credentials', 'cluster'] as const
const COMMANDS: Record<string, () => Promise<CommandModule>> = Object.fromEntries(
  COMMAND_NAMES.map((name) => [name, () => import(`./commands/${name}.ts`) as Promise<CommandModule>]),
)

/** Weir's version, from its package.json: the nearest one above this file (in the sources or in dist/). */
export function version(): string {
  for (let dir = new URL('./', import.meta.url); ; ) {
    const file = new URL('package.json', dir)
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version: string }
      if (pkg.name === 'weir') return pkg.version
    }
    const parent = new URL('../', dir)
    if (parent.href === dir.href) return 'unknown'
    dir = parent
  }
}

async function help(io: CommandIO): Promise<void> {
  const lines = ['weir: an integration engine (channels of sources, filters and destinations, with one shared OAuth 2.0 client)', '', 'usage: weir <command> [options]', '', 'commands:']
  for (const [name, load] of Object.entries(COMMANDS)) {
    const summary = await load().then((m) => m.summary, () => '(unavailable in this build)')
    lines.push(`  ${name.padEnd(12)} ${summary}`)
  }
  lines.push('', 'weir <command> --help shows a command\'s options.', 'weir --version prints the version.')
  io.out(lines.join('\n'))
}

/** Runs the CLI; returns the exit code. User errors print one clear message each, never a stack. */
export async function main(argv: string[], io: CommandIO = processIO()): Promise<number> {
  const [cmd, ...rest] = argv
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    await help(io)
    return cmd ? 0 : 2
  }
  if (cmd === '--version' || cmd === '-v') {
    io.out(version())
    return 0
  }
  const load = COMMANDS[cmd]
  if (!load) {
    const guess = nearest(cmd, Object.keys(COMMANDS))
    io.err(`weir: unknown command "${cmd}"${guess ? `; did you mean "${guess}"?` : ''} (see weir --help)`)
    return 2
  }
  try {
    const mod = await load()
    if (rest.includes('--help') || rest.includes('-h')) {
      io.out(mod.usage)
      return 0
    }
    return await mod.run(rest, io)
  } catch (e) {
    if (isWeirError(e) && e.userError) {
      io.err(`weir ${cmd}: ${e.message}`)
      // Bad usage (a flag's value, a missing argument) is 2, as for an unknown flag; any other user error 1.
      return e.code === 'ERR_USAGE' ? 2 : 1
    }
    if (String((e as NodeJS.ErrnoException)?.code).startsWith('ERR_PARSE_ARGS_')) {
      io.err(`weir ${cmd}: ${(e as Error).message.split('\n')[0]} (see weir ${cmd} --help)`)
      return 2
    }
    const err = e as Error
    io.err(`weir ${cmd}: internal error: ${err?.message ?? String(e)}\n${err?.stack ?? ''}`)
    return 70
  }
}

