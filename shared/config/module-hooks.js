// @ts-check
// Module hooks for the user's own modules (components, in-process script filters), registered by
// import-module.ts with `module.register` the first time one is imported. Plain JavaScript: hooks
// run on a thread of their own, before any TypeScript loader.
//
// - `weir` resolves to the engine that is running, wherever the module lives (/etc/weir/channels has
//   no node_modules/weir), and the module shares that engine's one copy of Weir's code.
// - A `.ts` or `.js` module outside node_modules with no `"type"` in a package.json above it is an
//   ES module (components are written with `import`/`export default`): once tsx is registered it
//   would compile such a file as CommonJS, which then fails to load. A `"type": "commonjs"` is kept.

/** @type {string} */
let weir = ''

/** @param {{ weir: string }} data */
export function initialize(data) {
  weir = data.weir
}

/**
 * @param {string} specifier
 * @param {{ parentURL?: string, conditions: string[] }} context
 * @param {(specifier: string, context: unknown) => Promise<{ url: string, format?: string | null }>} next
 */
export async function resolve(specifier, context, next) {
  if (specifier === 'weir') return { url: weir, shortCircuit: true }
  const resolved = await next(specifier, context)
  const { url, format } = resolved
  if (format == null && url.startsWith('file:') && /\.[jt]s$/.test(url) && !url.includes('/node_modules/')) return { ...resolved, format: 'module' }
  return resolved
}
