// @ts-check
// The thread a `script` filter runs its module in (isolation "worker", the default). Its own module
// graph and globals, and a process.env holding only the variables the filter's `env` lists: the
// script cannot read the engine's secrets from memory or the environment, and a busy loop blocks
// this thread, not the engine's event loop (the filter terminates it after `timeoutMs`).
//
// Plain JavaScript (type-checked through JSDoc): a thread started on a .ts entry would need a
// TypeScript loader of its own. A .ts script module does: the engine's module hooks compile it when
// the engine runs compiled; from Weir's own sources (tests) tsx loads it.
//
// Protocol: the parent posts [id, message]; this thread answers [id, true, result] or
// [id, false, { message, code?, retryable?, retryAfterMs?, causes? }] (causes: the codes along the
// error's cause chain), and ['log', level, fields, msg] for the script's log lines. The first post
// is ['ready'] or ['load-error', { message, name?, failed? }].
import { register } from 'node:module'
import { parentPort, workerData } from 'node:worker_threads'
import { pathToFileURL } from 'node:url'

const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort)
/** @typedef {{ url: string, data: { weir: string } }} Hooks shared/config/import-module.ts's userModuleHooks(): `weir` resolves to the engine */
const { path, channel, options, hooks } = /** @type {{ path: string, channel: string, options: Record<string, unknown>, hooks?: Hooks }} */ (workerData)
if (hooks) {
  register(hooks.url, { data: hooks.data })
  process.setSourceMapsEnabled(true)
}
const LEVELS = /** @type {const} */ (['trace', 'debug', 'info', 'warn', 'error', 'fatal'])

/** A value the structured clone accepts (a log field may hold a function or a socket). */
/** @returns {Record<string, unknown> | string} */
function cloneable(/** @type {unknown} */ value) {
  try {
    return /** @type {Record<string, unknown>} */ (structuredClone(value))
  } catch {
    return String(value)
  }
}

/** A pino-shaped logger whose lines go to the parent's logger. @returns {Record<string, unknown>} */
function logger(/** @type {Record<string, unknown>} */ bindings) {
  /** @type {Record<string, unknown>} */
  const log = { child: (/** @type {Record<string, unknown>} */ more) => logger({ ...bindings, ...more }) }
  for (const level of LEVELS) {
    log[level] = (/** @type {unknown} */ a, /** @type {unknown} */ b) => {
      const fields = typeof a === 'object' && a !== null ? { ...bindings, ...Object(cloneable(a)) } : bindings
      const msg = typeof a === 'string' ? a : typeof b === 'string' ? b : undefined
      port.postMessage(['log', level, fields, msg])
    }
  }
  return log
}

/** Links of a cause chain reported back: more than classify() (engine/runtime/failures.ts) reads, and a bound on a cycle. */
const MAX_CAUSES = 8

/**
 * The string `code` of each error along `e`'s cause chain (null where a link has none): what the parent needs to
 * rebuild the chain classify() walks, so a `fetch` that failed with `cause.code` ECONNREFUSED is retried as it would
 * be in the engine's thread. Only codes cross: a cause's message, stack and other properties stay in this thread.
 */
function causeCodes(/** @type {unknown} */ e) {
  /** @type {(string | null)[]} */
  const codes = []
  for (let x = /** @type {{ cause?: unknown }} */ (Object(e)).cause; typeof x === 'object' && x !== null && codes.length < MAX_CAUSES; x = /** @type {{ cause?: unknown }} */ (x).cause) {
    const code = /** @type {{ code?: unknown }} */ (x).code
    codes.push(typeof code === 'string' ? code : null)
  }
  return codes
}

/** What crosses back to the parent of a thrown value: its text and what decides whether it is retried (`retryable`, `retryAfterMs`, codes). */
function errorOf(/** @type {unknown} */ e) {
  const err = /** @type {{ message?: unknown, code?: unknown, retryable?: unknown, retryAfterMs?: unknown }} */ (typeof e === 'object' && e !== null ? e : {})
  const causes = causeCodes(e)
  return {
    message: typeof err.message === 'string' ? err.message : String(e),
    ...(typeof err.code === 'string' ? { code: err.code } : {}),
    ...(typeof err.retryable === 'boolean' ? { retryable: err.retryable } : {}),
    ...(typeof err.retryAfterMs === 'number' ? { retryAfterMs: err.retryAfterMs } : {}),
    ...(causes.length ? { causes } : {}),
  }
}

/** The module's default export; a .ts module that tsx loads as CommonJS (no `"type": "module"` nearby) has it one level down. */
async function load() {
  const url = pathToFileURL(path).href
  const mod = /** @type {{ default?: { default?: unknown } }} */ (!hooks && /\.m?ts$/.test(path) ? await (await import('tsx/esm/api')).tsImport(url, import.meta.url) : await import(url))
  return typeof mod.default !== 'function' && typeof mod.default?.default === 'function' ? mod.default.default : mod.default
}

/** @type {unknown} */
let fn
/** @type {{ message: string, name?: string, failed?: boolean } | undefined} why the module is unusable; `failed`: it did not load (the parent names where) */
let loadError
try {
  fn = await load()
  if (typeof fn !== 'function') loadError = { message: 'script module has no default export function (message, ctx) => message | message[] | null' }
} catch (e) {
  loadError = { message: errorOf(e).message, name: /** @type {{ name?: string }} */ (Object(e)).name, failed: true }
}
if (loadError) port.postMessage(['load-error', loadError])
else {
  const script = /** @type {(message: unknown, ctx: unknown) => unknown} */ (fn)
  const abort = new AbortController()
  const ctx = Object.freeze({ channel, log: logger({}), options, signal: abort.signal })
  port.on('message', async (/** @type {[number, unknown] | ['stop']} */ msg) => {
    if (msg[0] === 'stop') return abort.abort()
    const [id, message] = msg
    try {
      const result = await script(message, ctx)
      // A result the structured clone refuses (a function, a class instance with private state) throws here.
      port.postMessage([id, true, result])
    } catch (e) {
      port.postMessage([id, false, errorOf(e)])
    }
  })
  port.postMessage(['ready'])
}
