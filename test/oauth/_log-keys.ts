// Helpers for the log-key tests only: no tests here.

/**
 * The keys that appear more than once in one object of a raw JSON text, at any depth. JSON.parse
 * keeps the last of duplicated keys silently, so a log line is checked as the text pino wrote.
 */
export function duplicateKeys(line: string): string[] {
  const dups: string[] = []
  const objects: Array<Set<string>> = []
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]
    if (ch === '{') objects.push(new Set())
    else if (ch === '}') objects.pop()
    else if (ch === '"') {
      let end = i + 1
      while (line[end] !== '"') end += line[end] === '\\' ? 2 : 1
      const text = line.slice(i, end + 1)
      let next = end + 1
      while (line[next] === ' ') next++
      const keys = objects.at(-1)
      if (line[next] === ':' && keys) {
        const key = JSON.parse(text) as string
        if (keys.has(key)) dups.push(key)
        keys.add(key)
      }
      i = end
    }
  }
  return dups
}

/** How many times `"key":` occurs in a raw log line. */
export function occurrences(line: string, key: string): number {
  return line.split(`"${key}":`).length - 1
}
