import type { ErrorObject } from 'ajv'
import type { ConfigProblem } from '../errors.ts'

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

/**
 * Turns ajv errors into one clear problem per location: `file#pointer: what was expected`.
 * The branch errors of an anyOf/oneOf are folded into one line naming the accepted forms.
 */
export function ajvProblems(errors: ErrorObject[], file: string, prefix: string, data: unknown): ConfigProblem[] {
  const unions = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf')
  const inUnion = (e: ErrorObject) => unions.some((u) => u !== e && e.schemaPath.startsWith(u.schemaPath + '/'))
  const problems: ConfigProblem[] = []
  const seen = new Set<string>()
  const add = (pointer: string, message: string) => {
    const key = pointer + '\0' + message
    if (seen.has(key)) return
    seen.add(key)
    problems.push({ file, pointer: prefix + pointer, message })
  }
  for (const e of errors) {
    if (inUnion(e)) continue
    const p = e.params as Record<string, unknown>
    // A name refused by propertyNames: ajv reports the rule (with `propertyName` set) and a wrapper; one line, at the name.
    const badName = (e as ErrorObject & { propertyName?: string }).propertyName
    if (badName !== undefined) {
      add(`${e.instancePath}/${escapePointer(badName)}`, `name "${badName}" ${e.message ?? 'is not allowed'}`)
      continue
    }
    if (e.keyword === 'propertyNames') continue
    switch (e.keyword) {
      case 'additionalProperties': {
        const prop = String(p.additionalProperty)
        const known = Object.keys(((e.parentSchema as Record<string, unknown>)?.properties as object) ?? {})
        const guess = nearest(prop, known)
        add(`${e.instancePath}/${escapePointer(prop)}`, `unknown property "${prop}"` + (guess ? ` (did you mean "${guess}"?)` : known.length ? `; expected one of ${known.map((k) => `"${k}"`).join(', ')}` : ''))
        break
      }
      case 'required':
        add(e.instancePath, `must have required property "${String(p.missingProperty)}"`)
        break
      case 'enum':
        add(e.instancePath, `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`)
        break
      case 'anyOf':
      case 'oneOf': {
        const parent = e.parentSchema as Record<string, unknown>
        const branches = (parent[e.keyword] as Record<string, unknown>[]) ?? []
        const passing = (p.passingSchemas as number[] | null | undefined) ?? null
        if (e.keyword === 'oneOf' && passing) { add(e.instancePath, 'matches more than one accepted form'); break }
        const forms = branches.map(describeBranch)
        const secret = parent.writeOnly === true
        add(e.instancePath, secret
          ? 'must be a string or a secret reference {"$env": "NAME"} or {"$file": "path"}'
          : `must be ${forms.join(' or ')}`)
        break
      }
      case 'type': {
        const value = valueAt(data, e.instancePath)
        add(e.instancePath, isSecretRef(value)
          ? `must be ${String(p.type)}; {"$env"}/{"$file"} references are allowed only in secret fields`
          : `must be ${String(p.type)}`)
        break
      }
      default:
        add(e.instancePath, e.message ?? `fails ${e.keyword}`)
    }
  }
  return problems
}
