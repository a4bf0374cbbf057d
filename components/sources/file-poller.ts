import { createHash } from 'node:crypto'
import { copyFile, constants, mkdir, readdir, readFile, rename, stat, unlink, access } from 'node:fs/promises'
import { basename, extname, join, resolve } from 'node:path'
import { defineComponent, type Emit, type MessageInput, isJsonContentType, type ConfigOf } from '../../shared/component.ts'
import { isWeirError, refusalOf } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log/index.ts'
import { decodeText } from '../../shared/text.ts'

const configSchema = {
  type: 'object', additionalProperties: false, required: ['directory'],
  properties: {
    directory: {
      type: 'string', minLength: 1,
      description: 'Directory to watch, relative to the channel file; created when missing. Subdirectories are not read.',
      examples: ['in/adt'],
    },
    pattern: {
      type: 'string', minLength: 1, default: '*',
      description: 'Glob the file names must match: `*`, `?`, `[abc]` and `{json,xml}`. Names starting with "." are never picked up.',
      examples: ['*.json', 'ADT_*.{hl7,txt}'],
    },
    pollIntervalMs: {
      type: 'integer', minimum: 10, default: 1000,
      description: 'Time between two scans (ms). A file is picked up once its size and modification time are unchanged across one interval.',
    },
    doneDirectory: {
      type: 'string', minLength: 1,
      description: 'Where a file moves after its message is durably stored, relative to the channel file. Default: "done" inside `directory`.',
      examples: ['archive/adt'],
    },
    errorDirectory: {
      type: 'string', minLength: 1,
      description: 'Where a file that cannot become a message (too large, not valid in `encoding`, invalid JSON) moves, relative to the channel file. Default: "error" inside `directory`.',
    },
    contentType: {
      type: 'string', minLength: 1,
      description: 'Content type of the messages. Default: from the extension (.json → application/json, .xml → application/xml, .hl7 → x-application/hl7-v2+er7, otherwise text/plain). JSON content is parsed.',
      examples: ['application/fhir+json'],
    },
    maxBytes: {
      type: 'integer', minimum: 1, default: 10 * 1024 * 1024,
      description: 'Largest file accepted (bytes); a larger one moves to the error directory.',
    },
    encoding: {
      enum: ['utf-8', 'latin1'], default: 'utf-8',
      description: 'Character encoding of the files. With "utf-8" a file that is not valid UTF-8 moves to the error directory; "latin1" (ISO 8859-1) reads any bytes. A leading byte order mark is dropped.',
    },
    dedupe: {
      enum: ['file', 'content'], default: 'file',
      description: 'How a re-read file is recognised (after a crash between the durable write and the move): "file" = path, size, modification time and content; "content" = content only, so the same content under any name is a duplicate.',
    },
  },
} as const

export type FilePollerConfig = ConfigOf<typeof configSchema>

/** A file-name glob as a RegExp: `*`, `?`, `[…]`, `{a,b}`; no path separators. */
export function globToRegExp(glob: string): RegExp {
  let re = ''
  let inBraces = false
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1)
      if (end < 0) { re += '\\['; continue }
      let cls = glob.slice(i + 1, end).replace(/\\/g, '\\\\')
      if (cls.startsWith('!')) cls = '^' + cls.slice(1)
      re += `[${cls}]`
      i = end
    } else if (c === '{') { inBraces = true; re += '(?:' }
    else if (c === '}' && inBraces) { inBraces = false; re += ')' }
    else if (c === ',' && inBraces) re += '|'
    else re += c.replace(/[.+^$()|\\\]]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

const TYPES: Record<string, string> = { '.json': 'application/json', '.xml': 'application/xml', '.hl7': 'x-application/hl7-v2+er7', '.csv': 'text/csv' }
interface Seen { size: number; mtimeMs: number }

