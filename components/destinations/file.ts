import { randomBytes } from 'node:crypto'
import { link, mkdir, open, rename, unlink } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { defineComponent, type Message, type ConfigOf } from '../../shared/component.ts'
import { PermanentError, RetryableError } from '../../shared/errors.ts'
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
      description: 'File name template. `{field}` is replaced by a message field (`id`, `channel`, `contentType`, `receivedAt`, `body.<path>`, `attributes.<name>`), made safe for a file name; `/` in the template itself makes subdirectories.',
      examples: ['{id}.json', '{attributes.date}/{body.mrn}-{id}.hl7'],
    },
    overwrite: {
      type: 'boolean', default: true,
      description: 'Replace an existing file of the same name (a redelivery rewrites the same file). When false, an existing file is a permanent error.',
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

/** Filesystem errors an operator can fix (disk full, permissions): retry rather than give up. */
function fsError(e: unknown, what: string): Error {
  const code = (e as NodeJS.ErrnoException).code ?? 'error'
  return new RetryableError(`${what}: ${code}`, { cause: e })
}

export default defineComponent({
  type: 'file', kind: 'destination',
  description: 'Writes each message to a file in a directory, atomically (temporary file, then rename).',
  configSchema,
  check: (config) => templateProblems(config.filename, '/filename', { balanced: true }),
  create(config, ctx) {
    const root = resolve(ctx.channelDir, config.directory)
    const segments = config.filename.split('/').map((seg) => compileTemplate(seg))
    return {
      async deliver(message) {
        const name = segments.map((render) => render(message, safeSegment)).join(sep)
        const target = resolve(root, name)
        const rel = relative(root, target)
        if (!rel || rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel)) throw new PermanentError(`file name "${name}" leaves the output directory`)
        const data = serialize(message, config.jsonIndent)
        const dir = dirname(target)
        try {
          await mkdir(dir, { recursive: true })
        } catch (e) { throw fsError(e, `cannot create directory ${dir}`) }
        // Same directory as the target so the rename is atomic; dot-prefixed so readers skip it.
        const tmp = join(dir, `.${randomBytes(6).toString('hex')}.weir-tmp`)
        try {
          const fh = await open(tmp, 'wx', 0o644)
          try {
            await fh.writeFile(data)
            await fh.datasync()
          } finally { await fh.close() }
          if (config.overwrite) await rename(tmp, target)
          else await link(tmp, target) // fails with EEXIST, atomically, when the file is there
        } catch (e) {
          await unlink(tmp).catch(() => {})
          if ((e as NodeJS.ErrnoException).code === 'EEXIST' && !config.overwrite) throw new PermanentError(`file ${rel} already exists (overwrite is false)`)
          throw fsError(e, `cannot write ${target}`)
        }
        if (!config.overwrite) await unlink(tmp).catch(() => {})
        ctx.log.debug({ messageId: message.id, file: target, bytes: data.length }, 'file written')
        return { excerpt: `wrote ${rel} (${data.length} bytes)` }
      },
    }
  },
})
