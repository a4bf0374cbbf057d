import { describe, expect, it } from 'vitest'
import { messageExpression, plainJson } from '../../shared/jsonata.ts'
import { parseEr7, serializeEr7 } from '../../shared/hl7v2/index.ts'
import { message } from '../_setup.ts'

// Finding: a segment given as one object (JSONata's singleton: a one-item result is a bare object)
// was dropped without a word, so an ORU with one lab result went out with no OBX.
const MSH = { 1: '|', 2: '^~\\&', 9: [{ 1: 'ORU', 2: 'R01' }], 10: 'X1', 12: '2.5.1' }

function refusal(shape: unknown): { code: string; message: string } {
  try {
    serializeEr7(shape as never)
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message }
  }
  throw new Error('expected a throw')
}

describe('serializeEr7: a segment given as one object', () => {
  it('writes a segment given as an object (MSH and PID alike) as one segment', () => {
    const text = serializeEr7({ MSH, PID: { 3: 'M1', 5: 'DOE' } } as never)
    expect(text).toBe('MSH|^~\\&|||||||ORU^R01|X1||2.5.1\rPID|||M1||DOE\r')
    expect(serializeEr7({ MSH: MSH, PID: [{ 3: 'M1' }] } as never)).toBe('MSH|^~\\&|||||||ORU^R01|X1||2.5.1\rPID|||M1\r')
  })

  it('a JSONata map whose OBX comes from exactly one item keeps that one result', async () => {
    const expr = "{ 'MSH': [{ '1': '|', '2': '^~\\\\&', '9': 'ORU^R01', '10': 'X1' }], 'PID': { '3': mrn, '5': family }, 'OBX': items.{ '1': n, '5': value } }"
    const map = async (body: unknown) => plainJson(await messageExpression(expr, 'map')(message(body)))
    const one = await map({ mrn: 'M1', family: 'DOE', items: [{ n: 1, value: '13.8' }] })
    expect(serializeEr7(one as never).split('\r').slice(1)).toEqual(['PID|||M1||DOE', 'OBX|1||||13.8', ''])
    const two = await map({ mrn: 'M1', family: 'DOE', items: [{ n: 1, value: '13.8' }, { n: 2, value: '4.1' }] })
    expect(serializeEr7(two as never).split('\r').slice(1)).toEqual(['PID|||M1||DOE', 'OBX|1||||13.8', 'OBX|2||||4.1', ''])
  })

  it('"segments" takes a singleton as that name\'s one segment, and counts it', () => {
    const shape = { segments: ['MSH', 'OBX', 'PID'], MSH, PID: { 3: 'M1' }, OBX: { 1: '1' } }
    expect(serializeEr7(shape as never)).toBe('MSH|^~\\&|||||||ORU^R01|X1||2.5.1\rOBX|1\rPID|||M1\r')
    expect(refusal({ segments: ['MSH', 'PID', 'PID'], MSH, PID: { 3: 'M1' } }).message)
      .toBe('invalid HL7 v2 message: cannot serialize: "segments" lists PID 2 times but PID holds 1 segments')
    expect(refusal({ segments: ['MSH'], MSH, PID: { 3: 'M1' } }).message)
      .toBe('invalid HL7 v2 message: cannot serialize: PID holds 1 segments but "segments" lists it 0 times')
  })

  it.each([
    [{ MSH, PID: 'M1' }, 'PID is a string: a segment is an object (or an array of them)'],
    [{ MSH, OBX: 5 }, 'OBX is a number: a segment is an object (or an array of them)'],
    [{ MSH, PID: null }, 'PID is null: a segment is an object (or an array of them)'],
    [{ MSH, OBX: [{ 1: '1' }, 'x'] }, 'OBX[1] is a string: a segment is an object'],
    [{ MSH: 'MSH|^~\\&' }, 'MSH is a string: a segment is an object (or an array of them)'],
    [{ segments: ['MSH', 'PID'], MSH, PID: true }, 'PID is a boolean: a segment is an object (or an array of them)'],
  ])('refuses a segment that is neither an object nor an array of objects, naming it: %j', (shape, why) => {
    expect(refusal(shape)).toEqual({ code: 'ERR_HL7_PARSE', message: `invalid HL7 v2 message: cannot serialize: ${why}` })
  })

  it('a parsed message still round-trips (every segment an array)', () => {
    const text = 'MSH|^~\\&|LAB||||20240105||ORU^R01|X1|P|2.5.1\rPID|||M1\rOBX|1||||A\rNTE|1\rOBX|2||||B\r'
    expect(serializeEr7(parseEr7(text))).toBe(text)
  })
})
