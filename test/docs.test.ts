import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateDocs, README_FILE, ROOT, SCHEMA_FILE, TEST_SCHEMA_FILE } from '../engine/docs.ts'
import { builtinComponents } from '../components/index.ts'
import { credentialSchema } from '../shared/oauth/index.ts'
import { ERROR_CODES } from '../shared/errors.ts'
import { createAjv } from '../shared/config/ajv.ts'

/** Every property of a schema, as [pointer, schema], walking properties, items and combinators. */
function properties(schema: Record<string, any>, at = ''): Array<[string, Record<string, any>]> {
  const out: Array<[string, Record<string, any>]> = []
  for (const [k, v] of Object.entries((schema.properties ?? {}) as Record<string, Record<string, any>>)) {
    out.push([`${at}/${k}`, v])
    out.push(...properties(v, `${at}/${k}`))
  }
  if (schema.items && typeof schema.items === 'object') out.push(...properties(schema.items, `${at}/items`))
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') out.push(...properties(schema.additionalProperties, `${at}/*`))
  for (const key of ['anyOf', 'oneOf', 'allOf']) for (const [i, s] of ((schema[key] ?? []) as Record<string, any>[]).entries()) out.push(...properties(s, `${at}/${key}/${i}`))
  return out
}

describe('generated docs', () => {
  it('schema/channel.schema.json matches a fresh generation (stale: run npm run docs)', async () => {
    const { schema } = await generateDocs()
    expect(readFileSync(SCHEMA_FILE, 'utf8') === schema, 'stale: run npm run docs').toBe(true)
  })

  it('schema/channel-test.schema.json matches a fresh generation (stale: run npm run docs)', async () => {
    const { testSchema } = await generateDocs()
    expect(readFileSync(TEST_SCHEMA_FILE, 'utf8') === testSchema, 'stale: run npm run docs').toBe(true)
  })

  it('the README references and error table match a fresh generation (stale: run npm run docs)', async () => {
    const { readme } = await generateDocs()
    expect(readFileSync(README_FILE, 'utf8') === readme, 'stale: run npm run docs').toBe(true)
  })

  it('the editor schema is itself a valid JSON Schema that accepts a channel file', async () => {
    const { schema } = await generateDocs()
    const ajv = createAjv()
    const validate = ajv.compile(JSON.parse(schema))
    expect(validate({ name: 'x', source: { type: './my-source.ts' }, destinations: [{ name: 'd', type: './d.ts' }] }), JSON.stringify(validate.errors)).toBe(true)
    expect(validate({ name: 'x', source: { type: './s.ts' }, destinations: [{ name: 'd', type: './d.ts' }], typo: 1 })).toBe(false)
  })

  it('every property of every built-in component and of credentials has a description', async () => {
    const missing: string[] = []
    for (const c of builtinComponents) for (const [p, s] of properties(c.configSchema)) if (!s.description) missing.push(`${c.type}${p}`)
    for (const [p, s] of properties(credentialSchema)) if (!s.description && !p.includes('/anyOf/') && !p.includes('/oneOf/')) missing.push(`credential${p}`)
    expect(missing).toEqual([])
  })

  it('every source file the README names exists (the architecture picture, the bench list…)', () => {
    const named = new Set(readFileSync(README_FILE, 'utf8').match(/\b(?:components|engine|shared|bench|test|bin)\/[\w./-]+\.(?:ts|js|mjs)\b/g))
    expect(named.size).toBeGreaterThan(20)
    expect([...named].filter((f) => !existsSync(join(ROOT, f)))).toEqual([])
  })

  it('every error code is documented in the README, each in a row of the error table', () => {
    const readme = readFileSync(README_FILE, 'utf8')
    expect(ERROR_CODES.filter((c) => !readme.includes(`\`${c}\``))).toEqual([])
    const table = readme.slice(readme.indexOf('<!-- BEGIN GENERATED ERRORS -->'), readme.indexOf('<!-- END GENERATED ERRORS -->'))
    expect([...table.matchAll(/^\| `(ERR_[A-Z0-9_]+)` \|/gm)].map((m) => m[1])).toEqual([...ERROR_CODES])
  })
})
