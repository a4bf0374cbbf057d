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
      expect(mine, `${source} on ${JSON.stringify(input)}`).toStrictEqual(plainJson(theirs))
    }
  })

  it('answers directly in the common case (the table is not deferred through)', () => {
    const body = inputs[0]
    for (const source of expressions.filter((s) => !/patient\.ids|seq & mrn|mrn and|patient = patient/.test(s))) {
      expect(direct(source)!(body), source).not.toBe(DEFER)
    }
  })

  it.each([
    ['an array input', [{ mrn: 'a' }], 'mrn'],
    ['an array on the path', { patient: [{ name: 'x' }] }, 'patient.name'],
    ['an array value', { ids: ['a'] }, "{ 'ids': ids }"],
    ['a number joined with &', { seq: 1 }, "seq & ''"],
    ['an object compared', { a: { b: 1 } }, 'a = a'],
    ['a non-boolean and', { a: 'x', b: true }, 'a and b'],
    ['an object constructor on text', 'MSH|^~\\&', "{ 'id': mrn }"],
  ])('defers for %s', (_, input, source) => {
    expect(direct(source)!(input)).toBe(DEFER)
  })

  it.each([
    'PID[0]', 'items[type = "x"]', '$message.id', '$string(seq)', 'a.b[0]', "{ 'k': a, 'k': b }", "{ mrn: 'x' }",
    'constructor', "{ '__proto__': 1 }", 'a + 1', "a ? 'y' : 'n'", '[a, b]', "x in ['a', y]", 'items.{ "a": b }', '**.mrn', '$',
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
    if (depth > 2 || r < 0.45) return pick(['A01', 'x', '', 0, 7, -1.5, true, false, null])
    if (r < 0.6) return Array.from({ length: Math.floor(rnd() * 3) }, () => value(depth + 1))
    return object(depth + 1)
  }
  const object = (depth: number) => Object.fromEntries(NAMES.filter(() => rnd() < 0.6).map((n) => [n, value(depth)]))
  const path = () => Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(NAMES)).join('.')
  const expression = (depth: number): string => {
    const r = rnd()
    if (depth > 2 || r < 0.35) return rnd() < 0.7 ? path() : pick(LITERALS)
    if (r < 0.5) return `{ ${[...new Set(Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(NAMES)))].map((k) => `'${k}': ${expression(depth + 1)}`).join(', ')} }`
    if (r < 0.6) return `${path()} in [${Array.from({ length: Math.floor(rnd() * 3) }, () => pick(LITERALS)).join(', ')}]`
    return `(${expression(depth + 1)} ${pick(['&', '=', '!=', 'and', 'or'])} ${expression(depth + 1)})`
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
      expect(mine, `${source} on ${JSON.stringify(input)}`).toStrictEqual(plainJson(theirs))
    }
    expect(answered).toBeGreaterThan(1000)
  })
})
