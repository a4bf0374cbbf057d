import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { Worker } from 'node:worker_threads'
import type { Logger } from '../../shared/log/index.ts'
import { defineComponent, type Message, type ConfigOf } from '../../shared/component.ts'
import { importModule, loadFailure, userModuleHooks } from '../../shared/config/import-module.ts'
import { ConfigError, PermanentError, RetryableError, errorCodes, isWeirError } from '../../shared/errors.ts'
import { classify } from '../../shared/failure.ts'

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
 * error state with the error's message as the reason; as for every component, a `RetryableError`, an error marked
 * `retryable: true` and a network failure (a `fetch` refused or reset) are retried instead. When several messages come back,
 * the runtime gives each its own id (`<id>.<index>`).
 *
 * With isolation "worker" (the default) the function runs in a worker thread: the message and the result cross by
 * structured clone (plain data), `ctx.log` lines go to the engine's log, and `process.env` holds only the filter's `env`.
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
    isolation: {
      enum: ['worker', 'none'], default: 'worker',
      description: '`worker`: the script runs in a worker thread of its own, with only the `env` variables, bounded by `timeoutMs`; it cannot read the engine\'s secrets from memory or the environment, and a busy loop cannot block other channels (it can still use the file system and the network). `none`: it runs in the engine\'s thread, with everything the engine can reach, and no timeout; faster, for trusted scripts only.',
    },
    timeoutMs: {
      type: 'integer', minimum: 1, default: 5000,
      description: 'With isolation "worker": the longest one message may take (ms). Past it the worker is terminated and restarted, and the message (with any others in that worker) fails with a retryable error.',
    },
    env: {
      type: 'array', default: [], uniqueItems: true,
      items: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'An environment variable name.' },
      description: 'With isolation "worker": the only environment variables the script sees in `process.env` (those that are set). Nothing else of the engine\'s environment reaches it.',
      examples: [['LOOKUP_URL']],
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

const WORKER = new URL('./script-worker.js', import.meta.url)
type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'
interface Pending { resolve: (v: unknown) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout }
interface ThreadSpec { path: string; module: string; channel: string; options: unknown; env: Record<string, string>; timeoutMs: number; log: Logger }

/**
 * A script's failure as the runtime needs it: a Weir error keeps its message, anything else is named as the
 * script's. Whether it is retried is decided by classify(), the rule the runtime applies to every filter and
 * destination (the error's own `retryable`, else a network failure is retried, else it is permanent), so a
 * lookup service that is briefly down does not put messages in error.
 */
function scriptError(module: string, e: unknown): Error {
  const { retryable, retryAfterMs } = classify(e)
  const message = isWeirError(e) ? e.message : `script ${module} threw: ${(e as Error | null)?.message ?? String(e)}`
  const options = { cause: e, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) }
  return retryable ? new RetryableError(message, options) : new PermanentError(message, options)
}

/** A value the script threw, as its worker reports it (script-worker.js `errorOf`); `causes`: the codes along its cause chain. */
interface WorkerError { message: string; code?: string; retryable?: boolean; retryAfterMs?: number; causes?: Array<string | null> }

/**
 * The worker's report rebuilt as an error that classify() reads as it would the original: its message, code,
 * `retryable` and `retryAfterMs`, and a cause chain that holds only the codes (nothing more crosses the thread).
 */
function rebuilt(w: WorkerError): Error {
  const { causes = [], ...reported } = w
  const cause = causes.reduceRight<object | undefined>((inner, code) => ({ ...(code === null ? {} : { code }), ...(inner ? { cause: inner } : {}) }), undefined)
  return Object.assign(new Error(reported.message, cause ? { cause } : undefined), reported)
}

/**
 * The worker thread (script-worker.js) a script runs in: one per filter, started at create(),
 * restarted after a timeout or a crash. One postMessage round trip per message.
 */
class ScriptThread {
  #worker: Worker | undefined
  #ready: Promise<void> | undefined
  readonly #pending = new Map<number, Pending>()
  #next = 0

  constructor(private readonly spec: ThreadSpec) {}

