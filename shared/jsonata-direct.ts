/**
 * A direct evaluator for the simplest JSONata expressions, the ones most channels run on every
 * message: field paths (`mrn`, `patient.name.family`), literals, object constructors with fixed keys
 * (`{ 'resourceType': 'Patient', 'id': mrn }`), string concatenation (`a & '^' & b`) and comparisons
 * (`event = 'A01'`, `event in ['A01', 'A04']`, `a and b`). JSONata's own evaluator walks every
 * expression through promises and sequences: about 20 µs and 30 KB of garbage for a six-field
 * object, against well under 1 µs here.
 *
 * Compiled from JSONata's own parse tree, and only for nodes it knows whole (a predicate, a
 * variable, a function call, anything else: no direct evaluator). At run time it answers only where
 * the result cannot differ from JSONata's: the input and every step of a path are plain objects,
 * every value met is a string, number, boolean, null or a plain object (never an array: JSONata
 * maps over arrays and flattens sequences), and `&` joins strings only. Otherwise it returns
 * DEFER and the caller runs JSONata.
 */

/** What a direct evaluator returns when JSONata must decide. */
export const DEFER: unique symbol = Symbol('defer to JSONata')

export type DirectEvaluator = (input: unknown) => unknown

/** A node of JSONata's parse tree (`jsonata(source).ast()`), as far as this module reads it. */
interface Node {
  type: string
  value?: unknown
  position?: number
  steps?: Node[]
  lhs?: Node | Array<[Node, Node]>
  rhs?: Node
  expressions?: Node[]
}

/** The keys a node of each supported kind may have; any other key (stages, predicates, grouping) means "not supported". */
const KEYS: Record<string, readonly string[]> = {
  string: ['type', 'value', 'position'],
  number: ['type', 'value', 'position'],
  value: ['type', 'value', 'position'],
  name: ['type', 'value', 'position'],
  path: ['type', 'steps'],
  unary: ['type', 'value', 'position', 'lhs', 'expressions'],
  binary: ['type', 'value', 'position', 'lhs', 'rhs'],
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype

/** A value JSONata hands on unchanged: anything but an array (or a function). */
const isSingle = (v: unknown) => v === null || (typeof v !== 'object' && typeof v !== 'function') || isPlainObject(v)

const isPrimitive = (v: unknown): v is string | number | boolean | null => v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'

/** The direct evaluator of `ast`, or undefined when the expression is not one this module evaluates. */
export function directEvaluator(ast: unknown): DirectEvaluator | undefined {
  try {
    return compile(ast as Node)
  } catch {
    return undefined
  }
}

function compile(node: Node): DirectEvaluator | undefined {
  const allowed = KEYS[node.type]
  if (!allowed || Object.keys(node).some((k) => !allowed.includes(k))) return undefined
  switch (node.type) {
    case 'string': case 'number': case 'value': {
      const v = node.value
      return isPrimitive(v) ? () => v : undefined
    }
    case 'path': return compilePath(node.steps ?? [])
    case 'unary': return node.value === '{' ? compileObject(node.lhs) : undefined
    case 'binary': return compileBinary(node)
    default: return undefined
  }
}

/** `a.b.c`: property reads on plain objects, undefined past a missing or scalar value; a name Object.prototype has (`constructor`) is left to JSONata. */
function compilePath(steps: Node[]): DirectEvaluator | undefined {
  const names: string[] = []
  for (const s of steps) {
    const allowed = KEYS.name!
    if (s.type !== 'name' || typeof s.value !== 'string' || s.value in Object.prototype || Object.keys(s).some((k) => !allowed.includes(k))) return undefined
    names.push(s.value)
  }
  if (names.length === 0) return undefined
  return (input) => {
    let v = input
    for (const name of names) {
      if (isPlainObject(v)) v = v[name]
      else if (v === null || (typeof v !== 'object' && typeof v !== 'function')) return undefined // nothing to read a field of
      else return DEFER // an array (JSONata maps over it) or an object of another kind
    }
    return isSingle(v) ? v : DEFER
  }
}

/** `{ 'k': expr, … }` with string-literal keys, each once; a key whose value is undefined is left out, as JSONata does. */
function compileObject(pairs: unknown): DirectEvaluator | undefined {
  if (!Array.isArray(pairs)) return undefined
  const parts: Array<[string, DirectEvaluator]> = []
  for (const [key, value] of pairs as Array<[Node, Node]>) {
    if (key.type !== 'string' || typeof key.value !== 'string' || key.value === '__proto__' || parts.some(([k]) => k === key.value)) return undefined
    const f = compile(value)
    if (!f) return undefined
    parts.push([key.value, f])
  }
  return (input) => {
    if (!isPlainObject(input)) return DEFER
    const out: Record<string, unknown> = {}
    for (const [key, f] of parts) {
      const v = f(input)
      if (v === DEFER || !isSingle(v)) return DEFER
      if (v !== undefined) out[key] = v
    }
    return out
  }
}

function compileBinary(node: Node): DirectEvaluator | undefined {
  const lhs = compile(node.lhs as Node)
  if (!lhs) return undefined
  if (node.value === 'in') return compileIn(lhs, node.rhs!)
  const rhs = compile(node.rhs!)
  if (!rhs) return undefined
  switch (node.value) {
    // JSONata casts each side with $string, undefined as ''; only strings are joined here ($string formats numbers its own way).
    case '&': return both(lhs, rhs, (a, b) => (a === undefined || typeof a === 'string') && (b === undefined || typeof b === 'string') ? (a ?? '') + (b ?? '') : DEFER)
    // JSONata: a comparison with an undefined side is false, for = and != alike.
    case '=': return both(lhs, rhs, (a, b) => a === undefined || b === undefined ? false : isPrimitive(a) && isPrimitive(b) ? a === b : DEFER)
    case '!=': return both(lhs, rhs, (a, b) => a === undefined || b === undefined ? false : isPrimitive(a) && isPrimitive(b) ? a !== b : DEFER)
    case 'and': return both(lhs, rhs, (a, b) => typeof a === 'boolean' && typeof b === 'boolean' ? a && b : DEFER)
    case 'or': return both(lhs, rhs, (a, b) => typeof a === 'boolean' && typeof b === 'boolean' ? a || b : DEFER)
    default: return undefined
  }
}

/** Both sides evaluated, then `op`; DEFER from either side defers. */
function both(lhs: DirectEvaluator, rhs: DirectEvaluator, op: (a: unknown, b: unknown) => unknown): DirectEvaluator {
  return (input) => {
    const a = lhs(input)
    if (a === DEFER) return DEFER
    const b = rhs(input)
    return b === DEFER ? DEFER : op(a, b)
  }
}

/** `x in ['A01', 'A04']`: a list of literals only; false for an undefined `x`, as JSONata does. */
function compileIn(lhs: DirectEvaluator, list: Node): DirectEvaluator | undefined {
  if (list.type !== 'unary' || list.value !== '[' || !Array.isArray(list.expressions) || Object.keys(list).some((k) => !KEYS.unary!.includes(k) || k === 'lhs')) return undefined
  const values: unknown[] = []
  for (const e of list.expressions) {
    const f = compile(e)
    if (!f || !['string', 'number', 'value'].includes(e.type)) return undefined
    values.push(f(undefined))
  }
  return (input) => {
    const v = lhs(input)
    if (v === DEFER) return DEFER
    if (v === undefined) return false
    return isPrimitive(v) ? values.includes(v) : DEFER
  }
}
