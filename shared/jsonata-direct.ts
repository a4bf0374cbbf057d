/**
 * A direct evaluator for the JSONata expressions most channels run on every message: field paths
 * with positional predicates (`mrn`, `patient.name.family`, HL7's ``PID[0].`3`[0].`1` ``), literals,
 * object constructors with fixed keys (`{ 'resourceType': 'Patient', 'id': mrn }`), blocks binding
 * variables (`( $pid := PID[0]; $pid.`5` )`), `$number()`, string concatenation (`a & '^' & b`) and
 * comparisons (`event = 'A01'`, `event in ['A01', 'A04']`, `a and b`). JSONata's own evaluator walks
 * every expression through promises: about 20 µs and 30 KB of garbage for a six-field object,
 * against well under 1 µs here.
 *
 * Compiled from JSONata's own parse tree, and only from nodes it knows whole: a predicate other than
 * a number, a function other than `$number`, a variable not bound earlier in the same expression
 * (`$message`), anything else: no direct evaluator. Paths follow JSONata's sequence rules (arrays are
 * mapped over and flattened one level, a sequence of one is its item, `[n]` counts from the end when
 * negative). Where a value could make the result differ (an array given to `&`, `=` or `$number`, a
 * number joined with `&`, an object constructor on anything but an object), the evaluator returns
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
  stages?: Node[]
  expr?: Node
  lhs?: Node | Array<[Node, Node]>
  rhs?: Node
  expressions?: Node[]
  arguments?: Node[]
  procedure?: Node
}

/** The variables of the blocks being evaluated, innermost first. */
interface Frame { readonly vars: Map<string, unknown>; readonly parent: Frame | undefined }
type Compiled = (input: unknown, frame: Frame | undefined) => unknown
/** The variables bound so far by the enclosing blocks, at compile time. */
interface Scope { readonly names: Set<string>; readonly parent: Scope | undefined }

/** The keys a node of each supported kind may have; any other key (a group, a sort, a focus) means "not supported". */
const KEYS: Record<string, readonly string[]> = {
  string: ['type', 'value', 'position'],
  number: ['type', 'value', 'position'],
  value: ['type', 'value', 'position'],
  name: ['type', 'value', 'position', 'stages'],
  variable: ['type', 'value', 'position', 'stages'],
  filter: ['type', 'expr', 'position'],
  path: ['type', 'steps'],
  unary: ['type', 'value', 'position', 'lhs', 'expressions'],
  binary: ['type', 'value', 'position', 'lhs', 'rhs'],
  block: ['type', 'position', 'expressions'],
  bind: ['type', 'value', 'position', 'lhs', 'rhs'],
  function: ['type', 'value', 'position', 'arguments', 'procedure'],
}

/** A node of a supported kind with no key beyond those its kind may have (keys set to undefined do not count). */
const known = (node: Node | undefined): node is Node => {
  const allowed = node && KEYS[node.type]
  return !!allowed && Object.entries(node).every(([k, v]) => v === undefined || allowed.includes(k))
}

/** The direct evaluator of `ast`, or undefined when the expression is not one this module evaluates. */
export function directEvaluator(ast: unknown): DirectEvaluator | undefined {
  try {
    const f = compile(ast as Node, undefined)
    if (!f) return undefined
    return (input) => {
      try {
        // JSONata wraps an array given as the input in a sequence of one, so that a path reads the array as a whole.
        return f(Array.isArray(input) ? wrapped(input) : input, undefined)
      } catch {
        return DEFER // nesting deep enough to overflow the stack: JSONata reports it
      }
    }
  } catch {
    return undefined
  }
}

