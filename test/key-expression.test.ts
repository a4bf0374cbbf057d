import { describe, expect, it } from 'vitest'
import { keyExpressionProblem, searchKeysOf } from '../shared/key-expression.ts'
import { HL7_ER7_CONTENT_TYPE } from '../shared/hl7v2/index.ts'
import { orderKeyOf } from '../engine/runtime/intake.ts'

const er7 = (mrn: string) => ({
  body: `MSH|^~\\&|EPIC|GEN|||20260301||ADT^A08|C${mrn}|P|2.5.1\rPID|1||${mrn}^^^GEN^MR~Y${mrn}^^^X^PI||DOE^JANE\rPV1|1|I|||||||||||||||||V9\r`,
  contentType: HL7_ER7_CONTENT_TYPE,
})

describe('search keys (options.searchKeys)', () => {
  it('a string or number gives one value, an array several (deduplicated), nothing or an empty array none', async () => {
    const keys = searchKeysOf({ mrn: 'patient.mrn', order: 'orders.id', none: 'missing', empty: '[]', num: 'n' })
    const problems: string[] = []
    const got = await keys({ body: { patient: { mrn: '203713' }, orders: [{ id: 'A' }, { id: 7 }, { id: 'A' }], n: 42 } }, (n, r) => problems.push(`${n}: ${r}`))
    expect(got).toEqual({ mrn: ['203713'], order: ['A', '7'], num: ['42'] })
    expect(problems).toEqual([])
  })

  it('an expression that throws or gives something else indexes nothing for that key and reports why', async () => {
    const keys = searchKeysOf({ boom: '$error("no mrn")', obj: 'patient', bool: 'flag', ok: 'patient.mrn' })
    const problems: string[] = []
    const got = await keys({ body: { patient: { mrn: 'x' }, flag: true } }, (n, r) => problems.push(`${n}: ${r}`))
    expect(got).toEqual({ ok: ['x'] })
    expect(problems).toEqual(['boom: the expression failed at position 7 ($error): no mrn', 'obj: the expression gave an object, not a string or number', 'bool: the expression gave a boolean, not a string or number'])
  })

  it('a run-time failure says the position and token, never the value from the message', async () => {
    const keys = searchKeysOf({ fn: 'patient.$undefinedFn(mrn)', sum: 'patient.mrn + 1' })
    const problems: string[] = []
    expect(await keys({ body: { patient: { mrn: 'MRN-5550172' } } }, (n, r) => problems.push(`${n}: ${r}`))).toEqual({})
    expect(problems).toEqual([
      'fn: the expression failed at position 21 ($undefinedFn): Attempted to invoke a non-function',
      'sum: the expression failed at position 13 (+): The left side of the "+" operator must evaluate to a number',
    ])
  })

  it('on ER7 an HL7 terse path reads the parsed message; on JSON the same text is JSONata', async () => {
    const keys = searchKeysOf({ mrn: 'PID.3.1', other: 'PID.3[2].1', visit: 'PV1.19', family: '$substringBefore(PID, "^")' })
    const problems: string[] = []
    expect(await keys(er7('100234'), (n, r) => problems.push(`${n}: ${r}`))).toEqual({ mrn: ['100234'], other: ['Y100234'], visit: ['V9'] })
    expect(problems).toEqual([])
    expect(await keys({ body: { PID: 'DOE^JANE' } }, () => {})).toEqual({ family: ['DOE'] })
    const bad: string[] = []
    expect(await keys({ body: 'not hl7', contentType: HL7_ER7_CONTENT_TYPE }, (n, r) => bad.push(`${n}: ${r}`))).toEqual({})
    expect(bad[0]).toMatch(/^mrn: the expression failed: the message is not valid HL7 v2: /)
  })

  it('checks expressions: a terse path is always valid, anything else must compile as JSONata', () => {
    expect(keyExpressionProblem('OBX[2].5')).toBeUndefined()
    expect(keyExpressionProblem('patient.mrn')).toBeUndefined()
    expect(keyExpressionProblem('patient[')).toMatch(/^invalid JSONata expression/)
  })
})

describe('orderBy with a JSONata expression that fails at run time', () => {
  it('fails with the position and token, never the value from the message', async () => {
    const err = await orderKeyOf('$uppercase(mrn)')({ body: { mrn: 100234987 } }).catch((e: Error) => e)
    expect((err as Error).message).toBe('the expression failed at position 11 ($uppercase): Argument 1 of function "uppercase" does not match function signature')
    expect(((err as Error).cause as { value: unknown }).value).toBe(100234987)
  })
})

describe('orderBy with an HL7 terse path', () => {
  it('reads PID.3.1 from an ER7 body, and fails with the reason on one that does not parse', async () => {
    const keyOf = orderKeyOf('PID.3.1')
    expect(await keyOf(er7('100234'))).toBe('100234')
    expect(await keyOf(er7('555'))).toBe('555')
    await expect(keyOf({ body: 'MSH', contentType: HL7_ER7_CONTENT_TYPE })).rejects.toThrow(/the message is not valid HL7 v2/)
    await expect(keyOf({ body: er7('1').body.replace(/PID\|1\|\|[^|]*/, 'PID|1||'), contentType: HL7_ER7_CONTENT_TYPE })).rejects.toThrow('the expression gave no value')
  })
})
