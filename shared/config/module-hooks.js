// @ts-check
// Module hooks for the user's own modules (components, script filters), registered by
// import-module.ts with `module.register` the first time one is imported (and by a script filter's
// worker thread, which the main thread's hooks do not reach). Plain JavaScript: hooks run on a thread
// of their own, and these hooks are what loads TypeScript.
//
// - `weir` resolves to the engine that is running, wherever the module lives (/etc/weir/channels has
//   no node_modules/weir), and the module shares that engine's one copy of Weir's code.
// - A `.ts` or `.js` module outside node_modules with no `"type"` in a package.json above it is an
//   ES module (components are written with `import`/`export default`). A `"type": "commonjs"` is kept
//   for `.js`.
// - TypeScript outside node_modules (`.ts`, `.mts`) is compiled here by esbuild, type annotations
//   stripped, whatever imports it: a `.ts` component, or a `.js` one importing a `.ts` helper. As in
//   TypeScript's own resolution, a relative `./helper.js` that does not exist finds `./helper.ts`, and
//   `./helper` (no extension) finds `./helper.ts`, `./helper.js` or an `index` in that directory.

import { fileURLToPath } from 'node:url'

/** @type {string} */
let weir = ''
/** @type {Promise<typeof import('esbuild')> | undefined} */
let esbuild

const TYPESCRIPT = /\.m?ts$/
const RELATIVE = /^\.\.?\//

/** @param {{ weir: string }} data */
export function initialize(data) {
  weir = data.weir
}

/** A user's own file: a file: URL outside node_modules. */
const isUserFile = (/** @type {string | undefined} */ url) => url !== undefined && url.startsWith('file:') && !url.includes('/node_modules/')

/** Where a relative specifier that Node's resolution did not find may be, TypeScript-style. */
function candidates(/** @type {string} */ specifier) {
  const js = /\.(m?)js$/.exec(specifier)
  if (js) return [`${specifier.slice(0, -js[0].length)}.${js[1]}ts`]
  if (/\.(c|m)?[jt]s$|\.json$/.test(specifier)) return []
  const base = specifier.replace(/\/$/, '')
  return [`${base}.ts`, `${base}.js`, `${base}/index.ts`, `${base}/index.js`]
}

/**
 * @typedef {{ url: string, format?: string | null, shortCircuit?: boolean }} Resolved
 * @param {string} specifier
 * @param {{ parentURL?: string, conditions: string[] }} context
 * @param {(specifier: string, context: unknown) => Promise<Resolved>} next
 * @returns {Promise<Resolved>}
 */
export async function resolve(specifier, context, next) {
  if (specifier === 'weir') return { url: weir, shortCircuit: true }
  let resolved
  try {
    resolved = await next(specifier, context)
  } catch (e) {
    const code = /** @type {{ code?: string }} */ (e).code
    if (!RELATIVE.test(specifier) || !isUserFile(context.parentURL) || (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'ERR_UNSUPPORTED_DIR_IMPORT')) throw e
    resolved = await firstFound(candidates(specifier), context, next, e)
  }
  const { url, format } = resolved
  if (!isUserFile(url)) return resolved
  if (TYPESCRIPT.test(url) || (format == null && url.endsWith('.js'))) return { ...resolved, format: 'module' }
  return resolved
}

/**
 * @param {string[]} specifiers
 * @param {{ parentURL?: string, conditions: string[] }} context
 * @param {(specifier: string, context: unknown) => Promise<Resolved>} next
 * @param {unknown} notFound what to throw when none resolves: Node's own error for the specifier as written
 */
async function firstFound(specifiers, context, next, notFound) {
  for (const s of specifiers) {
    try {
      return await next(s, context)
    } catch { /* the next candidate */ }
  }
  throw notFound
}

/**
 * @param {string} url
 * @param {{ format?: string | null }} context
 * @param {(url: string, context: unknown) => Promise<{ format?: string | null, source?: string | ArrayBuffer | ArrayBufferView | null }>} next
 */
export async function load(url, context, next) {
  if (!TYPESCRIPT.test(url) || !isUserFile(url)) return next(url, context)
  const loaded = await next(url, { ...context, format: 'module' })
  const source = typeof loaded.source === 'string' ? loaded.source : new TextDecoder().decode(/** @type {Uint8Array} */ (loaded.source))
  const { transform } = await (esbuild ??= import('esbuild'))
  // A compile error's message names the file, line and column ("<file>:2:59: ERROR: …").
  const out = await transform(source, { loader: 'ts', format: 'esm', target: 'node20', sourcefile: fileURLToPath(url), sourcemap: 'inline' })
  return { format: 'module', source: out.code, shortCircuit: true }
}
