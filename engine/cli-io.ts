import { resolve } from 'node:path'

export interface CommandIO {
  out: (text: string) => void
  err: (text: string) => void
  env: NodeJS.ProcessEnv
  cwd: string
  /** True when stdout is a terminal (live displays, colours). */
  isTTY: boolean
}

export const processIO = (): CommandIO => ({
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : t + '\n'),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : t + '\n'),
  env: process.env,
  cwd: process.cwd(),
  isTTY: Boolean(process.stdout.isTTY) && !process.env.CI,
})

/** The data directory: --data-dir, else $WEIR_DATA_DIR, else ./data (relative to the working directory). */
export function dataDirOf(flag: string | undefined, io: Pick<CommandIO, 'cwd' | 'env'>): string {
  return resolve(io.cwd, flag ?? io.env.WEIR_DATA_DIR ?? 'data')
}
