import { createHash } from 'node:crypto'
import { copyFile, constants, mkdir, readdir, readFile, rename, stat, unlink, access } from 'node:fs/promises'
import { basename, extname, join, resolve } from 'node:path'
import { defineComponent, type Emit, type MessageInput, isJsonContentType, type ConfigOf } from '../../shared/component.ts'
import { isWeirError } from '../../shared/errors.ts'

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
      description: 'Where a file that cannot become a message (too large, invalid JSON) moves, relative to the channel file. Default: "error" inside `directory`.',
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
    const doneDir = config.doneDirectory ? resolve(ctx.channelDir, config.doneDirectory) : join(dir, 'done')
    const errorDir = config.errorDirectory ? resolve(ctx.channelDir, config.errorDirectory) : join(dir, 'error')
    const pattern = globToRegExp(config.pattern)
    /** Size and mtime of each candidate at the previous scan. */
    let seen = new Map<string, Seen>()
    let emit: Emit | undefined
    let timer: NodeJS.Timeout | undefined
    let running: Promise<void> | undefined
    let stopped = true

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

    async function reject(file: string, reason: string): Promise<void> {
      const to = await moveTo(file, errorDir)
      ctx.log.error({ file, movedTo: to, reason }, 'file rejected')
    }

    /** Returns false when emitting should stop for this scan (backpressure, store trouble). */
    async function pickUp(file: string, st: Seen): Promise<boolean> {
      if (st.size > config.maxBytes) { await reject(file, `file is ${st.size} bytes, above maxBytes ${config.maxBytes}`); return true }
      const content = await readFile(file)
      const contentType = config.contentType ?? TYPES[extname(file).toLowerCase()] ?? 'text/plain'
      const text = content.toString('utf8')
      let body: unknown = text
      if (isJsonContentType(contentType)) {
        try { body = JSON.parse(text) } catch (e) { await reject(file, `invalid JSON: ${(e as Error).message}`); return true }
      }
      const hash = createHash('sha256').update(content).digest('hex')
      // A re-read after a crash between the durable write and the move yields the same key.
      const dedupeKey = config.dedupe === 'content'
        ? `file-poller:content:${hash}`
        : `file-poller:file:${createHash('sha256').update(`${file}\0${st.size}\0${st.mtimeMs}\0${hash}`).digest('hex')}`
      const input: MessageInput = {
        body, contentType, dedupeKey,
        attributes: { fileName: basename(file), filePath: file, size: String(st.size), mtime: new Date(st.mtimeMs).toISOString() },
      }
      let result
      try {
        result = await emit!(input)
      } catch (e) {
        const backpressure = isWeirError(e) && e.code === 'ERR_BACKPRESSURE'
        ctx.log.warn({ file, reason: (e as Error).message }, backpressure ? 'queue full; file left for the next scan' : 'emit failed; file left for the next scan')
        return false
      }
      const to = await moveTo(file, doneDir)
      if (result.duplicate) ctx.log.info({ file, messageId: result.id, movedTo: to }, 'file already stored (re-read after a restart); moved')
      else ctx.log.info({ file, messageId: result.id, movedTo: to }, 'file picked up')
      return true
    }

    async function scan(): Promise<void> {
      let names: string[]
      try {
        names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && !e.name.startsWith('.') && pattern.test(e.name)).map((e) => e.name).sort()
      } catch (e) {
        ctx.log.error({ directory: dir, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, 'cannot read directory')
        return
      }
      const now = new Map<string, Seen>()
      let halted = false
      for (const name of names) {
        const file = join(dir, name)
        if (halted || stopped) {
          // Not looked at this scan: keep what the previous scan saw.
          const b = seen.get(file)
          if (b) now.set(file, b)
          continue
        }
        let st: Seen
        try {
          const s = await stat(file)
          st = { size: s.size, mtimeMs: s.mtimeMs }
        } catch { continue } // gone since readdir
        const before = seen.get(file)
        // Partially written files change between scans; only a file unchanged over a full interval is taken.
        if (!before || before.size !== st.size || before.mtimeMs !== st.mtimeMs) { now.set(file, st); continue }
        try {
          if (!(await pickUp(file, st))) { now.set(file, st); halted = true }
        } catch (e) {
          ctx.log.error({ file, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, 'file could not be processed; retried on the next scan')
          now.set(file, st)
        }
      }
      seen = now
    }

    function track(p: Promise<void>): Promise<void> {
      const t: Promise<void> = p.catch((e: unknown) => { ctx.log.error({ reason: (e as Error).message }, 'scan failed') }).finally(() => { if (running === t) running = undefined })
      running = t
      return t
    }

    function schedule(): void {
      if (stopped) return
      timer = setTimeout(() => { void track(scan()).then(schedule) }, config.pollIntervalMs)
    }

    return {
      async start(e: Emit) {
        emit = e
        stopped = false
        await mkdir(dir, { recursive: true })
        await mkdir(doneDir, { recursive: true })
        await mkdir(errorDir, { recursive: true })
        ctx.log.info({ directory: dir, pattern: config.pattern }, 'watching directory')
        void track(scan()).then(schedule)
      },
      async stop() {
        stopped = true
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
        await track(scan())
      },
    }
  },
})
