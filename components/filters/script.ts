import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Logger } from '../../shared/log/index.ts'
import { defineComponent, type Message, type ConfigOf } from '../../shared/component.ts'
import { ConfigError, PermanentError, isWeirError } from '../../shared/errors.ts'

/** What a script's default export receives as its second argument. */
export interface ScriptContext {
  channel: string
  log: Logger
  /** The `options` object of the filter's config. */
  options: Readonly<Record<string, unknown>>
  signal: AbortSignal
}

/**
 * A script's default export. Return:
 * - a message (`{ ...message, body }`; any object with a `body` property, the missing fields taken from the input),
 * - an array of such messages (several messages; an empty array drops it),
 * - `null` to drop (filter) the message.
 * `undefined` is an error, so a forgotten `return` does not silently drop everything. Throwing puts the message in
 * error state with the error's message as the reason. When several messages come back, the runtime gives each its own
 * id (`<id>.<index>`).
 */
export type ScriptFunction = (message: Message, ctx: ScriptContext) => unknown

const configSchema = {
  type: 'object', additionalProperties: false, required: ['module'],
  properties: {
    module: {
      type: 'string', minLength: 1, pattern: '\\.(m?[jt]s)$',
      description: 'Path of the script module (.ts, .mts, .js or .mjs, no build step), relative to the channel file. Its default export is `(message, ctx) => message | message[] | null`.',
      examples: ['./scripts/split-orders.ts'],
    },
    options: {
      type: 'object', default: {},
      description: 'Free-form settings passed to the script as `ctx.options`.',
    },
  },
} as const

export type ScriptConfig = ConfigOf<typeof configSchema>

function toMessages(result: unknown, input: Message, module: string): Message | Message[] | null {
  if (result === null) return null
  if (result === undefined) throw new PermanentError(`script ${module} returned undefined; return null to drop the message`)
  const one = (r: unknown, where: string): Message => {
    if (typeof r !== 'object' || r === null || Array.isArray(r) || !('body' in r)) {
      throw new PermanentError(`script ${module} returned ${where}${Array.isArray(r) ? 'an array' : typeof r} where a message ({ body, … }) was expected`)
    }
    const m = r as Partial<Message>
    // id and channel belong to the runtime; a script cannot change them.
    return {
      id: input.id, channel: input.channel,
      body: m.body,
      contentType: typeof m.contentType === 'string' ? m.contentType : input.contentType,
      attributes: m.attributes && typeof m.attributes === 'object' ? { ...m.attributes } : input.attributes,
      receivedAt: input.receivedAt,
    }
  }
  if (Array.isArray(result)) return result.length === 0 ? null : result.map((r, i) => one(r, `at [${i}] `))
  return one(result, '')
}

export default defineComponent({
  type: 'script', kind: 'filter',
  description: 'Runs a user module (.ts or .js, no build step) on each message; it returns the message, several messages, or null to drop it.',
  configSchema,
  async create(config, ctx) {
    const path = resolve(ctx.channelDir, config.module)
    if (!existsSync(path)) throw new ConfigError([{ file: path, pointer: '', message: `script module "${config.module}" not found` }])
    let mod: { default?: unknown }
    try {
      // .ts loads without a build step: the CLI runs under tsx, vitest transforms it itself.
      mod = (await import(pathToFileURL(path).href)) as { default?: unknown }
    } catch (e) {
      throw new ConfigError([{ file: path, pointer: '', message: `script module cannot be loaded: ${(e as Error).message}` }])
    }
    if (typeof mod.default !== 'function') throw new ConfigError([{ file: path, pointer: '', message: 'script module has no default export function (message, ctx) => message | message[] | null' }])
    const fn = mod.default as ScriptFunction
    const sctx: ScriptContext = Object.freeze({ channel: ctx.channel, log: ctx.log.child({ script: config.module }), options: config.options, signal: ctx.signal })
    return {
      async process(message: Message) {
        let result: unknown
        try {
          result = await fn(message, sctx)
        } catch (e) {
          if (isWeirError(e)) throw e
          throw new PermanentError(`script ${config.module} threw: ${(e as Error)?.message ?? String(e)}`, { cause: e })
        }
        return toMessages(result, message, config.module)
      },
    }
  },
})
