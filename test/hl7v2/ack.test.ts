import { describe, expect, it } from 'vitest'
import { buildAck, readAck, readHeader } from '../../shared/hl7v2/index.ts'

const MSG = 'MSH|^~\\&|EPIC|UCMC\\T\\WEST|LAB|UCMC_LAB|20240105120000||ADT^A01^ADT_A01|MSG0001|P^T|2.5.1|||AL|NE\rPID|1||100234^^^UCMC^MR\r'
const now = new Date('2024-01-05T12:00:01Z')

function caught(run: () => unknown): { code: string; message: string } {
  try {
    run()
  } catch (e) {
    return e as { code: string; message: string }
  }
  throw new Error('expected a throw')
}

describe('readHeader', () => {
  it('reads the MSH fields routing and acknowledgements need, applications and facilities as ER7 text', () => {
    expect(readHeader(MSG)).toEqual({
      fieldSeparator: '|', encodingCharacters: '^~\\&',
      sendingApplication: 'EPIC', sendingFacility: 'UCMC\\T\\WEST', receivingApplication: 'LAB', receivingFacility: 'UCMC_LAB',
      messageType: 'ADT', trigger: 'A01', structure: 'ADT_A01', controlId: 'MSG0001', processingId: 'P', version: '2.5.1',
      acceptAckType: 'AL', applicationAckType: 'NE',
    })
  })

  it('takes the separators from MSH-1 and MSH-2 and reads absent fields as empty', () => {
    const h = readHeader('\nMSH#$*!%#OLD#FAC#####ORM$O01#C!F!7#P#2.3\n')
    expect([h.fieldSeparator, h.encodingCharacters, h.messageType, h.trigger, h.structure, h.controlId, h.version, h.acceptAckType]).toEqual(['#', '$*!%', 'ORM', 'O01', '', 'C!F!7', '2.3', ''])
  })

  it.each([
    ['', 'invalid HL7 v2 message: the message is empty'],
    ['\u0000\u0000\u000b', 'invalid HL7 v2 message: binary data (a NUL byte at offset 0)'],
    ['EVN|A01\rMSH|^~\\&', 'invalid HL7 v2 message: segment 1: expected "MSH", found "EVN"'],
    ['MSH|^~\\', 'invalid HL7 v2 message: segment 1 (MSH): MSH-2 encoding characters "^~\\\\" must be 4 or 5 distinct characters, none a letter, digit, space or the field separator'],
  ])('refuses %j with ERR_HL7_PARSE', (text, message) => {
    const err = caught(() => readHeader(text))
    expect([err.code, err.message]).toEqual(['ERR_HL7_PARSE', message])
  })
})

describe('buildAck', () => {
  it('swaps sender and receiver, answers ACK^<trigger>^ACK with the same version, MSA-2 = MSH-10', () => {
    expect(buildAck(readHeader(MSG), 'AA', { now, controlId: 'ACK0001' }))
      .toBe('MSH|^~\\&|LAB|UCMC_LAB|EPIC|UCMC\\T\\WEST|20240105120001+0000||ACK^A01^ACK|ACK0001|P|2.5.1\rMSA|AA|MSG0001\r')
  })

  it('adds an ERR segment for AE, AR, CE and CR, escaping the text (ERR-3 and ERR-8 from v2.5)', () => {
    const ack = buildAck(readHeader(MSG), 'AE', { now, controlId: 'A2', text: 'PID-3 missing | see ^log', errorCode: '101' })
    expect(ack.split('\r').slice(1)).toEqual([
      'MSA|AE|MSG0001|PID-3 missing \\F\\ see \\S\\log',
      'ERR|||101^Required field missing^HL70357|E||||PID-3 missing \\F\\ see \\S\\log',
      '',
    ])
    expect(readAck(ack)).toEqual({ code: 'AE', controlId: 'MSG0001', text: 'PID-3 missing | see ^log' })
  })

  it('writes ERR-1 before v2.5, keeps the message\'s separators and a random control id by default', () => {
    const h = readHeader('MSH#$*!%#OLD#FAC#NEW#NFAC###ORM$O01#C7#P#2.3\r')
    const ack = buildAck(h, 'AR', { now, text: 'unknown version' })
    const [msh, msa, err] = ack.split('\r')
    expect(msh).toMatch(/^MSH#\$\*!%#NEW#NFAC#OLD#FAC#20240105120001\+0000##ACK\$O01\$ACK#[0-9A-F]{20}#P#2\.3$/)
    expect([msa, err]).toEqual(['MSA#AR#C7#unknown version', 'ERR#$$$207%Application internal error%HL70357'])
    expect(buildAck(h, 'AR').split('\r')[1]).toBe('MSA#AR#C7')
  })

  it('writes the v2.5 ERR segment when MSH-12 is empty (an unknown version counts as the newest)', () => {
    const h = readHeader('MSH|^~\\&|OLD|FAC|NEW|NFAC|||ORM^O01|C8|P\r')
    expect(h.version).toBe('')
    expect(buildAck(h, 'AR', { now, controlId: 'A3', text: 'frame cut short', errorCode: '100' }).split('\r')).toEqual([
      'MSH|^~\\&|NEW|NFAC|OLD|FAC|20240105120001+0000||ACK^O01^ACK|A3|P',
      'MSA|AR|C8|frame cut short',
      'ERR|||100^Segment sequence error^HL70357|E||||frame cut short',
      '',
    ])
  })
})

describe('readAck', () => {
  it('takes the ERR text when MSA-3 is empty (ERR-8, else ERR-3.2, else ERR-1.4.2)', () => {
    const head = 'MSH|^~\\&|LAB||EPIC||20240105||ACK^A01^ACK|A1|P|2.5.1\rMSA|AR|MSG7\r'
    expect(readAck(head + 'ERR|||207^Application internal error^HL70357|E||||record locked by nurse\r').text).toBe('record locked by nurse')
    expect(readAck(head + 'ERR|||203^Unsupported version id^HL70357|E\r').text).toBe('Unsupported version id')
    expect(readAck(head + 'ERR|^^^200&Unsupported message type&HL70357\r')).toEqual({ code: 'AR', controlId: 'MSG7', text: 'Unsupported message type' })
    expect(readAck('MSH|^~\\&|LAB||EPIC||20240105||ACK|A1|P|2.3\nMSA|CA|MSG8\n')).toEqual({ code: 'CA', controlId: 'MSG8', text: '' })
  })

  it.each([
    ['MSH|^~\\&|LAB||EPIC||20240105||ACK|A1|P|2.3\r', 'invalid HL7 v2 message: the acknowledgement has no MSA segment'],
    ['MSH|^~\\&|LAB||EPIC||20240105||ACK|A1|P|2.3\rMSA|OK|M1\r', 'invalid HL7 v2 message: MSA-1 "OK" is not an acknowledgement code (AA, AE, AR, CA, CE, CR)'],
    ['HTTP/1.1 200 OK\r\n', 'invalid HL7 v2 message: segment 1: expected "MSH", found "HTT"'],
  ])('refuses %j with ERR_HL7_PARSE', (text, message) => {
    const err = caught(() => readAck(text))
    expect([err.code, err.message]).toEqual(['ERR_HL7_PARSE', message])
  })
})