  /** Starts the worker (once) and waits until the module is loaded; a module that cannot load is a ConfigError. */
  ready(): Promise<void> {
    return (this.#ready ??= this.#start())
  }

  #start(): Promise<void> {
    const { path, channel, options, env } = this.spec
    const worker = new Worker(WORKER, { workerData: { path, channel, options, hooks: userModuleHooks() }, env })
    worker.unref() // the engine's own handles decide when the process ends
    this.#worker = worker
    return new Promise<void>((resolve, reject) => {
      // A module that cannot load is reported as such, not as the worker's exit that follows.
      let loadFailed = false
      worker.on('message', (m: unknown[]) => {
        if (m[0] === 'ready') resolve()
        else if (m[0] === 'load-error') {
          loadFailed = true
          const e = m[1] as LoadError
          void loadErrorText(e, path).catch(() => e.message).then((message) => {
            reject(new ConfigError([{ file: path, pointer: '', message }]))
            this.#restart('')
          })
        } else if (m[0] === 'log') this.spec.log[m[1] as LogLevel](m[2] as object, m[3] as string | undefined)
        else this.#settle(m[0] as number, m[1] as boolean, m[2])
      })
      const lost = (why: string) => {
        if (loadFailed) return
        reject(new RetryableError(`script ${this.spec.module}: ${why}`))
        if (worker === this.#worker) this.#restart(`script ${this.spec.module}: ${why}`)
      }
      worker.on('error', (e) => lost(`worker failed: ${e.message}`))
      worker.on('exit', (code) => lost(`worker exited (code ${code})`))
    })
  }

  #settle(id: number, ok: boolean, value: unknown): void {
    const p = this.#pending.get(id)
    if (!p) return
    this.#pending.delete(id)
    clearTimeout(p.timer)
    if (ok) p.resolve(value)
    else p.reject(scriptError(this.spec.module, rebuilt(value as WorkerError)))
  }

  /** Terminates the worker; every message still in it fails with `reason` (retryable). The next message starts a new one. */
  #restart(reason: string): void {
    const worker = this.#worker
    this.#worker = undefined
    this.#ready = undefined
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer)
      this.#pending.delete(id)
      p.reject(new RetryableError(reason))
    }
    void worker?.terminate()
  }

  /** The script's result for `message`, from the worker. */
  async run(message: Message): Promise<unknown> {
    await this.ready()
    const worker = this.#worker!
    const id = this.#next++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new RetryableError(`script ${this.spec.module} did not finish within ${this.spec.timeoutMs} ms; its worker was restarted`))
        this.#restart(`script ${this.spec.module}: worker restarted after another message timed out`)
      }, this.spec.timeoutMs)
      this.#pending.set(id, { resolve, reject, timer })
      try {
        worker.postMessage([id, message])
      } catch (e) {
        this.#settle(id, false, { message: `the message cannot be passed to the script thread: ${(e as Error).message}` })
      }
    })
  }

  /** Aborts the script's `ctx.signal` (best effort) and ends the thread. */
  close(): void {
    this.#worker?.postMessage(['stop'])
    this.#restart(`script ${this.spec.module}: filter closed`)
  }
}

/** The environment a worker gets: the listed variables that are set, and nothing else. */
function allowedEnv(names: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {}
  for (const name of names) if (process.env[name] !== undefined) env[name] = process.env[name]!
  return env
}

/** Why a script module is unusable, from its worker or the engine's thread; `failed`: it did not load. */
interface LoadError { message: string; name?: string; failed?: boolean }

/** One line for a script module that cannot be used; a module that does not parse is named with its line and column. */
async function loadErrorText(e: LoadError, path: string): Promise<string> {
  return e.failed ? `script module cannot be loaded: ${await loadFailure(e, path)}` : e.message
}

/** Loads the module in the engine's thread (isolation "none"). */
async function loadInProcess(path: string): Promise<ScriptFunction> {
  let mod: { default?: unknown }
  try {
    mod = await importModule(path)
  } catch (e) {
    throw new ConfigError([{ file: path, pointer: '', message: await loadErrorText({ message: (e as Error).message, name: (e as Error).name, failed: true }, path) }])
  }
  if (typeof mod.default !== 'function') throw new ConfigError([{ file: path, pointer: '', message: 'script module has no default export function (message, ctx) => message | message[] | null' }])
  return mod.default as ScriptFunction
}

export default defineComponent({
  type: 'script', kind: 'filter',
  description: 'Runs a user module (.ts or .js, no build step) on each message, in a worker thread by default; it returns the message, several messages, or null to drop it.',
  configSchema,
  check(config, { channelDir }) {
    return existsSync(resolve(channelDir, config.module)) ? [] : [['/module', `script module not found: ${resolve(channelDir, config.module)}`]]
  },
  async create(config, ctx) {
    const path = resolve(ctx.channelDir, config.module)
    if (!existsSync(path)) throw new ConfigError([{ file: path, pointer: '', message: `script module "${config.module}" not found` }])
    const log = ctx.log.child({ script: config.module })
    if (config.isolation === 'worker') {
      const thread = new ScriptThread({ path, module: config.module, channel: ctx.channel, options: config.options, env: allowedEnv(config.env), timeoutMs: config.timeoutMs, log })
      await thread.ready()
      return {
        async process(message: Message) {
          return toMessages(await thread.run(message), message, config.module)
        },
        close: () => thread.close(),
      }
    }
    const fn = await loadInProcess(path)
    const sctx: ScriptContext = Object.freeze({ channel: ctx.channel, log, options: config.options, signal: ctx.signal })
    return {
      async process(message: Message) {
        let result: unknown
        try {
          result = await fn(message, sctx)
        } catch (e) {
          // A Weir error (one of the HTTP client's, a RetryableError) keeps its code for the message log.
          if (isWeirError(e)) throw e
          throw scriptError(config.module, e)
        }
        return toMessages(result, message, config.module)
      },
    }
  },
})