function compile(node: Node, scope: Scope | undefined): Compiled | undefined {
  if (!known(node)) return undefined
  switch (node.type) {
    case 'string': case 'number': case 'value': {
      const v = node.value
      return isPrimitive(v) ? () => v : undefined
    }
    case 'path': return compilePath(node.steps ?? [], scope)
    case 'variable': return node.stages ? undefined : compileVariable(node, scope)
    case 'unary': return node.value === '{' ? compileObject(node.lhs, scope) : undefined
    case 'binary': return compileBinary(node, scope)
    case 'block': return compileBlock(node.expressions ?? [], scope)
    case 'function': return compileNumber(node, scope)
    default: return undefined
  }
}

const isPrimitive = (v: unknown): v is string | number | boolean | null => v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'

// ── Sequences, as JSONata keeps them ────────────────────────────────────────────────────────────

const SEQUENCE = Symbol('sequence')
type Sequence = unknown[] & { [SEQUENCE]?: true }

function sequence(): Sequence {
  const s: Sequence = []
  s[SEQUENCE] = true
  return s
}

const isSequence = (v: unknown): v is Sequence => Array.isArray(v) && (v as Sequence)[SEQUENCE] === true

function wrapped(input: unknown[]): Sequence {
  const s = sequence()
  s.push(input)
  return s
}

/** What JSONata makes of every expression's value: an empty sequence is nothing, a sequence of one is its item. */
const settle = (v: unknown): unknown => (isSequence(v) ? (v.length === 0 ? undefined : v.length === 1 ? v[0] : v) : v)

/** An object JSONata takes for one of its functions (by these two markers, even in a message body): it reads no field of it. */
const functionLike = (v: object): boolean => (v as Record<string, unknown>)._jsonata_function === true || (v as Record<string, unknown>)._jsonata_lambda === true

/** A field of `input`: its own property, or of each item of an array (arrays among them flattened). */
function lookup(input: unknown, key: string): unknown {
  if (Array.isArray(input)) {
    const out = sequence()
    for (const item of input) {
      const v = lookup(item, key)
      if (v === undefined) continue
      if (Array.isArray(v)) for (const x of v) out.push(x)
      else out.push(v)
    }
    return out
  }
  return input !== null && typeof input === 'object' && Object.prototype.hasOwnProperty.call(input, key) && !functionLike(input) ? (input as Record<string, unknown>)[key] : undefined
}

/** `[n]` on a value: its item n (counted from the end when negative); a value that is not an array is a sequence of one. */
function atIndex(n: number, input: unknown): unknown {
  const items = Array.isArray(input) ? input : [input]
  let i = Math.floor(n)
  if (i < 0) i = items.length + i
  const item = items[i]
  const out = sequence()
  if (item === undefined) return out
  if (Array.isArray(item)) return item
  out.push(item)
  return out
}

// ── Paths ───────────────────────────────────────────────────────────────────────────────────────

/** A step of a path: what it reads from each item (`name` for a field), then its `[n]` predicates. */
interface Step { read: Compiled; indexes: number[]; name?: string }

/** `a.b[0].c`: each step over every item of the sequence before it, as JSONata's evaluatePath and evaluateStep do. */
function compilePath(nodes: Node[], scope: Scope | undefined): Compiled | undefined {
  const steps: Step[] = []
  for (const [i, node] of nodes.entries()) {
    const s = compileStep(node, i === 0, scope)
    if (!s) return undefined
    steps.push(s)
  }
  if (steps.length === 0) return undefined
  const fromVariable = nodes[0]!.type === 'variable'
  // Field names only: read straight through plain objects (the common case), the general way once an array is met.
  const names = steps.every((s) => s.name !== undefined && s.indexes.length === 0) ? steps.map((s) => s.name!) : undefined
  return (input, frame) => {
    if (names && isPlainObject(input)) {
      const v = readPlain(input, names)
      if (v !== DEFER) return v
    }
    let items: unknown[] = Array.isArray(input) && !fromVariable ? input : [input]
    for (let i = 0; i < steps.length; i++) {
      const out = runStep(steps[i]!, items, frame, i === steps.length - 1)
      if (out === DEFER) return DEFER
      items = out as unknown[]
      if (items.length === 0) break
    }
    return settle(items)
  }
}

