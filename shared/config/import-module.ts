import { register } from 'node:module'
import { pathToFileURL } from 'node:url'

/** Running from TypeScript sources (under tsx or vitest, which load `.ts` and resolve `weir` themselves). */
const FROM_SOURCE = import.meta.url.endsWith('.ts')
const TYPESCRIPT = /\.[cm]?ts$/
let hooksRegistered = false
let tsx: Promise<void> | undefined

/**
 * Imports a module of the user's (a component, a script filter) by file path. Weir runs compiled, so
 * the first such module registers module-hooks.js (`weir` resolves to this engine from anywhere), and
 * the first `.ts` one registers tsx: a channel of built-in components alone loads neither.
 */
export async function importModule(path: string): Promise<Record<string, unknown>> {
  if (!FROM_SOURCE) {
    if (!hooksRegistered) {
      const hooks = userModuleHooks()!
      register(hooks.url, { data: hooks.data })
      hooksRegistered = true
    }
    if (TYPESCRIPT.test(path)) await (tsx ??= import('tsx/esm/api').then((m) => void m.register()))
  }
  return (await import(pathToFileURL(path).href)) as Record<string, unknown>
}

/** What a worker thread registers to load a user's module as importModule does (hooks do not reach workers on Node 20); undefined from sources. */
export function userModuleHooks(): { url: string; data: { weir: string } } | undefined {
  if (FROM_SOURCE) return undefined
  return { url: new URL('./module-hooks.js', import.meta.url).href, data: { weir: new URL('../../index.js', import.meta.url).href } }
}

/**
 * One line saying why a module failed to load: the first line of the error, or for a `.ts` module
 * that does not compile, the compiler's line naming the file, line and column ("Transform failed
 * with 1 error:" comes first).
 */
export function loadFailure(e: unknown): string {
  const lines = String((e as Error | undefined)?.message ?? e).split('\n')
  return lines.find((l) => / ERROR: /.test(l)) ?? lines[0]!
}
