import { afterEach, describe, expect, it } from 'vitest'
import match from '../../../components/filters/match.ts'
import { loadComponentConfig, message, testContext, type TestContext } from '../../_setup.ts'

let t: TestContext
afterEach(async () => { await t?.cleanup() })

async function filter(config: Record<string, unknown>) {
  const loaded = await loadComponentConfig(match, config)
  expect(loaded.problems).toEqual([])
  t = await testContext()
  return match.create(loaded.config as never, t.ctx)
}

describe('match filter config', () => {
  it.each([
    [{}, '/filters/0/config', 'must have required property "jsonata"'],
    [{ jsonata: '' }, '/filters/0/config/jsonata', 'must NOT have fewer than 1 characters'],
    [{ jsonata: 'a = ' }, '/filters/0/config/jsonata', 'invalid JSONata expression at position 4: Unexpected end of expression'],
    [{ jsonata: 'a', onError: 'skip' }, '/filters/0/config/onError', 'must be one of "error", "drop"'],
    [{ jsonata: 'a', extra: 1 }, '/filters/0/config/extra', 'unknown property "extra"; expected one of "jsonata", "onError"'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(match, config)
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([[pointer, msg]])
  })

  it('defaults onError to "error"', async () => {
    const { config } = await loadComponentConfig(match, { jsonata: 'true' })
    expect(config).toEqual({ jsonata: 'true', onError: 'error' })
  })
})

describe('match filter', () => {
  it('keeps messages whose predicate is true and drops the others', async () => {
    const f = await filter({ jsonata: "type = 'ADT'" })
    const keep = message({ type: 'ADT', mrn: '1' })
    expect(await f.process(keep)).toBe(keep)
    expect(await f.process(message({ type: 'ORU' }))).toBeNull()
    expect(await f.process(message({ mrn: '2' }))).toBeNull()
  })

  it('uses JSONata truthiness for non-boolean results', async () => {
    const f = await filter({ jsonata: 'items' })
    expect(await f.process(message({ items: [0, 'x'] }))).not.toBeNull()
    expect(await f.process(message({ items: [] }))).toBeNull()
    expect(await f.process(message({ items: '' }))).toBeNull()
  })

  it('binds $message to the whole message', async () => {
    const f = await filter({ jsonata: "$message.attributes.source = 'lab'" })
    expect(await f.process(message({}, { attributes: { source: 'lab' } }))).not.toBeNull()
    expect(await f.process(message({}, { attributes: { source: 'adt' } }))).toBeNull()
  })

  it('a run-time failure is a permanent error by default, a logged drop with onError "drop"', async () => {
    const f = await filter({ jsonata: '$number(x) > 1' })
    const err = await Promise.resolve().then(() => f.process(message({ x: 'abc' }))).catch((e) => e)
    expect(err.code).toBe('ERR_DELIVERY_PERMANENT')
    expect(err.retryable).toBe(false)
    expect(err.message).toMatch(/^match expression failed at position 8 \(\$number\): Unable to cast value to a number/)
    await t.cleanup()
    const g = await filter({ jsonata: '$number(x) > 1', onError: 'drop' })
    expect(await g.process(message({ x: 'abc' }))).toBeNull()
    expect(t.logs.find((l) => l.msg === 'message dropped')?.reason).toMatch(/^match expression failed at position 8 \(\$number\): /)
  })
})