/** `names` read through plain objects: a scalar or nothing on the way gives nothing, an array at the end is the value; DEFER for an array (or another kind of object) on the way. */
function readPlain(input: Record<string, unknown>, names: string[]): unknown {
  let v: unknown = input
  for (const name of names) {
    if (isPlainObject(v)) v = Object.prototype.hasOwnProperty.call(v, name) && !functionLike(v) ? v[name] : undefined
    else if (v === null || typeof v !== 'object') return undefined
    else return DEFER
  }
  return v
}

/** A field name (not one every object inherits, `constructor`), or a variable as the first step; `[n]` predicates after either. */
function compileStep(node: Node, first: boolean, scope: Scope | undefined): Step | undefined {
  if (!known(node)) return undefined
  const indexes: number[] = []
  for (const stage of node.stages ?? []) {
    if (!known(stage) || stage.type !== 'filter' || !known(stage.expr) || stage.expr.type !== 'number' || typeof stage.expr.value !== 'number') return undefined
    indexes.push(stage.expr.value)
  }
  if (node.type === 'variable') {
    const read = first ? compileVariable(node, scope) : undefined
    return read && { read, indexes }
  }
  const name = node.value
  if (node.type !== 'name' || typeof name !== 'string' || name in Object.prototype) return undefined
  return { read: (item) => settle(lookup(item, name)), indexes, name }
}

/** One step over `items`: its value for each, indexed, then flattened one level; the last step keeps a single array whole. */
function runStep(step: Step, items: unknown[], frame: Frame | undefined, last: boolean): unknown[] | typeof DEFER {
  const results: unknown[] = []
  for (const item of items) {
    let v = step.read(item, frame)
    if (v === DEFER) return DEFER
    for (const n of step.indexes) v = atIndex(n, v)
    if (v !== undefined) results.push(v)
  }
  if (last && results.length === 1 && Array.isArray(results[0]) && !isSequence(results[0])) return results[0]
  const out = sequence()
  for (const v of results) {
    if (Array.isArray(v)) for (const x of v) out.push(x)
    else out.push(v)
  }
  return out
}

// ── Variables, blocks, $number ──────────────────────────────────────────────────────────────────

const isBound = (scope: Scope | undefined, name: string): boolean => !!scope && (scope.names.has(name) || isBound(scope.parent, name))

/** `$name` bound earlier in an enclosing block; any other variable (`$message`, a function) is JSONata's. */
function compileVariable(node: Node, scope: Scope | undefined): Compiled | undefined {
  const name = node.value
  if (typeof name !== 'string' || name === '' || !isBound(scope, name)) return undefined
  return (_input, frame) => {
    for (let f = frame; f; f = f.parent) if (f.vars.has(name)) return f.vars.get(name)
    return DEFER
  }
}

/** `( e1; $x := e2; e3 )`: a frame of its own; a binding only as one of its expressions, visible to those after it. */
function compileBlock(nodes: Node[], outer: Scope | undefined): Compiled | undefined {
  const scope: Scope = { names: new Set(), parent: outer }
  const parts: Array<{ bind?: string; f: Compiled }> = []
  for (const node of nodes) {
    if (node.type === 'bind') {
      const variable = node.lhs as Node
      const f = known(node) && known(variable) && variable.type === 'variable' && typeof variable.value === 'string' && variable.value !== '' ? compile(node.rhs!, scope) : undefined
      if (!f) return undefined
      parts.push({ bind: variable.value as string, f })
      scope.names.add(variable.value as string)
    } else {
      const f = compile(node, scope)
      if (!f) return undefined
      parts.push({ f })
    }
  }
  if (parts.length === 0) return undefined
  return (input, outerFrame) => {
    const frame: Frame = { vars: new Map(), parent: outerFrame }
    let v: unknown
    for (const { bind, f } of parts) {
      v = f(input, frame)
      if (v === DEFER) return DEFER
      if (bind !== undefined) frame.vars.set(bind, v)
    }
    return v
  }
}

