import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { messageExpression, plainJson } from '../../shared/jsonata.ts'
import { parseEr7 } from '../../shared/hl7v2/index.ts'
import { message } from '../_setup.ts'

const read = (file: string) => parseEr7(readFileSync(new URL(`../fixtures/hl7v2/${file}`, import.meta.url), 'utf8'))
const evaluate = async (expr: string, body: unknown) => plainJson(await messageExpression(expr, 'test expression')(message(body)))

// The README's "HL7 v2" section promises these readings; numeric names need backticks in JSONata.
describe('the JSON shape in JSONata', () => {
  const adt = read('adt-a01-2.5.1.hl7')
  const oru = read('oru-r01-cbc-2.5.1.hl7')

  it.each([
    ['PID.`3`.`1`', adt, ['E1048823', '999-12-3456']],
    ['PID.`3`[0].`1`', adt, 'E1048823'],
    ['PID.`3`[`5` = "MR"].`1`', adt, 'E1048823'],
    ['PID.`5`[0].`1`', adt, 'HARTLEY'],
    ['PID.`5`[0].`2`', adt, 'MARGARET'],
    ['PID.`8`.`1`', adt, 'F'],
    ['MSH.`9`.`2`', adt, 'A01'],
    ['PID.`11`[0].`4`', adt, 'IL'],
    ['OBX.`5`.`1`', oru, ['13.8', '4.12', '12.1', '36.4', '412', '11.2']],
    ['OBX[`3`.`1` = "718-7"].`5`.`1`', oru, '12.1'],
    ['(OBX.{ "code": `3`.`1`, "value": $number(`5`.`1`), "unit": `6`.`1` })[1]', oru, { code: '789-8', value: 4.12, unit: '10*6/uL' }],
    ['NTE.`3`.`1`', oru, ['Result verified by repeat analysis.', 'Platelet clumps not seen on smear review.']],
    ['$count(segments[$ = "OBX"])', oru, 6],
  ])('%s', async (expr, body, expected) => {
    expect(await evaluate(expr, body)).toEqual(expected)
  })

  it.each([
    ['PID.`3`.`1`', ['100234', '999-12-3456']],
    ['PID.`3`[0].`1`', '100234'],
    ['PID.`3`[`5` = "MR"].`1`', '100234'],
    ['PID.`5`[0].`1`', 'DOE'],
    ['PID.`3`[0].`4`.`2`', '1.2.840.114350'],
    ['PID.`8`.`1`', 'F'],
  ])('the README example: %s', async (expr, expected) => {
    const readme = parseEr7('MSH|^~\\&|EPIC\rPID|1||100234^^^UCMC&1.2.840.114350&ISO^MR~999-12-3456^^^SSA^SS||DOE^JANE~SMITH^JANE||19800101|F\r')
    expect(await evaluate(expr, readme)).toEqual(expected)
  })

  it('reads subcomponents one level deeper, and an empty field as ""', async () => {
    expect(await evaluate('PID.`3`[0].`4`', read('adt-a01-2.5.1.hl7'))).toBe('UCMC')
    expect(await evaluate('MSH.`4`.`1`.`2`', parseEr7('MSH|^~\\&|EPIC|UCMC&1.2.840.114350&ISO|\r'))).toBe('1.2.840.114350')
    expect(await evaluate('[PID.`2`, PID.`13`]', parseEr7('MSH|^~\\&|A\rPID|1||M1||||||||||""\r'))).toEqual(['', null])
  })
})
