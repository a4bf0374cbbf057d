import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { testEditorSchema, testFileSchema } from '../../engine/harness/test-file.ts'
import { createAjv } from '../../shared/config/ajv.ts'

/** Every property of a schema, as [pointer, schema], through items, additionalProperties and anyOf. */
function properties(schema: Record<string, any>, at = ''): Array<[string, Record<string, any>]> {
  const out: Array<[string, Record<string, any>]> = []
  for (const [k, v] of Object.entries((schema.properties ?? {}) as Record<string, Record<string, any>>)) out.push([`${at}/${k}`, v], ...properties(v, `${at}/${k}`))
  if (schema.items && typeof schema.items === 'object') out.push(...properties(schema.items, `${at}/items`))
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') out.push(...properties(schema.additionalProperties, `${at}/*`))
  for (const [i, s] of ((schema.anyOf ?? []) as Record<string, any>[]).entries()) out.push(...properties(s, `${at}/anyOf/${i}`))
  return out
}

const exampleTests = ['channels', 'channels/broken', 'test/fixtures/sandbox']
  .flatMap((d) => readdirSync(resolve(d)).filter((f) => f.endsWith('.test.json')).map((f) => join(d, f)))

const validate = createAjv().compile(testEditorSchema())

describe('the test-file schema', () => {
  it('describes every property', () => {
    expect(properties(testFileSchema).filter(([, s]) => !s.description).map(([p]) => p)).toEqual([])
  })

  it.each(exampleTests)('the editor schema accepts %s, which names it', (f) => {
    const data = JSON.parse(readFileSync(f, 'utf8'))
    expect(data.$schema).toMatch(/(^|\/)schema\/channel-test\.schema\.json$/)
    expect(validate(data), JSON.stringify(validate.errors)).toBe(true)
  })

  it('the editor schema refuses an unknown option', () => {
    expect(validate({ channel: 'c.json', cases: [{ name: 'x', steps: [{ send: { body: 'x', contentTyp: 'text/plain' } }], expect: {} }] })).toBe(false)
    expect(validate.errors?.[0]).toMatchObject({ instancePath: '/cases/0/steps/0/send', keyword: 'additionalProperties', params: { additionalProperty: 'contentTyp' } })
  })

  it('a send step\'s fileName is a plain file name: no / or \\, not . or ..', () => {
    const withName = (fileName: string) => ({ channel: 'c.json', cases: [{ name: 'x', steps: [{ send: { body: 'x', fileName } }], expect: {} }] })
    for (const bad of ['../x.json', 'a/b.json', '/tmp/x.json', 'a\\b.json', '..\\x.json', '.', '..', '']) expect(validate(withName(bad)), bad).toBe(false)
    for (const good of ['x.json', '..x', 'a..b.txt', '.hidden']) expect(validate(withName(good)), good).toBe(true)
  })
})
