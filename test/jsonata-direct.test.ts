import jsonata from 'jsonata'
import { describe, expect, it } from 'vitest'
import { DEFER, directEvaluator } from '../shared/jsonata-direct.ts'
import { plainJson } from '../shared/jsonata.ts'

const direct = (source: string) => directEvaluator(jsonata(source).ast())

/** Inputs around every rule: missing fields, null, arrays where objects are expected and the reverse, numbers, text, nesting. */
const inputs: unknown[] = [
  { mrn: 'MRN1', name: 'Doe^John', event: 'A01', ward: '4B', seq: 7, ok: true, off: false, nothing: null, patient: { name: { family: 'Doe', given: 'John' }, ids: ['a', 'b'] } },
  { mrn: 'MRN2', event: 'A08', seq: 0, patient: { name: { family: 'Roe' } } },
  { mrn: 42, name: null, event: null, seq: -1.5, patient: null },
  { mrn: '', event: 'A04', patient: [{ name: { family: 'Doe' } }, { name: { family: 'Roe' } }] },
  { mrn: ['x', 'y'], event: ['A01'], patient: { name: [{ family: 'One' }] } },
  { mrn: { nested: 'obj' }, event: { code: 'A01' }, ok: 'yes', off: 0 },
  { constructor: 'mine', toString: 'also mine', __proto__x: 1 },
  { MSH: [{ '10': [{ '1': '42' }], '9': [{ '2': 'A01' }] }], PID: [{ '3': [{ '1': 'MRN9' }, { '1': 'SSN' }], '5': [{ '1': 'DOE', '2': 'JANE' }] }], NTE: [{ '3': ['a note'] }, { '3': ['x', 'y'] }] },
  { MSH: { '10': { '1': 'x12' } }, PID: [], NTE: [{ '3': [] }] },
  { patient: [[{ name: 'nested' }], { name: { family: 'F' } }], ids: [[1, 2], [3]] },
  // JSONata's own markers, which a sender can put in a body: an object taken for a function, the tuple-stream flag.
  { _jsonata_function: true, mrn: 'M1', event: 'A01' },
  { patient: { _jsonata_lambda: true, name: { family: 'Hidden' } }, mrn: 'M2' },
  { tupleStream: true, mrn: 'M3', '@': { mrn: 'OTHER' }, x: 'theirs' },
  {},
  [{ mrn: 'in an array' }, { mrn: 'second' }],
  [],
  'plain text',
  42,
  null,
  true,
]

const expressions = [
  'mrn', 'patient.name.family', 'patient.name', 'patient.ids', 'missing.deeper', 'seq', 'nothing', 'nothing.x',
  "'text'", '3.25', 'true', 'null',
  "{ 'resourceType': 'Encounter', 'seq': seq, 'subject': { 'identifier': mrn, 'display': name }, 'class': event, 'location': ward }",
  "{ 'id': mrn, 'family': patient.name.family, 'fixed': 1, 'none': missing }",
  "{ 'ids': patient.ids }",
  "mrn & '^' & name", "event & ''", "'a' & 'b'", 'seq & mrn',
  "event = 'A01'", "event != 'A01'", 'seq = 7', "missing = 'x'", "missing != 'x'", 'ok = true', 'patient = patient', "mrn = 'MRN1'",
  "event in ['A01', 'A04', 'A08']", 'seq in [0, 7]', "missing in ['x']", "event in ['Z99']", 'ok in [true]', 'event in []',
  "event = 'A01' and ok = true", "event = 'A01' or event = 'A08'", 'ok and off', 'ok or off', "mrn and 'x'",
  'patient[0].name.family', 'patient.name[0].family', 'patient[-1].name.family', 'patient[1.7]', 'patient[5]', 'patient.ids[1]', 'mrn[0]', 'event[-1]',
  '$number(seq)', '$number(ok)', "$number('12.5e1')", '$number(missing)', '$number(mrn)',
  "( $x := 'mine'; { 'k': $x, 'id': mrn } )", "( $p := patient; $p.name.family )", "( $p := patient[0]; { 'family': $p.name.family, 'ids': $p.ids } )", "( $x := mrn; $y := $x; $y & '!' )",
  "( $pid := PID[0]; { 'seq': $number(MSH[0].`10`[0].`1`), 'id': $pid.`3`[0].`1`, 'name': $pid.`5`[0].`1` & '^' & $pid.`5`[0].`2`, 'note': NTE[0].`3` } )",
]

