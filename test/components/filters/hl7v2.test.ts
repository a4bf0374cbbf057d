import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import hl7v2 from '../../../components/filters/hl7v2.ts'
import { classify } from '../../../engine/runtime/failures.ts'
import { loadComponentConfig, message, testContext, type TestContext } from '../../_setup.ts'
import type { Message } from '../../../shared/component.ts'

const ORU = readFileSync(new URL('../../fixtures/hl7v2/oru-r01-cbc-2.5.1.hl7', import.meta.url), 'utf8')
const ER7 = 'x-application/hl7-v2+er7'

let t: TestContext
afterEach(async () => { await t?.cleanup() })

async function filter(config: Record<string, unknown>) {
  const loaded = await loadComponentConfig(hl7v2, config)
  expect(loaded.problems).toEqual([])
  t = await testContext()
  return hl7v2.create(loaded.config as never, t.ctx)
}

async function failure(run: () => unknown): Promise<{ code: string; message: string; retryable: boolean }> {
  const err = await Promise.resolve().then(run).catch((e: unknown) => e) as { code: string; message: string }
  return { code: err.code, message: err.message, retryable: classify(err).retryable }
}

describe('hl7v2 filter config', () => {
  it.each([
    [{}, '/filters/0/config', 'must have required property "to"'],
    [{ to: 'xml' }, '/filters/0/config/to', 'must be one of "json", "er7"'],
    [{ to: 'json', strict: true }, '/filters/0/config/strict', 'unknown property "strict"; expected one of "to"'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(hl7v2, config)
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([[pointer, msg]])
  })
})

describe('hl7v2 filter', () => {
  it('to json: parses the ER7 body into the JSON shape, keeping id and attributes', async () => {
    const f = await filter({ to: 'json' })
    const out = (await f.process(message(ORU, { id: 'm7', contentType: ER7, attributes: { controlId: 'SQ240105101522881' } }))) as Message
    expect([out.id, out.contentType, out.attributes]).toEqual(['m7', 'application/json', { controlId: 'SQ240105101522881' }])
    const body = out.body as any
    expect(body.segments).toEqual(['MSH', 'PID', 'PV1', 'ORC', 'OBR', 'OBX', 'NTE', 'OBX', 'OBX', 'OBX', 'OBX', 'NTE', 'OBX'])
    expect(body.OBX.map((o: any) => o[5][0][1])).toEqual(['13.8', '4.12', '12.1', '36.4', '412', '11.2'])
  })

  it('to er7: writes the JSON shape back byte for byte with the HL7 content type', async () => {
    const json = (await (await filter({ to: 'json' })).process(message(ORU, { contentType: ER7 }))) as Message
    await t.cleanup()
    const f = await filter({ to: 'er7' })
    const out = (await f.process(JSON.parse(JSON.stringify(json)))) as Message
    expect([out.body, out.contentType]).toEqual([ORU, ER7])
  })

  it('a message that does not parse fails permanently with the reason', async () => {
    const f = await filter({ to: 'json' })
    expect(await failure(() => f.process(message('EVN|A01|20240105\rPID|1', { contentType: ER7 })))).toEqual({
      code: 'ERR_HL7_PARSE', message: 'invalid HL7 v2 message: segment 1: expected "MSH", found "EVN"', retryable: false,
    })
    expect(await failure(() => f.process(message({ resourceType: 'Patient' })))).toEqual({
      code: 'ERR_HL7_PARSE', message: 'invalid HL7 v2 message: hl7v2 (to json) expects ER7 text, the body is an object (content type application/json)', retryable: false,
    })
  })

  it('to er7: a body that is not the JSON shape fails permanently with the reason', async () => {
    const f = await filter({ to: 'er7' })
    expect(await failure(() => f.process(message(ORU, { contentType: ER7 })))).toEqual({
      code: 'ERR_HL7_PARSE', message: `invalid HL7 v2 message: hl7v2 (to er7) expects the HL7 v2 JSON shape, the body is a string (content type ${ER7})`, retryable: false,
    })
    expect(await failure(() => f.process(message({ PID: [{ 3: 'M1' }] })))).toEqual({
      code: 'ERR_HL7_PARSE', message: 'invalid HL7 v2 message: cannot serialize: no MSH segment', retryable: false,
    })
  })
})
