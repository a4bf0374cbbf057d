import { pathToFileURL } from 'node:url'

/** Running from TypeScript sources (under tsx or vitest): a `.ts` module loads as it is. */
const FROM_SOURCE = import.meta.url.endsWith('.ts')
const TYPESCRIPT = /\.[cm]?ts$/
let tsx: Promise<void> | undefined

/**
 * Imports a module of the user's (a component, a script filter) by file path. Weir itself runs
 * compiled, so a `.ts` module needs a TypeScript loader: tsx is registered for the process the first
 * time one is imported, and never when a channel names only `.js` modules.
 */
export async function importModule(path: string): Promise<Record<string, unknown>> {
  if (!FROM_SOURCE && TYPESCRIPT.test(path)) await (tsx ??= import('tsx/esm/api').then((m) => void m.register()))
  return (await import(pathToFileURL(path).href)) as Record<string, unknown>
}
