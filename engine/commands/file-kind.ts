import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/**
 * Which kind of file a parsed JSON value is, by its top-level keys: a test file names its channel
 * and has cases; a channel has a source or destinations. Undefined when it is neither or both.
 */
function kindOf(data: unknown): 'channel' | 'test' | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined
  const test = 'cases' in data || 'channel' in data
  const channel = 'source' in data || 'destinations' in data
  return test === channel ? undefined : test ? 'test' : 'channel'
}

/**
 * One line for a file that failed its schema because it was given to the wrong command (`weir run`
 * a test file, `weir test` a channel file): which command takes it. Undefined when the file is of
 * the command's kind, or its JSON cannot be read (the problems already say why).
 * @param path the file as read; `shown` as the user gave it
 */
export async function wrongCommandHint(path: string, shown: string, command: 'run' | 'test'): Promise<string | undefined> {
  let data: unknown
  try {
    data = JSON.parse(await readFile(path, 'utf8'))
  } catch {
    return undefined
  }
  const kind = kindOf(data)
  if (command === 'run' && kind === 'test') return `${shown}: this looks like a test file (it has "channel" or "cases"): run it with weir test ${shown}`
  if (command !== 'test' || kind !== 'channel') return undefined
  // The test file beside it, named as `weir test` examples name them (adt.json: adt.test.json).
  const test = join(dirname(shown), `${basename(shown, '.json')}.test.json`)
  const beside = existsSync(join(dirname(path), basename(test)))
  return `${shown}: this is a channel file; weir test takes its test file (*.test.json, naming the channel in "channel")${beside ? `: weir test ${test}` : ''}`
}
