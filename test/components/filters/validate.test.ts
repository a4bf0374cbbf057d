import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import validate from '../../../components/filters/validate.ts'
import { loadComponentConfig, message, tempDir, testContext, type TestContext } from '../../_setup.ts'

let t: TestContext
afterEach(async () => { await t?.cleanup() })

const patientSchema = { type: 'object', required: ['mrn'], properties: { mrn: { type: 'string', pattern: '^[0-9]+$' }, age: { type: 'integer' } } }

async function filter(config: Record<string, unknown>, channelDir?: string) {
  const loaded = await loadComponentConfig(validate, config, { dir: channelDir })
  expect(loaded.problems).toEqual([])
  t = await testContext(channelDir ? { channelDir } : {})
  return validate.create(loaded.config as never, t.ctx)
}

describe('validate filter config', () => {
  it.each([
    [{}, '/filters/0/config', 'must have "schema" or "schemaFile"'],
    [{ schema: {}, schemaFile: 'a.json' }, '/filters/0/config', 'give either "schema" or "schemaFile", not both'],
    [{ schema: { type: 'strnig' } }, '/filters/0/config/schema', 'invalid JSON Schema: schema is invalid: data/type must be equal to one of the allowed values, data/type must be array, data/type must match a schema in anyOf'],
    [{ schema: {}, onInvalid: 'ignore' }, '/filters/0/config/onInvalid', 'must be one of "error", "drop"'],
    [{ schema: {}, maxErrors: 0 }, '/filters/0/config/maxErrors', 'must be >= 1'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(validate, config)
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([[pointer, msg]])
  })
})

describe('validate filter', () => {
  it('passes a valid message through unchanged', async () => {
    const f = await filter({ schema: patientSchema })
    const m = message({ mrn: '123', age: 4 })
    expect(await f.process(m)).toBe(m)
  })

  it('an invalid message is a permanent error carrying every schema error', async () => {
    const f = await filter({ schema: patientSchema })
    const err = await Promise.resolve().then(() => f.process(message({ mrn: 'x1', age: 'old' }))).catch((e) => e)
    expect(err.code).toBe('ERR_MESSAGE_INVALID')
    expect(err.retryable).toBe(false)
    expect(err.message).toBe('message does not match the schema: /mrn must match pattern "^[0-9]+$"; /age must be integer')
    expect(err.schemaErrors.map((e: { instancePath: string }) => e.instancePath)).toEqual(['/mrn', '/age'])
  })

  it('quotes at most maxErrors errors', async () => {
    const f = await filter({ schema: { type: 'object', required: ['a', 'b', 'c'] }, maxErrors: 2 })
    const err = await Promise.resolve().then(() => f.process(message({}))).catch((e) => e)
    expect(err.message).toBe("message does not match the schema: / must have required property 'a'; / must have required property 'b'; and 1 more")
  })

  it('with onInvalid "drop" drops the message and logs the schema errors', async () => {
    const f = await filter({ schema: patientSchema, onInvalid: 'drop' })
    expect(await f.process(message({ age: 1 }, { id: 'm7' }))).toBeNull()
    const line = t.logs.find((l) => l.msg === 'invalid message dropped')
    expect(line).toMatchObject({ messageId: 'm7', reason: "message does not match the schema: / must have required property 'mrn'" })
  })

  it('reads schemaFile relative to the channel directory, and supports draft 2020-12 and formats', async () => {
    const d = await tempDir()
    try {
      await writeFile(join(d.dir, 'p.schema.json'), JSON.stringify({ $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object', properties: { born: { type: 'string', format: 'date' } }, prefixItems: [{ type: "object" }] }))
      const f = await filter({ schemaFile: 'p.schema.json' }, d.dir)
      expect(await f.process(message({ born: '2020-01-31' }))).not.toBeNull()
      const err = await Promise.resolve().then(() => f.process(message({ born: '2020-13-45' }))).catch((e) => e)
      expect(err.message).toBe('message does not match the schema: /born must match format "date"')
    } finally { await d.cleanup() }
  })

  it('a schemaFile that is missing or not a JSON Schema is a problem at its pointer in the channel file, found at load (weir validate)', async () => {
    const d = await tempDir()
    try {
      await writeFile(join(d.dir, 'bad.schema.json'), JSON.stringify({ type: 'objectx' }))
      const missing = await loadComponentConfig(validate, { schemaFile: 'nope.json' }, { dir: d.dir })
      const invalid = await loadComponentConfig(validate, { schemaFile: 'bad.schema.json' }, { dir: d.dir })
      expect(missing.problems).toEqual([{ file: join(d.dir, 'channel.json'), pointer: '/filters/0/config/schemaFile', message: `schema file not found: ${join(d.dir, 'nope.json')}` }])
      expect(invalid.problems.map((p) => [p.pointer, p.message.split(':')[0]])).toEqual([['/filters/0/config/schemaFile', 'invalid JSON Schema']])
    } finally { await d.cleanup() }
  })
})