/** One file-poller's directories, what it hands messages to, and what its previous scan saw. */
interface Poller {
  readonly config: FilePollerConfig
  readonly log: Logger
  readonly dir: string
  readonly doneDir: string
  readonly errorDir: string
  readonly pattern: RegExp
  emit: Emit | undefined
  stopped: boolean
  /** Size and mtime of each candidate at the previous scan. */
  seen: Map<string, Seen>
}

/** Moves `file` into `toDir` without replacing an earlier file of the same name. */
async function moveTo(file: string, toDir: string): Promise<string> {
  const name = basename(file)
  const ext = extname(name)
  let target = join(toDir, name)
  for (let n = 1; ; n++) {
    try { await access(target) } catch { break }
    target = join(toDir, `${name.slice(0, name.length - ext.length)}.${n}${ext}`)
  }
  try {
    await rename(file, target)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e
    await copyFile(file, target, constants.COPYFILE_EXCL)
    await unlink(file)
  }
  return target
}

async function reject(p: Poller, file: string, reason: string): Promise<void> {
  const to = await moveTo(file, p.errorDir)
  p.log.error({ file, movedTo: to, reason }, 'file rejected')
}

function dedupeKeyOf(config: FilePollerConfig, file: string, st: Seen, content: Buffer): string {
  const hash = createHash('sha256').update(content).digest('hex')
  // A re-read after a crash between the durable write and the move yields the same key.
  return config.dedupe === 'content'
    ? `file-poller:content:${hash}`
    : `file-poller:file:${createHash('sha256').update(`${file}\0${st.size}\0${st.mtimeMs}\0${hash}`).digest('hex')}`
}

/** The file's text in the configured encoding (strict UTF-8, a byte order mark dropped), or why it cannot be read. */
function decode(config: FilePollerConfig, content: Buffer): string | { rejected: string } {
  return decodeText(content, config.encoding) ?? { rejected: 'file is not valid UTF-8 (set encoding "latin1" for ISO 8859-1 files)' }
}

/** The message `file` becomes, or why it cannot become one (too large, not valid in its encoding, invalid JSON). */
async function readMessage(config: FilePollerConfig, file: string, st: Seen): Promise<MessageInput | { rejected: string }> {
  if (st.size > config.maxBytes) return { rejected: `file is ${st.size} bytes, above maxBytes ${config.maxBytes}` }
  const content = await readFile(file)
  const contentType = config.contentType ?? TYPES[extname(file).toLowerCase()] ?? 'text/plain'
  const text = decode(config, content)
  if (typeof text !== 'string') return text
  let body: unknown = text
  if (isJsonContentType(contentType)) {
    try { body = JSON.parse(text) } catch (e) { return { rejected: `invalid JSON: ${(e as Error).message}` } }
  }
  return {
    body, contentType, dedupeKey: dedupeKeyOf(config, file, st, content),
    attributes: { fileName: basename(file), filePath: file, size: String(st.size), mtime: new Date(st.mtimeMs).toISOString() },
  }
}

/** Returns false when emitting should stop for this scan (backpressure, store trouble). */
async function pickUp(p: Poller, file: string, st: Seen): Promise<boolean> {
  const input = await readMessage(p.config, file, st)
  if ('rejected' in input) { await reject(p, file, input.rejected); return true }
  let result
  try {
    result = await p.emit!(input)
  } catch (e) {
    const backpressure = isWeirError(e) && e.code === 'ERR_BACKPRESSURE'
    p.log.warn({ file, reason: (e as Error).message }, backpressure ? `${refusalOf(e)}; file left for the next scan` : 'emit failed; file left for the next scan')
    return false
  }
  const to = await moveTo(file, p.doneDir)
  if (result.duplicate) p.log.info({ file, messageId: result.id, movedTo: to }, 'file already stored (re-read after a restart); moved')
  else p.log.info({ file, messageId: result.id, movedTo: to }, 'file picked up')
  return true
}

