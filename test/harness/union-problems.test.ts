import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createAjv } from '../../shared/config/ajv.ts'
import { ajvProblems } from '../../shared/config/problems.ts'
import type { JsonSchema } from '../../shared/component.ts'
import { runCli } from '../_cli.ts'

// A field accepting "one object or a list of them" (anyOf/oneOf of an object schema and an array of it):
// a problem inside the value is reported from the branch whose type the value has, not as a vague "must be X or Y".

const DIR = mkdtempSync(join(tmpdir(), 'weir-union-problems-'))
afterAll(() => rmSync(DIR, { recursive: true, force: true }))

writeFileSync(join(DIR, 'channel.json'), JSON.stringify({
  name: 'u', source: { type: 'http-listener', config: { port: 7001, path: '/in' } },
  destinations: [{ name: 'archive', type: 'file', config: { directory: 'out' } }],
}))

const caseWith = (expect: Record<string, unknown>) => ({ channel: 'channel.json', cases: [{ name: 'c', steps: [{ send: { body: { a: 1 } } }], expect }] })

/** The problem lines `weir validate` prints for a test file whose only case expects `expect`. */
async function problems(name: string, expect: Record<string, unknown>): Promise<string[]> {
  const file = join(DIR, `${name}.test.json`)
  writeFileSync(file, JSON.stringify(caseWith(expect)))
  const { code, err } = await runCli(['validate', file])
  if (code === 0) return []
  return err.split('\n').filter((l) => l.includes(`${file}#`)).map((l) => l.slice(l.indexOf('#')))
}

describe('a test file field taking one object or a list of them', () => {
  it('an object with a misspelled key: the key, at its pointer, with a suggestion (tokenRequests)', async () => {
    expect(await problems('token-typo', { tokenRequests: { count: 1, grnt: 'x' } }))
      .toEqual(['#/cases/0/expect/tokenRequests/grnt: unknown property "grnt" (did you mean "grant"?)'])
  })

  it('an object with a misspelled key: the key, at its pointer, with a suggestion (a deliveries entry)', async () => {
    expect(await problems('delivery-typo', { deliveries: { archive: { count: 1, bdy: {} } } }))
      .toEqual(['#/cases/0/expect/deliveries/archive/bdy: unknown property "bdy" (did you mean "body"?)'])
  })

  it('an object with a value of the wrong type: that value, at its pointer', async () => {
    expect(await problems('token-count', { tokenRequests: { count: 'one' } }))
      .toEqual(['#/cases/0/expect/tokenRequests/count: must be integer'])
  })

  it('a list with a bad item: the item\'s problem, at the item\'s pointer', async () => {
    expect(await problems('token-list', { tokenRequests: [{ count: 1 }, { count: 1, grnt: 'x' }] }))
      .toEqual(['#/cases/0/expect/tokenRequests/1/grnt: unknown property "grnt" (did you mean "grant"?)'])
    expect(await problems('delivery-list', { deliveries: { archive: [{ count: -1 }] } }))
      .toEqual(['#/cases/0/expect/deliveries/archive/0/count: must be >= 0'])
  })

  it('an empty list: the list\'s own problem', async () => {
    expect(await problems('token-empty', { tokenRequests: [] }))
      .toEqual(['#/cases/0/expect/tokenRequests: must NOT have fewer than 1 items'])
  })

  it('a value of neither type still names the accepted forms', async () => {
    expect(await problems('token-string', { tokenRequests: 'x' }))
      .toEqual(['#/cases/0/expect/tokenRequests: must be an object with "credential", "count", "grant", "authMethod", "scope", "assertion", "errors", "error", "spentRefreshTokens" or array'])
    expect(await problems('delivery-string', { deliveries: { archive: 'x' } }))
      .toEqual(['#/cases/0/expect/deliveries/archive: must be an object with "count", "body", "bodyMatches", "contentType" or array'])
  })

  it('several cases: each problem at its own case', async () => {
    const file = join(DIR, 'two-cases.test.json')
    const c = (name: string, tokenRequests: unknown) => ({ name, steps: [{ send: { body: { a: 1 } } }], expect: { tokenRequests } })
    writeFileSync(file, JSON.stringify({ channel: 'channel.json', cases: [c('a', { grnt: 'x' }), c('b', [{ scpe: 'x' }])] }))
    const { err } = await runCli(['validate', file])
    expect(err).toContain(`${file}#/cases/0/expect/tokenRequests/grnt: unknown property "grnt" (did you mean "grant"?)`)
    expect(err).toContain(`${file}#/cases/1/expect/tokenRequests/0/scpe: unknown property "scpe" (did you mean "scope"?)`)
    expect(err).not.toContain(' or array')
  })
})

describe('ajvProblems: any anyOf/oneOf of an object and an array, nested too', () => {
  const item: JsonSchema = { type: 'object', additionalProperties: false, properties: { name: { type: 'string' }, size: { type: 'integer' } } }
  const schema: JsonSchema = {
    type: 'object', additionalProperties: false,
    properties: {
      one: { oneOf: [item, { type: 'array', items: item }] },
      outer: { anyOf: [{ type: 'object', additionalProperties: false, properties: { inner: { anyOf: [item, { type: 'array', items: item }] } } }, { type: 'array' }] },
      secret: { writeOnly: true, anyOf: [{ type: 'string', minLength: 1 }, { type: 'object', required: ['$env'], additionalProperties: false, properties: { $env: { type: 'string' } } }, { type: 'object', required: ['$file'], additionalProperties: false, properties: { $file: { type: 'string' } } }] },
      channels: { anyOf: [{ const: '*' }, { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[a-z]+$' } }] },
    },
  }
  const validate = createAjv().compile(schema)
  const lines = (data: unknown) => {
    expect(validate(data)).toBe(false)
    return ajvProblems(validate.errors ?? [], 'f.json', '', data).map((p) => `${p.pointer}: ${p.message}`)
  }

  it('oneOf: the object branch\'s problems for an object, the array branch\'s for an array, the forms otherwise', () => {
    expect(lines({ one: { nme: 'x' } })).toEqual(['/one/nme: unknown property "nme" (did you mean "name"?)'])
    expect(lines({ one: [{ name: 'x' }, { size: 'big' }] })).toEqual(['/one/1/size: must be integer'])
    expect(lines({ one: 5 })).toEqual(['/one: must be an object with "name", "size" or array'])
  })

  it('a union inside a union: down to the key', () => {
    expect(lines({ outer: { inner: { sise: 1 } } })).toEqual(['/outer/inner/sise: unknown property "sise" (did you mean "size"?)'])
    expect(lines({ outer: { inner: [{ sise: 1 }] } })).toEqual(['/outer/inner/0/sise: unknown property "sise" (did you mean "size"?)'])
    expect(lines({ outer: { inner: true } })).toEqual(['/outer/inner: must be an object with "name", "size" or array'])
  })

  it('several branches of the value\'s type (a secret reference) and branches without a type keep the forms', () => {
    expect(lines({ secret: { $env: 'A', $file: 'b' } })).toEqual(['/secret: must be a string or a secret reference {"$env": "NAME"} or {"$file": "path"}'])
    expect(lines({ channels: 'all' })).toEqual(['/channels: must be "*" or array'])
    expect(lines({ channels: ['ok', 'Bad'] })).toEqual(['/channels/1: must match pattern "^[a-z]+$"'])
  })
})
