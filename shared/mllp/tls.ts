import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { ConfigError } from '../errors.ts'

/** Reads a PEM file named in a channel (relative to the channel directory); a missing file is a config error naming it. */
export function readTlsFile(channelDir: string, file: string): Buffer {
  const path = resolve(channelDir, file)
  try {
    return readFileSync(path)
  } catch (e) {
    throw new ConfigError([{ file: path, pointer: '', message: `cannot read TLS file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }])
  }
}
