import { resolve } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { nearest } from '../shared/config/problems.ts'
import { errorCodes } from '../shared/errors.ts'

/**
 * The positional arguments a command takes (`names`, in order), or bad usage (ERR_USAGE: one line,
 * exit 2) naming the first one missing or the first one too many, with the command's synopsis.
 * @example
 * const [file, credential] = expectArgs(positionals, ['<channel.json>', '<credential>'], 'weir token <channel.json> <credential>')
 */
export function expectArgs(positionals: readonly string[], names: readonly string[], synopsis: string): string[] {
  const why = positionals.length < names.length ? `missing ${names[positionals.length]}` : positionals.length > names.length ? `unexpected argument "${positionals[names.length]}"` : undefined
  if (why) throw new errorCodes.ERR_USAGE(`${why} (usage: ${synopsis}; see --help)`)
  return [...positionals]
}

/** `a`, `a and b`, `a, b and c` (or with `or`): the flags or choices a message names. */
const listOf = (items: readonly string[], conjunction: 'and' | 'or') => (items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} ${conjunction} ${items.at(-1)}`)

/** The flags a command takes, as node:util parseArgs describes them. */
export type FlagOptions = NonNullable<ParseArgsConfig['options']>
type Flags<T extends FlagOptions> = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: T }>>

/**
 * The command's flags and positionals (node:util parseArgs, strict, positionals allowed). A flag it
 * does not take (one another command takes, or a typo) is bad usage (ERR_USAGE: one line, exit 2)
 * naming the command (and subcommand) with the flags it takes, or the nearest of them for a near miss.
 * @example
 * const { values } = parseFlags(args, { 'data-dir': { type: 'string' } }, 'keys', 'rotate-store-key')
 * // weir keys rotate-store-key --store X: "unknown option --store for weir keys rotate-store-key: it takes --data-dir (see weir keys --help)"
 */
export function parseFlags<T extends FlagOptions>(args: string[], options: T, command: string, subcommand?: string): Flags<T> {
  try {
    return parseArgs({ args, options, allowPositionals: true })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw e
    const { tokens } = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true })
    const unknown = tokens.find((t) => t.kind === 'option' && !Object.hasOwn(options, t.name))
    if (!unknown || unknown.kind !== 'option') throw e
    const flags = Object.keys(options).map((f) => `--${f}`)
    const guess = nearest(unknown.rawName, flags)
    const takes = flags.length === 0 ? 'it takes no option' : `it takes ${listOf(flags, 'and')}`
    const what = `weir ${command}${subcommand ? ` ${subcommand}` : ''}`
    throw new errorCodes.ERR_USAGE(`unknown option ${unknown.rawName} for ${what}${guess ? `; did you mean ${guess}?` : `: ${takes}`} (see weir ${command} --help)`)
  }
}

/** Every flag of the subcommands of `T` (their options merged): what their parsed values may hold. */
type EveryFlag<T extends Record<string, FlagOptions>> = (T[keyof T] extends infer U ? (U extends unknown ? (u: U) => void : never) : never) extends (i: infer I) => void ? I & FlagOptions : never

/**
 * The subcommand of a command that has several (`weir keys rotate …`), its flags and its positionals
 * (the subcommand first). The subcommand is the first positional, found with every subcommand's flags
 * read leniently, so flags may come before or after it; then the arguments are parsed strictly with
 * that subcommand's flags (parseFlags), so a flag it does not take is bad usage naming it. Without a
 * subcommand (`sub` undefined: the command prints its usage) or with an unknown one, they are parsed
 * with every subcommand's flags, so an unknown flag is reported before the unknown subcommand is:
 * that is bad usage too (ERR_USAGE), naming the subcommands.
 * @example
 * const { sub, values, positionals } = parseSubcommandFlags(args, { generate: { alg: { type: 'string' } }, prune: {} }, 'keys')
 * // weir keys genrate: 'unknown subcommand "genrate"; expected generate or prune (see --help)'
 */
export function parseSubcommandFlags<T extends Record<string, FlagOptions>>(args: string[], table: T, command: string): Flags<EveryFlag<T>> & { sub: keyof T & string | undefined } {
  const every = Object.assign({}, ...Object.values(table)) as EveryFlag<T>
  const first = parseArgs({ args, options: every, allowPositionals: true, strict: false }).positionals[0]
  const sub = first !== undefined && Object.hasOwn(table, first) ? first as keyof T & string : undefined
  const parsed = parseFlags(args, sub ? table[sub]! : every, command, sub)
  if (first !== undefined && !sub) throw new errorCodes.ERR_USAGE(`unknown subcommand "${first}"; expected ${listOf(Object.keys(table), 'or')} (see --help)`)
  return { ...parsed, sub }
}

export interface CommandIO {
  out: (text: string) => void
  err: (text: string) => void
  env: NodeJS.ProcessEnv
  cwd: string
  /** True when stdout is a terminal (live displays, colours). */
  isTTY: boolean
}

let stdoutClosed = false
let watchingStdout = false

/**
 * Whether the reader of stdout went away (`weir cluster status | head -1`: EPIPE). From then on what a
 * command prints is dropped, and the command ends quietly: no "unhandled 'error' event", no stack.
 */
export const isStdoutClosed = () => stdoutClosed

/**
 * Takes EPIPE on stdout as the reader having gone. A command that runs until stopped (`weir run`,
 * which listens for SIGTERM) stops as on SIGTERM, finishing its in-flight work; any other finishes what
 * it is doing (a resubmit, a backup: cutting one short would leave it half done) with nothing more
 * printed. Other write errors stay errors.
 */
function watchStdout(): void {
  if (watchingStdout) return
  watchingStdout = true
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && !stdoutClosed) throw e
    if (stdoutClosed) return
    stdoutClosed = true
    if (process.listenerCount('SIGTERM') > 0) process.kill(process.pid, 'SIGTERM')
  })
}

export const processIO = (): CommandIO => (watchStdout(), {
  out: (t) => { if (!stdoutClosed) process.stdout.write(t.endsWith('\n') ? t : t + '\n') },
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : t + '\n'),
  env: process.env,
  cwd: process.cwd(),
  isTTY: Boolean(process.stdout.isTTY) && !process.env.CI,
})

/** The data directory: --data-dir, else $WEIR_DATA_DIR, else ./data (relative to the working directory). */
export function dataDirOf(flag: string | undefined, io: Pick<CommandIO, 'cwd' | 'env'>): string {
  return resolve(io.cwd, flag ?? io.env.WEIR_DATA_DIR ?? 'data')
}
