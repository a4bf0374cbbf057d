import { describe, expect, it } from 'vitest'
import { parseEr7, serializeEr7 } from '../../shared/hl7v2/index.ts'

const ADT = [
  'MSH|^~\\&|EPIC|UCMC|LAB|UCMC_LAB|20240105120000||ADT^A01^ADT_A01|MSG0001|P|2.5.1|||AL|NE',
  'PID|1||100234^^^UCMC&1.2.840.114350&ISO^MR~123-45-6789^^^SSA^SS||DOE^JANE^Q~SMITH^JANE^^^^^M||19800101|F|||12 MAIN ST\\S\\APT 4^^CHICAGO^IL^60637||""',
  'OBX|1|TX|||line one\\.br\\line two \\T\\ \\E\\|',
  'ZPD|VIP^Y',
].join('\r') + '\r'

describe('parseEr7', () => {
  it('gives each segment name its segments in order, fields keyed by number, MSH-1 and MSH-2 as written', () => {
    const m: any = parseEr7(ADT)
    expect(m.segments).toEqual(['MSH', 'PID', 'OBX', 'ZPD'])
    expect(m.MSH[0]).toMatchObject({ 1: '|', 2: '^~\\&', 3: [{ 1: 'EPIC' }], 8: '', 9: [{ 1: 'ADT', 2: 'A01', 3: 'ADT_A01' }], 16: [{ 1: 'NE' }] })
    expect(m.ZPD).toEqual([{ 1: [{ 1: 'VIP', 2: 'Y' }] }])
  })

  it('splits repetitions, components and subcomponents; tells the null value "" from empty', () => {
    const pid = (parseEr7(ADT) as any).PID[0]
    expect(pid[3]).toEqual([
      { 1: '100234', 2: '', 3: '', 4: { 1: 'UCMC', 2: '1.2.840.114350', 3: 'ISO' }, 5: 'MR' },
      { 1: '123-45-6789', 2: '', 3: '', 4: 'SSA', 5: 'SS' },
    ])
    expect(pid[5]).toEqual([{ 1: 'DOE', 2: 'JANE', 3: 'Q' }, { 1: 'SMITH', 2: 'JANE', 3: '', 4: '', 5: '', 6: '', 7: 'M' }])
    expect([pid[2], pid[13]]).toEqual(['', null])
  })

  it('decodes \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ and \\X..\\, keeps formatting escapes, and writes all of them back', () => {
    const m: any = parseEr7(ADT)
    expect(m.PID[0][11][0][1]).toBe('12 MAIN ST^APT 4')
    expect(m.OBX[0][5][0][1]).toBe('line one\\.br\\line two & \\')
    expect(serializeEr7(m)).toBe(ADT)
    const hex: any = parseEr7('MSH|^~\\&|A\rNTE|1||x\\X0D\\\\X0A\\y\\F\\\\R\\\r')
    expect(hex.NTE[0][3][0][1]).toBe('x\r\ny|~')
  })

  it('reads the separators from MSH-1 and MSH-2 instead of assuming them', () => {
    const text = 'MSH#$*!%#EPIC#UCMC#####ADT$A08#M2#P#2.4\rPID#1##777$$$UCMC$MR##ROE$RICHARD*ROE$DICK##!H!bold!N!#a%b!T!c\r'
    const m: any = parseEr7(text)
    expect(m.PID[0][3]).toEqual([{ 1: '777', 2: '', 3: '', 4: 'UCMC', 5: 'MR' }])
    expect(m.PID[0][5]).toEqual([{ 1: 'ROE', 2: 'RICHARD' }, { 1: 'ROE', 2: 'DICK' }])
    expect(m.PID[0][7]).toEqual([{ 1: '!H!bold!N!' }])
    expect(m.PID[0][8]).toEqual([{ 1: { 1: 'a', 2: 'b%c' } }])
    expect(serializeEr7(m)).toBe(text)
  })

  it('takes \\n and \\r\\n as segment terminators and writes \\r', () => {
    const lf = ADT.replaceAll('\r', '\n')
    expect(serializeEr7(parseEr7(lf))).toBe(ADT)
    expect(serializeEr7(parseEr7(ADT.replaceAll('\r', '\r\n')))).toBe(ADT)
  })

  it.each([
    ['', 'invalid HL7 v2 message: the message is empty', undefined],
    ['\r\n\r', 'invalid HL7 v2 message: the message is empty', undefined],
    ['\u0000\u0001\u00ff\u0010binary', 'invalid HL7 v2 message: binary data (a NUL byte at offset 0)', undefined],
    ['PID|1||100234', 'invalid HL7 v2 message: segment 1: expected "MSH", found "PID"', 1],
    ['MSH', 'invalid HL7 v2 message: segment 1 (MSH): truncated before MSH-1 (field separator)', 1],
    ['MSH|', 'invalid HL7 v2 message: segment 1 (MSH): truncated before MSH-2 (encoding characters)', 1],
    ['MSH|^~|A', 'invalid HL7 v2 message: segment 1 (MSH): MSH-2 encoding characters "^~" must be 4 or 5 distinct characters, none a letter, digit, space or the field separator', 1],
    ['MSH|^~\\&|A\rEVN|A01\rpid|1', 'invalid HL7 v2 message: segment 3: name "pid" is not 3 upper-case letters or digits', 3],
    ['MSH|^~\\&|A\rPIDX|1', 'invalid HL7 v2 message: segment 2 (PID): expected the field separator "|" after the segment name, found "X"', 2],
  ])('refuses %j with ERR_HL7_PARSE saying where and why', (text, message, segment) => {
    const err = (() => { try { return parseEr7(text) } catch (e) { return e } })() as { code: string; message: string; segment?: number }
    expect([err.code, err.message, err.segment]).toEqual(['ERR_HL7_PARSE', message, segment])
  })
})

