import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'
import { startMllpReceiver } from '../../engine/embedded/mllp-receiver.ts'

const DIR = mkdtempSync(join(tmpdir(), 'weir-harness-mllp-enc-'))
afterAll(() => rmSync(DIR, { recursive: true, force: true }))
const write = (name: string, data: unknown) => {
  const p = join(DIR, name)
  writeFileSync(p, JSON.stringify(data))
  return p
}

const ADT = 'MSH|^~\\&|KLINIK|MÜNCHEN|WEIR|HIE|20260301081500||ADT^A01^ADT_A01|MSG00001|P|2.5.1\rPID|1||203713^^^GENHOSP^MR||MÜLLER^JOSÉ||19700101|M'

describe('weir test with "encoding": "latin1"', () => {
  it('sends a send.mllp step to a latin1 mllp-listener in latin1', async () => {
    const ch = write('listener.json', {
      name: 'latin1-in',
      source: { type: 'mllp-listener', config: { port: 2575, encoding: 'latin1' } },
      destinations: [{ name: 'api', type: 'http', config: { url: 'https://api.example/patients', method: 'POST' }, retry: { maxAttempts: 1 } }],
    })
    const t = write('listener.test.json', {
      channel: ch,
      api: [{ method: 'POST', path: '/patients', auth: false, answers: [{ status: 201 }] }],
      cases: [{
        name: 'umlauts arrive as written',
        steps: [{ send: { mllp: ADT, ack: 'AA' } }],
        expect: { messages: [{ status: 'delivered' }], deliveries: { api: [{ count: 1, bodyMatches: 'MÜLLER\\^JOSÉ' }] } },
      }],
    })
    const r = await runChannelTest(t)
    expect(r.cases.map((c) => c.failures)).toEqual([[]])
  })

  it('reads what a latin1 mllp destination sent in latin1', async () => {
    const ch = write('destination.json', {
      name: 'latin1-out',
      source: { type: 'http-listener', config: { port: 7999, path: '/in' } },
      destinations: [{ name: 'lab', type: 'mllp', config: { host: 'lis.hospital.example', port: 2575, encoding: 'latin1', ackTimeoutMs: 2000 }, retry: { maxAttempts: 1 } }],
    })
    const t = write('destination.test.json', {
      channel: ch,
      cases: [{
        name: 'umlauts arrive as written',
        steps: [{ send: { body: ADT, contentType: 'x-application/hl7-v2+er7' } }],
        expect: { messages: [{ status: 'delivered', destinations: { lab: 'delivered' } }], mllp: { count: 1, messages: [{ matches: 'MÜLLER\\^JOSÉ', count: 1 }] } },
      }],
    })
    const r = await runChannelTest(t)
    expect(r.cases.map((c) => c.failures)).toEqual([[]])
  })
})

describe('the embedded MLLP receiver with "encoding": "latin1"', () => {
  it('decodes latin1 bytes and answers in latin1 (MSH-3/4 echoed as sent)', async () => {
    const lab = await startMllpReceiver({ encoding: 'latin1' })
    try {
      const answer = await new Promise<Buffer>((ok, fail) => {
        const s = connect(lab.port, lab.host, () => s.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(ADT, 'latin1'), Buffer.from([0x1c, 0x0d])])))
        const chunks: Buffer[] = []
        s.on('data', (d: Buffer) => {
          chunks.push(d)
          if (d.includes(0x1c)) { s.destroy(); ok(Buffer.concat(chunks)) }
        })
        s.on('error', fail)
      })
      expect(lab.received.map((m) => m.text)).toEqual([ADT])
      // The ACK's MSH-5/6 echo MSH-3/4: "MÜNCHEN" as one latin1 byte per character.
      expect(answer.includes(Buffer.from('|KLINIK|MÜNCHEN|', 'latin1'))).toBe(true)
      expect(answer.includes(Buffer.from('MÜNCHEN', 'utf8'))).toBe(false)
    } finally {
      await lab.close()
    }
  })
})
