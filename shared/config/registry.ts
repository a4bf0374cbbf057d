import { existsSync } from 'node:fs'
import { resolve, isAbsolute } from 'node:path'
import type { ComponentDefinition, ComponentKind } from '../component.ts'
import { errorCodes } from '../errors.ts'
import { compileSchema } from './ajv.ts'
import { importModule, loadFailure } from './import-module.ts'

const KINDS: readonly ComponentKind[] = ['source', 'filter', 'destination']

/** The components a channel may name, by type. Isolated per instance, no global state. */
export interface Registry {
  get(type: string): ComponentDefinition | undefined
  list(kind?: ComponentKind): ComponentDefinition[]
}

/** What is wrong with a would-be component definition, one phrase per missing or invalid part. */
export function contractProblems(def: unknown): string[] {
  if (typeof def !== 'object' || def === null) return ['the default export is not an object made with defineComponent()']
  const d = def as Record<string, unknown>
  const out: string[] = []
  if (typeof d.type !== 'string' || d.type === '') out.push('missing "type" (a string)')
  if (!KINDS.includes(d.kind as ComponentKind)) out.push('missing "kind" ("source", "filter" or "destination")')
  if (typeof d.description !== 'string' || d.description === '') out.push('missing "description" (a string)')
  if (typeof d.configSchema !== 'object' || d.configSchema === null) out.push('missing "configSchema" (a JSON Schema object)')
  if (typeof d.create !== 'function') out.push('missing create() (a function)')
  if (d.check !== undefined && typeof d.check !== 'function') out.push('"check" must be a function')
  if (d.cluster !== undefined && d.cluster !== 'every-engine' && d.cluster !== 'one-engine') out.push('"cluster" must be "every-engine" or "one-engine"')
  return out
}

function compileOrThrow(def: ComponentDefinition, where: string): void {
  try {
    compileSchema(def.configSchema)
  } catch (e) {
    throw new errorCodes.ERR_COMPONENT_INVALID(`${where} has an invalid configSchema: ${(e as Error).message}`, { cause: e })
  }
}

/**
 * Builds a registry from a static list of definitions. Throws on a duplicate type or an invalid
 * schema, compiling every schema now so a broken component fails at start-up, not mid-stream.
 */
export function createRegistry(definitions: readonly ComponentDefinition[]): Registry {
  const byType = new Map<string, ComponentDefinition>()
  for (const def of definitions) {
    const problems = contractProblems(def)
    if (problems.length) throw new errorCodes.ERR_COMPONENT_INVALID(`built-in component ${JSON.stringify((def as { type?: unknown })?.type)} is not valid: ${problems.join(', ')}`)
    if (byType.has(def.type)) throw new errorCodes.ERR_COMPONENT_INVALID(`duplicate component type "${def.type}"`)
    compileOrThrow(def, `component "${def.type}"`)
    byType.set(def.type, def)
  }
  return {
    get: (type) => byType.get(type),
    list: (kind) => [...byType.values()].filter((d) => !kind || d.kind === kind).sort((a, b) => a.type.localeCompare(b.type)),
  }
}

/** True when a channel's `type` names a module rather than a built-in. */
export function isModuleReference(type: string): boolean {
  return type.startsWith('./') || type.startsWith('../') || isAbsolute(type) || /\.(m?[jt]s)$/.test(type)
}

/**
 * Loads a user component from a `.ts` or `.js` file, relative to `baseDir`, with no build step
 * (TypeScript compiled as it loads, see importModule). Throws ERR_COMPONENT_INVALID naming the module
 * and what is missing.
 */
export async function loadComponentModule(ref: string, baseDir: string, kind?: ComponentKind): Promise<ComponentDefinition> {
  const path = resolve(baseDir, ref)
  if (!existsSync(path)) throw new errorCodes.ERR_COMPONENT_INVALID(`module "${ref}" not found (looked for ${path})`)
  let mod: Record<string, unknown>
  try {
    mod = await importModule(path)
  } catch (e) {
    throw new errorCodes.ERR_COMPONENT_INVALID(`module "${ref}" could not be loaded: ${await loadFailure(e, path)}`, { cause: e })
  }
  const def = mod.default
  const problems = contractProblems(def)
  if (problems.length) throw new errorCodes.ERR_COMPONENT_INVALID(`module "${ref}" is not a valid component: ${problems.join(', ')}`)
  const d = def as ComponentDefinition
  if (kind && d.kind !== kind) throw new errorCodes.ERR_COMPONENT_INVALID(`module "${ref}" is a ${d.kind}, not a ${kind}`)
  compileOrThrow(d, `module "${ref}"`)
  return d
}