/** JSONata's $number for what it reads the same way every time: a number, a decimal string, a boolean. */
const NUMERIC = /^-?[0-9]+(\.[0-9]+)?([Ee][-+]?[0-9]+)?$/

/** `$number(x)`, unless the expression binds `$number` itself. */
function compileNumber(node: Node, scope: Scope | undefined): Compiled | undefined {
  const procedure = node.procedure
  if (node.value !== '(' || !known(procedure) || procedure.type !== 'variable' || procedure.value !== 'number' || procedure.stages || isBound(scope, 'number')) return undefined
  if (node.arguments?.length !== 1) return undefined
  const arg = compile(node.arguments[0]!, scope)
  if (!arg) return undefined
  return (input, frame) => {
    const v = arg(input, frame)
    if (v === undefined || typeof v === 'number') return v
    if (typeof v === 'boolean') return v ? 1 : 0
    if (typeof v === 'string' && NUMERIC.test(v) && Number.isFinite(parseFloat(v))) return parseFloat(v)
    return DEFER
  }
}

// ── Objects and operators ───────────────────────────────────────────────────────────────────────

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype

/** Keys an object constructor leaves to JSONata: one JSONata refuses (D1013), one that would set the prototype. */
const RESERVED_KEYS = new Set(['_jsonata_lambda', '_jsonata_function', '__proto__'])

/** `{ 'k': expr, … }` with string-literal keys, each once, on an object; a key whose value is undefined is left out, as JSONata does. */
function compileObject(pairs: unknown, scope: Scope | undefined): Compiled | undefined {
  if (!Array.isArray(pairs)) return undefined
  const parts: Array<[string, Compiled]> = []
  for (const [key, value] of pairs as Array<[Node, Node]>) {
    if (!known(key) || key.type !== 'string' || typeof key.value !== 'string' || RESERVED_KEYS.has(key.value) || parts.some(([k]) => k === key.value)) return undefined
    const f = compile(value, scope)
    if (!f) return undefined
    parts.push([key.value, f])
  }
  return (input, frame) => {
    // A truthy `tupleStream` (a flag of JSONata's own, here from the message) switches JSONata to another way of grouping.
    if (!isPlainObject(input) || input.tupleStream) return DEFER
    const out: Record<string, unknown> = {}
    for (const [key, f] of parts) {
      const v = f(input, frame)
      if (v === DEFER) return DEFER
      if (v !== undefined) out[key] = v
    }
    return out
  }
}

function compileBinary(node: Node, scope: Scope | undefined): Compiled | undefined {
  const lhs = compile(node.lhs as Node, scope)
  if (!lhs) return undefined
  if (node.value === 'in') return compileIn(lhs, node.rhs!)
  const rhs = compile(node.rhs!, scope)
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
function both(lhs: Compiled, rhs: Compiled, op: (a: unknown, b: unknown) => unknown): Compiled {
  return (input, frame) => {
    const a = lhs(input, frame)
    if (a === DEFER) return DEFER
    const b = rhs(input, frame)
    return b === DEFER ? DEFER : op(a, b)
  }
}

/** `x in ['A01', 'A04']`: a list of literals only; false for an undefined `x`, as JSONata does. */
function compileIn(lhs: Compiled, list: Node): Compiled | undefined {
  if (!known(list) || list.type !== 'unary' || list.value !== '[' || !Array.isArray(list.expressions) || list.lhs !== undefined) return undefined
  const values: unknown[] = []
  for (const e of list.expressions) {
    if (!known(e) || !['string', 'number', 'value'].includes(e.type) || !isPrimitive(e.value)) return undefined
    values.push(e.value)
  }
  return (input, frame) => {
    const v = lhs(input, frame)
    if (v === DEFER) return DEFER
    if (v === undefined) return false
    return isPrimitive(v) ? values.includes(v) : DEFER
  }
}
