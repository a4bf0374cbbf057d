import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { chmod, link, mkdir, open, rename, unlink } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { defineComponent, type ComponentContext, type ConfigOf, type Destination, type Message } from '../../shared/component.ts'
import { PermanentError, RetryableError } from '../../shared/errors.ts'
import { syncDir } from '../../shared/sync-dir.ts'
import { compileTemplate, templateProblems } from '../../shared/template.ts'

const configSchema = {
  type: 'object', additionalProperties: false, required: ['directory'],
  properties: {
    directory: {
      type: 'string', minLength: 1,
      description: 'Directory the files are written to, relative to the channel file; created when missing.',
      examples: ['out/patients'],
    },
    filename: {
      type: 'string', minLength: 1, default: '{id}.json',
      description: 'File name template. `{field}` is replaced by a message field (`id`, `channel`, `contentType`, `receivedAt`, `body.<path>`, `attributes.<name>`), made safe for a file name (`/ \\ : * ? " < > |` and control characters become `_`, an all-dots value becomes underscores), so different values can map to one file name (`a/b` and `a_b`): include `{id}` when names must be unique. `/` in the template itself makes subdirectories. A name part longer than 255 bytes fails the message permanently.',
      examples: ['{id}.json', '{attributes.date}/{body.mrn}-{id}.hl7'],
    },
    overwrite: {
      type: 'boolean', default: true,
      description: 'Replace an existing file of the same name (a redelivery rewrites the same file). When false, an existing file is a permanent error, unless it holds exactly the bytes the message would write (a retry after a failure that followed the write, e.g. syncing the directory): the message then counts as delivered.',
    },
    fileMode: {
      type: 'string', pattern: '^0?[0-7]{3}$', default: '0600',
      description: 'Mode of the files written, in octal, whatever the umask. The default lets only the user Weir runs as read them (messages hold patient data); `0640` lets its group read them too.',
      examples: ['0600', '0640'],
    },
    dirMode: {
      type: 'string', pattern: '^0?[0-7]{3}$', default: '0700',
      description: 'Mode of the directories the destination creates, in octal, whatever the umask. Existing directories keep theirs.',
      examples: ['0700', '0750'],
    },
    jsonIndent: {
      type: 'integer', minimum: 0, maximum: 8, default: 0,
      description: 'Indentation of JSON bodies, in spaces; 0 writes compact JSON.',
    },
  },
} as const

export type FileConfig = ConfigOf<typeof configSchema>

