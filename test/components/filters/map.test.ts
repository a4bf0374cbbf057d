import { afterEach, describe, expect, it } from 'vitest'
import map from '../../../components/filters/map.ts'
import { loadComponentConfig, message, testContext, type TestContext } from '../../_setup.ts'
import type { Message } from '../../../shared/component.ts'
import { plainJson } from '../../../shared/jsonata.ts'

let t: TestContext
afterEach(async () => { await t?.cleanup() })

async function filter(config: Record<string, unknown>) {
  const loaded = await loadComponentConfig(map, config)
  expect(loaded.problems).toEqual([])
  t = await testContext()
  return map.create(loaded.config as never, t.ctx)
}

describe('map filter config', () => {
  it.each([
    [{}, '/filters/0/config', 'must have required property "jsonata"'],
    [{ jsonata: '{ "a": ' }, '/filters/0/config/jsonata', 'invalid JSONata expression at position 7: Expected "}" before end of expression'],
    [{ jsonata: 'a', contentType: 5 }, '/filters/0/config/contentType', 'must be string'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(map, config)
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([[pointer, msg]])
  })
})

describe('map filter', () => {
  it('replaces the body with the expression result, keeping id and attributes', async () => {
    const f = await filter({ jsonata: "{ 'resourceType': 'Patient', 'id': mrn, 'name': [{ 'family': last }], 'src': $message.attributes.file }" })
    const out = (await f.process(message({ mrn: '42', last: 'Doe' }, { id: 'abc', attributes: { file: 'a.json' } }))) as Message
    expect(out.id).toBe('abc')
    expect(out.attributes).toEqual({ file: 'a.json' })
    expect(out.body).toEqual({ resourceType: 'Patient', id: '42', name: [{ family: 'Doe' }], src: 'a.json' })
    expect(out.contentType).toBe('application/json')
  })

  it('sets the content type from config, or derives it from the result', async () => {
    const f = await filter({ jsonata: "{ 'id': mrn }", contentType: 'application/fhir+json' })
    expect(((await f.process(message({ mrn: '1' }))) as Message).contentType).toBe('application/fhir+json')
    await t.cleanup()
    const g = await filter({ jsonata: "'MRN|' & mrn" })
    const out = (await g.process(message({ mrn: '1' }))) as Message
    expect(out).toMatchObject({ body: 'MRN|1', contentType: 'text/plain' })
  })

  it('an expression without a result or failing at run time is a permanent error', async () => {
    const f = await filter({ jsonata: 'missing.field' })
    const err = await Promise.resolve().then(() => f.process(message({ a: 1 }))).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', 'map expression produced no value (use the match filter to drop messages)'])
    await t.cleanup()
    const g = await filter({ jsonata: '$error("bad mrn")' })
    const err2 = await Promise.resolve().then(() => g.process(message({}))).catch((e) => e)
    expect([err2.code, err2.message]).toEqual(['ERR_DELIVERY_PERMANENT', 'map expression failed at position 7 ($error): bad mrn'])
  })

  it('a run-time failure says where in the expression and which token, as a compile-time problem says where', async () => {
    const f = await filter({ jsonata: "{ 'resourceType': 'Patient', 'x': $undefinedFn(mrn) }" })
    const err = await Promise.resolve().then(() => f.process(message({ mrn: '1' }))).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', 'map expression failed at position 47 ($undefinedFn): Attempted to invoke a non-function'])
  })

  // JSONata's error carries the data it failed on in `value` (here the MRN): the reason must not.
  it.each([
    ['$uppercase(mrn)', 100234987, 'map expression failed at position 11 ($uppercase): Argument 1 of function "uppercase" does not match function signature'],
    ['mrn + 1', 'MRN-5550172', 'map expression failed at position 5 (+): The left side of the "+" operator must evaluate to a number'],
  ])('a run-time failure of %s names the token, never the value from the message', async (jsonata, mrn, reason) => {
    const f = await filter({ jsonata })
    const err = await Promise.resolve().then(() => f.process(message({ mrn }))).catch((e) => e)
    expect(err.cause.value).toBe(mrn)
    expect(err.message).toBe(reason)
    expect(err.message).not.toContain(String(mrn))
  })

  it.each(['$uppercase', '/abc/', 'function($x) { $x }'])('a function result (%s) is a permanent error, not JSONata\'s internal object as the body nor a bare SyntaxError', async (jsonata) => {
    const f = await filter({ jsonata })
    const err = await Promise.resolve().then(() => f.process(message({ a: 1 }))).catch((e) => e)
    expect([err.code, err.message]).toEqual(['ERR_DELIVERY_PERMANENT', 'map expression produced a function (a JSONata function, lambda or regex), not a value; call it, e.g. $uppercase(name)'])
  })

  it('a result JSON cannot copy (a lambda inside an object) is a permanent error, not a bare TypeError', async () => {
    const f = await filter({ jsonata: "{ 'f': function($x) { $x } }" })
    const err = await Promise.resolve().then(() => f.process(message({ a: 1 }))).catch((e) => e)
    expect([err.code, err.message, err.cause?.name]).toEqual(['ERR_DELIVERY_PERMANENT', expect.stringMatching(/^map expression produced a value that is not JSON: Converting circular structure/), 'TypeError'])
  })
})

describe('plainJson: a JSONata result as the store keeps it', () => {
  const viaJson = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown
  const sequence = Object.assign(['a', 'b'], { sequence: true, keepSingleton: true })
  const withProto = JSON.parse('{ "__proto__": { "polluted": true }, "x": 1 }') as object
  const values: Array<[string, unknown]> = [
    ['a JSONata sequence (hidden flags)', { items: sequence }],
    ['undefined and functions left out of objects, null in arrays', { a: undefined, f: () => 1, list: [undefined, () => 1, 2] }],
    ['non-finite numbers and minus zero', { n: NaN, i: Infinity, z: -0, list: [NaN, -Infinity] }],
    ['a Date and a Buffer (their toJSON)', { at: new Date(0), buf: Buffer.from('hi') }],
    ['a Map and a class instance', { m: new Map([['k', 1]]), c: new (class { x = 1 })() }],
    ['an own "__proto__" key', withProto],
    ['primitives', ['s', 1.5, true, null]],
    ['nesting past the walk depth', JSON.parse('['.repeat(400) + '1' + ']'.repeat(400)) as unknown],
  ]

  it.each(values)('%s: the same as through JSON text', (_, value) => {
    const out = plainJson(value)
    expect(out).toStrictEqual(viaJson(value))
    expect(JSON.stringify(out)).toBe(JSON.stringify(value))
  })

  it('arrays lose the sequence flags, and a "__proto__" key stays data', () => {
    const out = plainJson({ items: sequence }) as { items: unknown[] }
    expect(Object.keys(out.items)).toEqual(['0', '1'])
    const proto = plainJson(withProto) as Record<string, unknown>
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype)
    expect(Object.keys(proto)).toEqual(['__proto__', 'x'])
  })

  it('a cycle fails as JSON.stringify does', () => {
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    expect(() => plainJson(cyclic)).toThrow(/circular/i)
  })

  it('the map filter stores the plain copy of a JSONata sequence', async () => {
    // A predicate: JSONata itself evaluates this one, and marks the array it returns as a sequence.
    const f = await filter({ jsonata: '{ "codes": items[code != ""].code }' })
    const out = (await f.process(message({ items: [{ code: 'a' }, { code: 'b' }] }))) as Message
    expect(Reflect.ownKeys((out.body as { codes: unknown[] }).codes)).toEqual(['0', '1', 'length'])
  })
})
