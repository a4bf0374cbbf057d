/**
 * The benchmark's MLLP load generator: the HL7 v2 counterpart of generator.ts. Each of `inFlight`
 * connections sends one ~1 KB ADT^A01 at a time and waits for its ACK (MLLP allows one message in
 * flight per connection), with never more than `window` messages sent but not yet at the sink.
 */
import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient } from '../../shared/mllp/client.ts'
import type { Generated, GenerateOptions } from './generator.ts'

const PAD = 'x'.repeat(780)

/** Message `seq` as ER7 (about 1 KB): MSH-10 is the seq, which the channel under test copies to the x-seq header. */
export const benchEr7 = (seq: number) => [
  `MSH|^~\\&|BENCH|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|${seq}|P|2.5.1`,
  'EVN|A01|20260301120000',
  `PID|1||MRN${100000 + (seq % 900000)}^^^GENHOSP^MR||DOE^JOHN||19800101|M`,
  'PV1|1|I|4B^401^1^GENHOSP',
  `NTE|1||${PAD}`,
].join('\r')

/** As generate()'s options, with the listener's MLLP port instead of a URL. */
export type GenerateMllpOptions = Omit<GenerateOptions, 'url' | 'acceptedStatus'> & { port: number }

/** Sends [from, to) over MLLP and resolves when every sent message has been acknowledged AA. */
export async function generateMllp(o: GenerateMllpOptions): Promise<Generated> {
  const { from, to, deadline, sink } = o
  const inFlight = o.inFlight ?? 64
  const window = o.window ?? 512
  const sent = new Float64Array(to - from)
  const ack = new Float64Array(to - from).fill(NaN)
  const base = sink.arrivals
  let next = from
  let refused = 0
  const sendOne = async (c: MllpClient, seq: number) => {
    sent[seq - from] = performance.now()
    for (let attempt = 0; ; attempt++) {
      const a = readAck(await c.request(benchEr7(seq), 60_000))
      if (a.code === 'AA' && a.controlId === String(seq)) break
      refused++
      if (attempt >= 200) throw new Error(`message ${seq} never acknowledged: ${a.code} ${a.text}`)
      await new Promise((ok) => setTimeout(ok, 50))
    }
    ack[seq - from] = performance.now() - sent[seq - from]!
  }
  await Promise.all(Array.from({ length: inFlight }, async () => {
    const c = await connectMllp({ host: '127.0.0.1', port: o.port })
    try {
      while (Date.now() < deadline && next < to) {
        const seq = next++
        while (seq - from - (sink.arrivals - base) >= window && Date.now() < deadline + 60_000) await sink.nextArrival()
        await sendOne(c, seq)
      }
    } finally {
      c.destroy()
    }
  }))
  return { sent, ack, lastSent: Math.min(next, to), refused }
}