/** A template value as a single safe path segment: no separators, no `..`, no control characters. */
const safeSegment = (v: string) => v.replace(/[/\\\0-\x1f<>:"|?*]/g, '_').replace(/^\.+$/, (dots) => '_'.repeat(dots.length)) || '_'

function serialize(message: Message, indent: number): Buffer {
  const b = message.body
  if (typeof b === 'string') return Buffer.from(b, 'utf8')
  if (b instanceof Uint8Array) return Buffer.from(b)
  return Buffer.from(JSON.stringify(b, null, indent || undefined) ?? 'null', 'utf8')
}

/** The longest file name (one path segment) common file systems accept, in bytes (NAME_MAX). */
const MAX_NAME_BYTES = 255

/** A rendered name part too long for the file system: no retry makes it shorter. */
function checkNameLength(name: string): void {
  for (const part of name.split(sep)) {
    const bytes = Buffer.byteLength(part)
    if (bytes > MAX_NAME_BYTES) throw new PermanentError(`file name part "${part.slice(0, 40)}…" is ${bytes} bytes; file systems allow at most ${MAX_NAME_BYTES}`)
  }
}

/** Filesystem errors an operator can fix (disk full, permissions): retry rather than give up. A name the system refuses is permanent. */
function fsError(e: unknown, what: string): Error {
  const code = (e as NodeJS.ErrnoException).code ?? 'error'
  if (code === 'ENAMETOOLONG') return new PermanentError(`${what}: ${code} (the file name or path is too long)`, { cause: e })
  return new RetryableError(`${what}: ${code}`, { cause: e })
}

/**
 * Creates `dir` and its missing parents with `mode`, whatever the umask; existing ones keep their
 * mode. Returns the directories that gained an entry (the parents of those created), to be synced.
 */
async function makeDirs(dir: string, mode: number): Promise<string[]> {
  const first = await mkdir(dir, { recursive: true, mode })
  if (first === undefined) return []
  const parents: string[] = []
  for (let d = dir; ; d = dirname(d)) {
    await chmod(d, mode)
    parents.push(dirname(d))
    if (d === first) return parents
  }
}

/**
 * True when `path` is a regular file (not a symbolic link) holding exactly `data`; its data is then
 * synced, so that it is as durable as a file this destination writes.
 */
async function holdsExactly(path: string, data: Buffer): Promise<boolean> {
  let fh
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') return false
    throw e
  }
  try {
    const st = await fh.stat()
    if (!st.isFile() || st.size !== data.length) return false
    if (!(await fh.readFile()).equals(data)) return false
    await fh.datasync()
    return true
  } finally { await fh.close() }
}

/** `dir` and the directories above it, up to and including `top` (an ancestor of `dir`). */
function ancestorsUpTo(dir: string, top: string): string[] {
  const out: string[] = []
  for (let d = dir; ; d = dirname(d)) {
    out.push(d)
    if (d === top || d === dirname(d)) return out
  }
}

/** The file system calls a test replaces to make them fail (not configurable: the component passes the real ones). */
export interface FileDestinationIo {
  syncDir: (dir: string) => Promise<void>
}

/** The file destination with `config`; `io` only for tests. */
export function createFileDestination(config: Readonly<FileConfig>, ctx: ComponentContext, io: FileDestinationIo = { syncDir }): Destination {
  const root = resolve(ctx.channelDir, config.directory)
  const fileMode = parseInt(config.fileMode, 8)
  const dirMode = parseInt(config.dirMode, 8)
  const segments = config.filename.split('/').map((seg) => compileTemplate(seg))
  return {
    async deliver(message) {
      const name = segments.map((render) => render(message, safeSegment)).join(sep)
      checkNameLength(name)
      const target = resolve(root, name)
      const rel = relative(root, target)
      if (!rel || rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel)) throw new PermanentError(`file name "${name}" leaves the output directory`)
      const data = serialize(message, config.jsonIndent)
      const dir = dirname(target)
      let madeIn: string[]
      try {
        madeIn = await makeDirs(dir, dirMode)
      } catch (e) { throw fsError(e, `cannot create directory ${dir}`) }
      // Same directory as the target so the rename is atomic; dot-prefixed so readers skip it.
      const tmp = join(dir, `.${randomBytes(6).toString('hex')}.weir-tmp`)
      try {
        const fh = await open(tmp, 'wx', fileMode)
        try {
          await fh.chmod(fileMode)
          await fh.writeFile(data)
          await fh.datasync()
        } finally { await fh.close() }
        if (config.overwrite) await rename(tmp, target)
        else await link(tmp, target) // fails with EEXIST, atomically, when the file is there
      } catch (e) {
        await unlink(tmp).catch(() => {})
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || config.overwrite) throw fsError(e, `cannot write ${target}`)
        // An earlier attempt may have given the file its name and failed after (syncing the directory):
        // the same bytes under the name are this delivery's file, any other content is someone else's.
        let same: boolean
        try {
          same = await holdsExactly(target, data)
        } catch (e2) { throw fsError(e2, `cannot read ${target}`) }
        if (!same) throw new PermanentError(`file ${rel} already exists (overwrite is false)`)
        // Which directories that attempt made is unknown now: every one from the file's up to the output directory's parent.
        madeIn = ancestorsUpTo(dir, dirname(root))
      }
      if (!config.overwrite) await unlink(tmp).catch(() => {})
      // The new name, and any directory made for it, durable before the message counts as delivered.
      try {
        for (const d of new Set([dir, ...madeIn])) await io.syncDir(d)
      } catch (e) { throw fsError(e, `cannot sync directory of ${target}`) }
      ctx.log.debug({ messageId: message.id, file: target, bytes: data.length }, 'file written')
      return { excerpt: `wrote ${rel} (${data.length} bytes)` }
    },
  }
}

export default defineComponent({
  type: 'file', kind: 'destination',
  description: 'Writes each message to a file in a directory, atomically (temporary file, then rename) and durably: the file and its directory are synced before the message counts as delivered.',
  configSchema,
  check: (config) => templateProblems(config.filename, '/filename', { balanced: true }),
  create: (config, ctx) => createFileDestination(config, ctx),
})