/** The matching file names in the directory, sorted; undefined (logged) when it cannot be read. */
async function listCandidates(p: Poller): Promise<string[] | undefined> {
  try {
    return (await readdir(p.dir, { withFileTypes: true })).filter((e) => e.isFile() && !e.name.startsWith('.') && p.pattern.test(e.name)).map((e) => e.name).sort()
  } catch (e) {
    p.log.error({ directory: p.dir, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, 'cannot read directory')
    return undefined
  }
}

async function sizeOf(file: string): Promise<Seen | undefined> {
  try {
    const s = await stat(file)
    return { size: s.size, mtimeMs: s.mtimeMs }
  } catch { return undefined } // gone since readdir
}

/** Picks up each file unchanged since the previous scan, until one cannot be emitted or the poller stops. */
async function scan(p: Poller): Promise<void> {
  const names = await listCandidates(p)
  if (!names) return
  const now = new Map<string, Seen>()
  let halted = false
  for (const name of names) {
    const file = join(p.dir, name)
    if (halted || p.stopped) {
      // Not looked at this scan: keep what the previous scan saw.
      const b = p.seen.get(file)
      if (b) now.set(file, b)
      continue
    }
    const st = await sizeOf(file)
    if (!st) continue
    const before = p.seen.get(file)
    // Partially written files change between scans; only a file unchanged over a full interval is taken.
    if (!before || before.size !== st.size || before.mtimeMs !== st.mtimeMs) { now.set(file, st); continue }
    try {
      if (!(await pickUp(p, file, st))) { now.set(file, st); halted = true }
    } catch (e) {
      p.log.error({ file, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, 'file could not be processed; retried on the next scan')
      now.set(file, st)
    }
  }
  p.seen = now
}

export default defineComponent({
  type: 'file-poller', kind: 'source',
  cluster: 'one-engine',
  description: 'Watches a directory; each file matching a glob becomes a message, and moves to a done directory once durably stored.',
  configSchema,
  check(config) {
    try {
      globToRegExp(config.pattern)
      return []
    } catch (e) {
      return [['/pattern', `invalid glob: ${(e as Error).message}`]]
    }
  },
  create(config, ctx) {
    const dir = resolve(ctx.channelDir, config.directory)
    const p: Poller = {
      config, log: ctx.log, dir,
      doneDir: config.doneDirectory ? resolve(ctx.channelDir, config.doneDirectory) : join(dir, 'done'),
      errorDir: config.errorDirectory ? resolve(ctx.channelDir, config.errorDirectory) : join(dir, 'error'),
      pattern: globToRegExp(config.pattern),
      emit: undefined, stopped: true, seen: new Map(),
    }
    let timer: NodeJS.Timeout | undefined
    let running: Promise<void> | undefined

    function track(scanning: Promise<void>): Promise<void> {
      const t: Promise<void> = scanning.catch((e: unknown) => { ctx.log.error({ reason: (e as Error).message }, 'scan failed') }).finally(() => { if (running === t) running = undefined })
      running = t
      return t
    }

    function schedule(): void {
      if (p.stopped) return
      timer = setTimeout(() => { void track(scan(p)).then(schedule) }, config.pollIntervalMs)
    }

    return {
      async start(e: Emit) {
        p.emit = e
        p.stopped = false
        await mkdir(dir, { recursive: true })
        await mkdir(p.doneDir, { recursive: true })
        await mkdir(p.errorDir, { recursive: true })
        ctx.log.info({ directory: dir, pattern: config.pattern }, 'watching directory')
        void track(scan(p)).then(schedule)
      },
      async stop() {
        p.stopped = true
        if (timer) clearTimeout(timer)
        timer = undefined
        await running
      },
      /** Resolves when no scan is running. */
      async idle() {
        while (running) await running
      },
      /** Runs one scan now (tests, manual triggers); waits for a scan in progress first. */
      async scanNow() {
        while (running) await running
        await track(scan(p))
      },
    }
  },
})