describe('serializeEr7', () => {
  it('accepts plain text where a field or component is expected, and orders by keys without "segments"', () => {
    const text = serializeEr7({ MSH: [{ 1: '|', 2: '^~\\&', 9: [{ 1: 'ORU', 2: 'R01' }], 10: 'X1', 12: '2.5.1' }], PID: [{ 3: [{ 1: 'M1', 4: 'HOSP' }], 8: 'F' }], OBX: [{ 1: 1, 5: 'A|B' }, { 1: 2 }] } as never)
    expect(text).toBe('MSH|^~\\&|||||||ORU^R01|X1||2.5.1\rPID|||M1^^^HOSP|||||F\rOBX|1||||A\\F\\B\rOBX|2\r')
  })

  it.each([
    [{ PID: [{}] }, 'invalid HL7 v2 message: cannot serialize: no MSH segment'],
    [{ segments: ['MSH', 'PID'], MSH: [{}] }, 'invalid HL7 v2 message: cannot serialize: "segments" lists PID 1 times but PID holds 0 segments'],
    [{ segments: ['MSH'], MSH: [{}], NTE: [{}] }, 'invalid HL7 v2 message: cannot serialize: NTE holds 1 segments but "segments" lists it 0 times'],
    [{ segments: ['MSH', 'pid'], MSH: [{}] }, 'invalid HL7 v2 message: cannot serialize: "pid" in "segments" is not a segment name'],
    [{ MSH: [{ 3: [{ 1: { 1: [1] } }] }] }, 'invalid HL7 v2 message: cannot serialize MSH-3: expected text, null or an object of positions, found an array too deep'],
  ])('refuses a shape it cannot write: %j', (message, text) => {
    const err = (() => { try { return serializeEr7(message as never) } catch (e) { return e } })() as { code: string; message: string }
    expect([err.code, err.message]).toEqual(['ERR_HL7_PARSE', text])
  })
})
