import type { ErrorObject } from 'ajv'
import type { ConfigProblem } from '../errors.ts'
import { PATTERN_MEANINGS } from './patterns.ts'

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!
    prev[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1))
      diag = tmp
    }
  }
  return prev[b.length]!
}

/** The closest of `candidates` to `name`, when it is close enough to be a plausible typo. */
/** "unknown credential "x"; did you mean "y"?; defined: a, b": a reference to a credential that is not defined. */
export function unknownCredential(name: string, defined: readonly string[]): string {
  const guess = nearest(name, defined)
  return `unknown credential "${name}"` + (guess ? `; did you mean "${guess}"?` : '') + `; defined: ${defined.join(', ') || '(none)'}`
}

export function nearest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase())
    if (d < bestD) { best = c; bestD = d }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined
}

const isSecretRef = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && ('$env' in v || '$file' in v)

function describeBranch(s: Record<string, unknown>): string {
  const props = s.properties as Record<string, unknown> | undefined
  if (props && '$env' in props) return '{"$env": "NAME"}'
  if (props && '$file' in props) return '{"$file": "path"}'
  if ('const' in s) return JSON.stringify(s.const)
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(', ')
  if (typeof s.type === 'string') return s.type === 'object' && props ? `an object with ${Object.keys(props).map((k) => `"${k}"`).join(', ')}` : s.type
  if (Array.isArray(s.type)) return s.type.join(' or ')
  return 'the documented form'
}

/** The parent object and key a JSON pointer names inside `root`, when its parent exists. */
export function locate(root: unknown, pointer: string): { parent: Record<string, unknown>; key: string } | undefined {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
  if (!parts.length) return undefined
  let cur = root
  for (const p of parts.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[p]
  }
  if (cur === null || typeof cur !== 'object') return undefined
  return { parent: cur as Record<string, unknown>, key: parts[parts.length - 1]! }
}

function valueAt(root: unknown, pointer: string): unknown {
  if (pointer === '') return root
  const loc = locate(root, pointer)
  return loc ? loc.parent[loc.key] : undefined
}

export const escapePointer = (key: string): string => key.replace(/~/g, '~0').replace(/\//g, '~1')

const isUnion = (e: ErrorObject): boolean => e.keyword === 'anyOf' || e.keyword === 'oneOf'

/** Whether `e` was raised inside `outer` (at or below its value, under its schema). */
const within = (e: ErrorObject, outer: ErrorObject, schemaPath = outer.schemaPath): boolean =>
  e !== outer && e.schemaPath.startsWith(schemaPath + '/') &&
  (e.instancePath === outer.instancePath || e.instancePath.startsWith(outer.instancePath + '/'))

/** The JSON Schema type of a value ('integer' for whole numbers). */
function jsonType(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number'
  return typeof v
}

/**
 * The index of the one branch of a failed anyOf/oneOf whose `type` the value has, when the value
 * is an object or an array (one object or a list of them): its errors say what is wrong inside.
 * Undefined when no branch, or more than one, declares that type (the forms are named instead).
 */
function branchOfValue(e: ErrorObject, data: unknown): number | undefined {
  const parent = e.parentSchema as Record<string, unknown>
  if (parent.writeOnly === true) return undefined
  const t = jsonType(valueAt(data, e.instancePath))
  if (t !== 'object' && t !== 'array') return undefined
  const branches = (parent[e.keyword] as Record<string, unknown>[] | undefined) ?? []
  const typed = branches.flatMap((b, i) => {
    const types = typeof b.type === 'string' ? [b.type] : Array.isArray(b.type) ? b.type : []
    return types.includes(t) ? [i] : []
  })
  return typed.length === 1 ? typed[0] : undefined
}

/** The one line of a failed anyOf/oneOf that names the forms it accepts. */
function unionMessage(e: ErrorObject): string {
  const parent = e.parentSchema as Record<string, unknown>
  const passing = ((e.params as Record<string, unknown>).passingSchemas as number[] | null | undefined) ?? null
  if (e.keyword === 'oneOf' && passing) return 'matches more than one accepted form'
  if (parent.writeOnly === true) return 'must be a string or a secret reference {"$env": "NAME"} or {"$file": "path"}'
  const branches = (parent[e.keyword] as Record<string, unknown>[]) ?? []
  return `must be ${branches.map(describeBranch).join(' or ')}`
}

/** The message of one ajv error that is not an anyOf/oneOf, or undefined for a wrapper to skip. */
function errorMessage(e: ErrorObject, data: unknown): { pointer: string; message: string } | undefined {
  const p = e.params as Record<string, unknown>
  // A name refused by propertyNames: ajv reports the rule (with `propertyName` set) and a wrapper; one line, at the name.
  const badName = (e as ErrorObject & { propertyName?: string }).propertyName
  if (badName !== undefined) return { pointer: `${e.instancePath}/${escapePointer(badName)}`, message: `name "${badName}" ${e.message ?? 'is not allowed'}` }
  const at = (message: string) => ({ pointer: e.instancePath, message })
  switch (e.keyword) {
    case 'propertyNames':
      return undefined
    case 'additionalProperties': {
      const prop = String(p.additionalProperty)
      const known = Object.keys(((e.parentSchema as Record<string, unknown>)?.properties as object) ?? {})
      const guess = nearest(prop, known)
      return { pointer: `${e.instancePath}/${escapePointer(prop)}`, message: `unknown property "${prop}"` + (guess ? ` (did you mean "${guess}"?)` : known.length ? `; expected one of ${known.map((k) => `"${k}"`).join(', ')}` : '') }
    }
    case 'required':
      return at(`must have required property "${String(p.missingProperty)}"`)
    case 'pattern':
      return at(PATTERN_MEANINGS[String(p.pattern)] ?? e.message ?? 'fails pattern')
    case 'enum':
      return at(`must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`)
    case 'type':
      return at(isSecretRef(valueAt(data, e.instancePath))
        ? `must be ${String(p.type)}; {"$env"}/{"$file"} references are allowed only in secret fields`
        : `must be ${String(p.type)}`)
    default:
      return at(e.message ?? `fails ${e.keyword}`)
  }
}

/**
 * Turns ajv errors into one clear problem per location: `file#pointer: what was expected`.
 * A failed anyOf/oneOf is one line naming the accepted forms, unless the value is an object or an
 * array and exactly one branch takes that type ("one object or a list of them"): then that branch's
 * own errors are reported (an unknown key at its pointer, a bad item at its index), nested unions alike.
 */
export function ajvProblems(errors: ErrorObject[], file: string, prefix: string, data: unknown): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const seen = new Set<string>()
  const add = (pointer: string, message: string) => {
    const key = pointer + '\0' + message
    if (seen.has(key)) return
    seen.add(key)
    problems.push({ file, pointer: prefix + pointer, message })
  }
  const report = (scope: ErrorObject[]) => {
    const unions = scope.filter(isUnion)
    for (const e of scope) {
      if (unions.some((u) => within(e, u))) continue
      if (!isUnion(e)) {
        const m = errorMessage(e, data)
        if (m) add(m.pointer, m.message)
        continue
      }
      const branch = branchOfValue(e, data)
      const inner = branch === undefined ? [] : scope.filter((x) => within(x, e, `${e.schemaPath}/${branch}`))
      if (inner.length) report(inner)
      else add(e.instancePath, unionMessage(e))
    }
  }
  report(errors)
  return problems
}
