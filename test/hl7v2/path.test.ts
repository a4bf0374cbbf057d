import { describe, expect, it } from 'vitest'
import { parseEr7, parseTersePath, readTersePath } from '../../shared/hl7v2/index.ts'

const msg = parseEr7([
  'MSH|^~\\&|LAB|HOSP|||20240105||ORU^R01^ORU_R01|CTRL1|P|2.5.1',
  'PID|1||100234^^^HOSP^MR~X77^^^OTHER^PI||DOE^JANE||||||||||||ACC&1&2|""',
  'OBX|1|NM|GLU||5.4',
  'OBX|2|NM|K||4.1',
].join('\r'))

const read = (path: string) => readTersePath(msg, parseTersePath(path)!)

describe('HL7 terse paths', () => {
  it('parses SEG[n].field[m].component.subcomponent, repetitions defaulting to the first', () => {
    expect(parseTersePath('PID.3.1')).toEqual({ segment: 'PID', segmentRepetition: 1, field: 3, fieldRepetition: 1, component: 1, subcomponent: 1 })
    expect(parseTersePath('OBX[2].5')).toEqual({ segment: 'OBX', segmentRepetition: 2, field: 5, fieldRepetition: 1, component: 1, subcomponent: 1 })
    expect(parseTersePath('PID.3[2].4.2')).toEqual({ segment: 'PID', segmentRepetition: 1, field: 3, fieldRepetition: 2, component: 4, subcomponent: 2 })
    for (const notOne of ['pid.3', 'PID', 'PID.0', 'PID.3.1.1.1', 'PID[0].3', 'patient.mrn', 'PID.3.x', ' PID.3']) expect(parseTersePath(notOne), notOne).toBeUndefined()
  })

  it('reads decoded leaves; nothing for an absent segment, field, repetition or the HL7 null', () => {
    const values: Record<string, string> = {
      'PID.3.1': '100234',
      'PID.3': '100234',
      'PID.3.5': 'MR',
      'PID.3[2].1': 'X77',
      'PID.5.2': 'JANE',
      'OBX.5': '5.4',
      'OBX[2].5': '4.1',
      'PID.17.1.2': '1',
      'PID.17': 'ACC',
      'MSH.10': 'CTRL1',
      'MSH.9.2': 'R01',
      'MSH.1': '|',
    }
    for (const [path, value] of Object.entries(values)) expect(read(path), path).toBe(value)
    for (const nothing of ['PID.18', 'PID.17.2', 'PID.2', 'PID.3[3].1', 'OBX[3].5', 'PV1.19', 'PID.99', 'PID.3.2', 'PID.5.2.2', 'MSH.1.2']) expect(read(nothing), nothing).toBeUndefined()
  })
})
