import { describe, expect, it } from 'vitest'
import * as weir from '../index.ts'

// A component of a user's own reaches what the README names through `import … from 'weir'`.
describe('the package entry point', () => {
  it('exports the HL7 v2 parser, serializer and ACK helpers, working', () => {
    const er7 = 'MSH|^~\\&|LAB|H|WEIR|H|20261202||ORU^R01|C42|P|2.5.1\rPID|1||203713^^^H^MR'
    const msg = weir.parseEr7(er7)
    expect(weir.serializeEr7(msg)).toBe(er7 + '\r') // segments end with CR
    expect(weir.readHeader(er7).controlId).toBe('C42')
    const ack = weir.buildAck(weir.readHeader(er7), 'AA')
    expect(weir.readAck(ack).code).toBe('AA')
    expect(weir.HL7_ER7_CONTENT_TYPE).toBe('x-application/hl7-v2+er7')
  })
})
