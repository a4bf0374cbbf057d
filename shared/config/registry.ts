import { existsSync } from 'node:fs'
import { resolve, isAbsolute } from 'node:path'
import type { ComponentContext, ComponentDefinition, ComponentKind } from '../component.ts'
import { errorCodes, isWeirError } from '../errors.ts'
import { describeFailure } from '../failure.ts'
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

/** The methods an instance of each kind must have, and those it may have. */
const INSTANCE_METHODS: Readonly<Record<ComponentKind, { required: readonly string[]; optional: readonly string[] }>> = {
  source: { required: ['start', 'stop'], optional: ['address', 'tick'] },
  filter: { required: ['process'], optional: ['close'] },
  destination: { required: ['deliver'], optional: ['close'] },
}

/** A value's kind in words, for messages: `undefined`, `null`, `an array`, `a string`, `an object`… */
export function kindOf(v: unknown): string {
  if (v === undefined || v === null) return String(v)
  if (Array.isArray(v)) return 'an array'
  const t = typeof v
  return t === 'object' ? 'an object' : `a ${t}`
}

/** What is wrong with the instance a component's `create()` returned, or undefined when it meets the contract of its kind. */
export function instanceProblem(kind: ComponentKind, instance: unknown): string | undefined {
  const { required, optional } = INSTANCE_METHODS[kind]
  const methods = (names: readonly string[]) => names.map((n) => `${n}()`).join(' and ')
  if (typeof instance !== 'object' || instance === null || Array.isArray(instance)) return `create() returned ${kindOf(instance)}; expected an object with ${methods(required)}`
  const o = instance as Record<string, unknown>
  const missing = required.filter((n) => typeof o[n] !== 'function')
  if (missing.length) return `create() returned an object without ${methods(missing)}`
  const wrong = optional.filter((n) => o[n] !== undefined && typeof o[n] !== 'function')
  if (wrong.length) return `create() returned an object whose ${wrong.join(' and ')} ${wrong.length > 1 ? 'are not functions' : 'is not a function'}`
  return undefined
}

/** Errors thrown by `create()` that say something about the engine or are already located: passed on as they are. */
const KEPT_CREATE_ERRORS: ReadonlySet<string> = new Set(['ERR_SHUTDOWN', 'ERR_STORE', 'ERR_INTERNAL', 'ERR_CONFIG_INVALID', 'ERR_COMPONENT_INVALID'])

/**
 * What to throw when a component's `create()` threw `e`: ERR_COMPONENT_INVALID naming the component
 * (`where`) and the reason (with, for a bug, where in the user's code, relative to `dir`), or `e`
 * itself when it is about the engine (stopping, its store) or already names where it is.
 */
export function createFailure(e: unknown, where: string, dir: string): unknown {
  if (isWeirError(e) && KEPT_CREATE_ERRORS.has(e.code)) return e
  return new errorCodes.ERR_COMPONENT_INVALID(`${where}: create() failed: ${describeFailure(e, dir)}`, { cause: e })
}

/** Where a definition loaded by module path came from (see `loadComponentModule`). */
interface ModuleOrigin {
  /** The path as the channel wrote it (`./x.ts`). */
  ref: string
  /** The module's default export, unwrapped. */
  original: ComponentDefinition
}
const origins = new WeakMap<ComponentDefinition, ModuleOrigin>()
const wrapped = new WeakMap<ComponentDefinition, Map<string, ComponentDefinition>>()

/** How messages name a component: `module "./x.ts"` when loaded by path, otherwise `component "<type>"`. */
export function componentLabel(def: ComponentDefinition): string {
  const o = origins.get(def)
  return o ? `module "${o.ref}"` : `component "${def.type}"`
}

/**
 * The definition of a module, with a `create()` that holds the instance to the contract: the check
 * is in the definition itself so that whoever wraps the instance (the test harness records calls)
 * cannot hide a missing method. A failure is ERR_COMPONENT_INVALID naming the module.
 */
function contractChecked(def: ComponentDefinition, ref: string, baseDir: string): ComponentDefinition {
  const byRef = wrapped.get(def) ?? new Map<string, ComponentDefinition>()
  wrapped.set(def, byRef)
  const known = byRef.get(ref)
  if (known) return known
  const where = `module "${ref}"`
  const checked: ComponentDefinition = {
    ...def,
    async create(config: never, ctx: ComponentContext) {
      let instance: unknown
      try {
        instance = await def.create(config, ctx)
      } catch (e) {
        throw createFailure(e, where, baseDir)
      }
      const problem = instanceProblem(def.kind, instance)
      if (problem) throw new errorCodes.ERR_COMPONENT_INVALID(`${where}: ${problem}`)
      return instance as never
    },
  }
  byRef.set(ref, checked)
  origins.set(checked, { ref, original: def })
  return checked
}

/**
 * Whether a module's type clashes, within one channel: with a built-in's, or with another module's
 * (`seen`, by type: the first module with it and its pointer). The same module used twice is fine.
 * Returns the problem, or undefined after noting the module in `seen`.
 */
export function moduleTypeProblem(def: ComponentDefinition, registry: Registry, seen: Map<string, { def: ComponentDefinition; pointer: string }>, pointer: string): string | undefined {
  const label = componentLabel(def)
  const builtin = registry.get(def.type)
  if (builtin) return `${label} has type "${def.type}", the type of a built-in ${builtin.kind}; give it a type of its own`
  const first = seen.get(def.type)
  if (!first) {
    seen.set(def.type, { def, pointer })
    return undefined
  }
  const original = (d: ComponentDefinition) => origins.get(d)?.original ?? d
  if (original(first.def) === original(def)) return undefined
  return `${label} has type "${def.type}", as does ${componentLabel(first.def)} (${first.pointer}); give each component a type of its own`
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
 * and what is missing. The definition returned checks, when it creates an instance, that the
 * instance has the methods of its kind (see `contractChecked`).
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
  return contractChecked(d, ref, baseDir)
}
