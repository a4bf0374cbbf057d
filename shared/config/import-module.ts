import { register } from 'node:module'
import { dirname, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Plugin } from 'esbuild'

/** Running from TypeScript sources (under tsx or vitest, which load `.ts` and resolve `weir` themselves). */
const FROM_SOURCE = import.meta.url.endsWith('.ts')
let hooksRegistered = false

/**
 * Imports a module of the user's (a component, a script filter) by file path. Weir runs compiled, so
 * the first such module registers module-hooks.js: `weir` resolves to this engine from anywhere, and
 * TypeScript (a `.ts` component, or a `.ts` helper that a `.js` one imports) is compiled by esbuild
 * as it loads. A channel of built-in components alone registers nothing.
 */
export async function importModule(path: string): Promise<Record<string, unknown>> {
  if (!FROM_SOURCE && !hooksRegistered) {
    const hooks = userModuleHooks()!
    register(hooks.url, { data: hooks.data })
    // Stack traces of the user's TypeScript point at its own lines (the compiled code carries a source map).
    process.setSourceMapsEnabled(true)
    hooksRegistered = true
  }
  return (await import(pathToFileURL(path).href)) as Record<string, unknown>
}

/** What a worker thread registers to load a user's module as importModule does (hooks do not reach workers on Node 20); undefined from sources. */
export function userModuleHooks(): { url: string; data: { weir: string } } | undefined {
  if (FROM_SOURCE) return undefined
  return { url: new URL('./module-hooks.js', import.meta.url).href, data: { weir: new URL('../../index.js', import.meta.url).href } }
}

/**
 * One line saying why the module at `path` failed to load: the first line of the error, or for one
 * that does not parse, the line naming the file, line and column. A `.ts` module's compile error
 * carries it ("Transform failed with 1 error:" comes first); for JavaScript, V8's SyntaxError names
 * neither file nor line, so the module and the relative imports it reaches are parsed again to find it.
 */
export async function loadFailure(e: unknown, path: string): Promise<string> {
  const lines = String((e as Error | undefined)?.message ?? e).split('\n')
  const located = lines.find((l) => / ERROR: /.test(l))
  if (located) return located
  return ((e as Error | undefined)?.name === 'SyntaxError' ? await syntaxErrorAt(path) : undefined) ?? lines[0]!
}

/** `import … from 'file:///…'` (the test harness's module stubs) is followed to the file. */
const FILE_URLS: Plugin = { name: 'file-urls', setup: (b) => void b.onResolve({ filter: /^file:/ }, (a) => ({ path: fileURLToPath(a.path) })) }

interface EsbuildFailure { errors?: Array<{ text: string; location?: { file: string; line: number; column: number } | null }> }

/**
 * Errors of esbuild's that are not about the syntax: it resolves and links imports its own way, and
 * Node's resolution has already succeeded.
 */
const NOT_SYNTAX = /^(Could not resolve|No loader is configured|No matching export|.* is not exported)/

/**
 * esbuild's first parse error in `path` or a relative import of it, as "<file>:<line>:<column>:
 * ERROR: <text>"; undefined when it parses, or when esbuild cannot tell (it never throws).
 */
async function syntaxErrorAt(path: string): Promise<string | undefined> {
  const cwd = dirname(path)
  try {
    const { build } = await import('esbuild')
    await build({ entryPoints: [path], absWorkingDir: cwd, bundle: true, write: false, packages: 'external', platform: 'node', format: 'esm', logLevel: 'silent', plugins: [FILE_URLS] })
    return undefined
  } catch (e) {
    const first = (e as EsbuildFailure).errors?.find((x) => !NOT_SYNTAX.test(x.text))
    return first?.location ? `${resolve(cwd, first.location.file)}:${first.location.line}:${first.location.column}: ERROR: ${first.text}` : undefined
  }
}