describe('direct JSONata evaluation gives what JSONata gives, or defers', () => {
  it.each(expressions)('%s', async (source) => {
    const expr = jsonata(source)
    const f = directEvaluator(expr.ast())
    expect(f, 'every expression of this table is evaluated directly').toBeDefined()
    for (const input of inputs) {
      const mine = f!(input)
      if (mine === DEFER) continue
      const theirs = await expr.evaluate(input)
      expect(plainJson(mine), `${source} on ${JSON.stringify(input)}`).toStrictEqual(plainJson(theirs))
    }
  })

  it('answers directly in the common case (the table is not deferred through)', () => {
    const body = inputs[0]
    for (const source of expressions.filter((s) => !/patient\.ids|seq & mrn|mrn and|patient = patient|\$number\(mrn\)|PID/.test(s))) {
      expect(direct(source)!(body), source).not.toBe(DEFER)
    }
  })

  it.each([
    ['a number joined with &', { seq: 1 }, "seq & ''"],
    ['an array joined with &', { a: ['x', 'y'] }, "a & ''"],
    ['an object compared', { a: { b: 1 } }, 'a = a'],
    ['a non-boolean and', { a: 'x', b: true }, 'a and b'],
    ['an object constructor on text', 'MSH|^~\\&', "{ 'id': mrn }"],
    ['an object constructor on an array', [{ mrn: 'a' }], "{ 'id': mrn }"],
    ['$number of a word', { a: 'abc' }, '$number(a)'],
    ['$number of a hexadecimal string', { a: '0x1F' }, '$number(a)'],
    ['$number of an array', { a: ['1', '2'] }, '$number(a)'],
  ])('defers for %s', (_, input, source) => {
    expect(direct(source)!(input)).toBe(DEFER)
  })

  it('defers when nesting is deep enough to overflow the stack', () => {
    let deep: unknown = { b: 1 }
    for (let i = 0; i < 100_000; i++) deep = [deep]
    expect(direct('a.b')!({ a: deep })).toBe(DEFER)
  })

  it.each([
    'items[type = "x"]', '$message.id', '$string(seq)', "{ 'k': a, 'k': b }", "{ mrn: 'x' }", 'a[$x]',
    'constructor', "{ '__proto__': 1 }", 'a + 1', "a ? 'y' : 'n'", '[a, b]', "x in ['a', y]", 'items.{ "a": b }', '**.mrn', '$',
    '$x', '($x; $x := 1)', '(($x := 1); $x)', '$x := 1', '($number := 1; $number(a))', '$number(a, b)', '$x[0]', 'a.$x', 'a^(b)', 'a#$i', 'a@$x',
    "{ '_jsonata_lambda': 1 }", "{ 'a': mrn, '_jsonata_function': true }",
  ])('leaves %s to JSONata', (source) => {
    expect(direct(source)).toBeUndefined()
  })
})

describe('random expressions of the direct subset on random inputs (seeded)', () => {
  // A small seeded generator (mulberry32), so a failure reproduces.
  let seed = 0x5eed
  const rnd = () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!
  const NAMES = ['a', 'b', 'c', 'mrn', 'event']
  const LITERALS = ["'A01'", "'x'", "''", '0', '7', '-1.5', 'true', 'false', 'null']

  const value = (depth: number): unknown => {
    const r = rnd()
    if (depth > 3 || r < 0.4) return pick(['A01', 'x', '', '12', '-3.5e2', 0, 7, -1.5, true, false, null])
    if (r < 0.65) return Array.from({ length: Math.floor(rnd() * 3) }, () => value(depth + 1))
    return object(depth + 1)
  }
  const object = (depth: number) => Object.fromEntries(NAMES.filter(() => rnd() < 0.6).map((n) => [n, value(depth)]))
  const index = () => (rnd() < 0.7 ? '' : `[${pick(['0', '1', '-1', '2', '0.5', '-3'])}]`)
  const path = (vars: string[] = []) => {
    const head = vars.length && rnd() < 0.4 ? `$${pick(vars)}${index()}` : `${pick(NAMES)}${index()}`
    return [head, ...Array.from({ length: Math.floor(rnd() * 3) }, () => `${pick(NAMES)}${index()}`)].join('.')
  }
  const expression = (depth: number, vars: string[] = []): string => {
    const r = rnd()
    if (depth > 2 || r < 0.3) return rnd() < 0.75 ? path(vars) : pick(LITERALS)
    if (r < 0.45) return `{ ${[...new Set(Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(NAMES)))].map((k) => `'${k}': ${expression(depth + 1, vars)}`).join(', ')} }`
    if (r < 0.55) return `${path(vars)} in [${Array.from({ length: Math.floor(rnd() * 3) }, () => pick(LITERALS)).join(', ')}]`
    if (r < 0.65) return `$number(${expression(depth + 1, vars)})`
    if (r < 0.78) {
      const name = pick(['p', 'q'])
      return `( $${name} := ${expression(depth + 1, vars)}; ${expression(depth + 1, [...vars, name])} )`
    }
    return `(${expression(depth + 1, vars)} ${pick(['&', '=', '!=', 'and', 'or'])} ${expression(depth + 1, vars)})`
  }

  it('agree with JSONata wherever they answer, over 3,000 cases', async () => {
    let answered = 0
    for (let i = 0; i < 3000; i++) {
      const source = expression(0)
      const input = rnd() < 0.9 ? object(0) : value(0)
      const expr = jsonata(source)
      const f = directEvaluator(expr.ast())
      const mine = f ? f(input) : DEFER
      if (mine === DEFER) continue
      answered++
      let theirs: unknown
      try {
        theirs = await expr.evaluate(input)
      } catch (e) {
        throw new Error(`JSONata failed where the direct evaluator answered ${JSON.stringify(mine)}: ${source} on ${JSON.stringify(input)}: ${(e as Error).message}`)
      }
      expect(plainJson(mine), `${source} on ${JSON.stringify(input)}`).toStrictEqual(plainJson(theirs))
    }
    expect(answered).toBeGreaterThan(1500)
  })
})
