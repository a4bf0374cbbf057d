import { describe, expect, it } from 'vitest'
import { buildAck, readAck, readHeader } from '../../shared/hl7v2/index.ts'

// Finding: a control id holding a component, subcomponent or repetition separator was cut to its
// first component (CX for CX^1): the ACK's MSA-2 did not match what the sender sent, and with
// dedupeByControlId CX^2 was taken for CX^1.
const message = (msh10: string, msh = 'MSH|^~\\&') => `${msh}|EPIC|HOSP|LAB|LABFAC|20240105120000||ADT^A01^ADT_A01|${msh10}|P|2.5.1\rPID|1||M1\r`

describe('the control id (MSH-10) is the whole field as sent', () => {
  it.each(['CX^1', 'CX^2', 'A&B', 'R1~R2', 'ESC\\T\\1', 'PLAIN42'])('%s: readHeader, MSA-2 and readAck all give it unchanged', (id) => {
    expect(readHeader(message(id)).controlId).toBe(id)
    const ack = buildAck(readHeader(message(id)), 'AA', { controlId: 'ACK1' })
    expect(ack.split('\r')[1]).toBe(`MSA|AA|${id}`)
    expect(readAck(ack).controlId).toBe(id)
  })

  it('with other separators too (MSH#$*!%): the field as written', () => {
    const h = readHeader(message('C$7*2', 'MSH#$*!%').replace(/\|/g, '#'))
    expect(h.controlId).toBe('C$7*2')
    expect(buildAck(h, 'AE', { text: 'x' }).split('\r')[1]).toBe('MSA#AE#C$7*2#x')
  })

  it('an empty field and the HL7 null "" read as no control id', () => {
    expect(readHeader(message('')).controlId).toBe('')
    expect(readHeader(message('""')).controlId).toBe('')
  })

  it('readAck gives MSA-2 as written, so it matches the sent MSH-10', () => {
    expect(readAck('MSH|^~\\&|LAB||EPIC||20240105||ACK|A1|P|2.5.1\rMSA|AA|CX^1&2~3|ok\r')).toEqual({ code: 'AA', controlId: 'CX^1&2~3', text: 'ok' })
  })
})
