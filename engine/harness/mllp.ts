import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient } from '../../shared/mllp/client.ts'
import type { MllpEncoding, MllpReceiver } from '../embedded/mllp-receiver.ts'
import type { JsonSchema } from '../../shared/component.ts'

/** How long a `send` step waits for the listener's ACK. */
const ACK_WAIT_MS = 10_000
/** How long a step that expects no ACK (enhanced mode, MSH-15 NE or ER) listens for one before it concludes there is none. */
const NO_ACK_WAIT_MS = 500

const ACK_CODES = ['AA', 'AE', 'AR', 'CA', 'CE', 'CR']

/** The `send` fields of an MLLP message, in the test file schema. */
export const mllpSendProperties: Record<string, JsonSchema> = {
  mllp: { type: 'string', minLength: 1, description: 'An HL7 v2 message (ER7 text) sent over MLLP to an mllp-listener source, in the listener\'s `encoding`; `\\n` between segments is sent as `\\r`.' },
  ack: { enum: [...ACK_CODES, 'none'], description: 'MSA-1 the mllp-listener must answer (default AA); `none` when no acknowledgement is expected (enhanced mode, MSH-15 NE).' },
  ackText: { type: 'string', description: 'Regular expression the ACK\'s text (MSA-3, or the ERR text) must match.' },
}

const mllpAnswer: JsonSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    ack: { enum: ACK_CODES, description: 'MSA-1 of the answer (default AA).' },
    text: { type: 'string', description: 'MSA-3 and ERR text of the answer.' },
    delayMs: { type: 'integer', minimum: 0, maximum: 60_000, description: 'Answer this late (longer than the destination\'s ackTimeoutMs makes a late ACK).' },
    fault: {
      enum: ['no-ack', 'late-ack', 'wrong-control-id', 'drop'],
      description: '`no-ack`: never answer; `late-ack`: first an AA for the previous message, then this answer; `wrong-control-id`: an ACK whose MSA-2 is another id; `drop`: close the connection without answering.',
    },
  },
}

/** The embedded MLLP receiver's script, in the test file schema (file level, or per case). */
export const mllpReceiverSchema: JsonSchema = {
  type: 'object', additionalProperties: false,
  description: 'The embedded MLLP receiver every `mllp` destination is pointed at (host and port replaced; TLS removed). It reads messages and writes ACKs in the `encoding` of the channel\'s first `mllp` destination.',
  properties: { answers: { type: 'array', items: mllpAnswer, description: 'One answer per message received, in order; the last repeats. Default: AA.' } },
}

/** What the embedded MLLP receiver must have received, in the test file schema. */
export const mllpExpectationSchema: JsonSchema = {
  type: 'object', additionalProperties: false,
  description: 'Messages the embedded MLLP receiver received (every attempt, resends included).',
  properties: {
    count: { type: 'integer', minimum: 0, description: 'How many messages it received.' },
    messages: {
      type: 'array', description: 'Each must match the given number of received messages (default at least one).',
      items: {
        type: 'object', additionalProperties: false, required: ['matches'],
        properties: {
          matches: { type: 'string', description: 'Regular expression over the ER7 text (segments separated by `\\r`).' },
          count: { type: 'integer', minimum: 0, description: 'How many received messages match (default: at least one).' },
        },
      },
    },
  },
}

/** The `encoding` of an mllp-listener or `mllp` destination config (utf-8 unless it says latin1). */
export const mllpEncodingOf = (config: Record<string, unknown> | undefined): MllpEncoding => (config?.encoding === 'latin1' ? 'latin1' : 'utf-8')

export interface MllpSendStep { mllp: string; ack?: string; ackText?: string }
export interface MllpExpectation { count?: number; messages?: Array<{ matches: string; count?: number }> }

/**
 * The harness side of an `mllp-listener`: one connection, kept across steps and opened again after a
 * restart. `send` returns the failures of the step and whether the listener acknowledged the message
 * as stored (AA/CA), or undefined when no acknowledgement was expected.
 */
export function mllpSender() {
  let client: MllpClient | undefined
  return {
    /** Sends `step` to the listener on `port` in its `encoding` (one connection per case: the listener's encoding does not change within it). */
    async send(listener: { port: number; encoding: MllpEncoding }, step: MllpSendStep, at: string): Promise<{ failures: string[]; stored: boolean | undefined }> {
      if (!client || client.closed) client = await connectMllp({ host: '127.0.0.1', port: listener.port, encoding: listener.encoding })
      const text = step.mllp.replace(/\r\n|\n/g, '\r')
      const want = step.ack ?? 'AA'
      let answer: string | undefined
      try {
        answer = await client.request(text, want === 'none' ? NO_ACK_WAIT_MS : ACK_WAIT_MS)
      } catch (e) {
        if (want === 'none' && (e as { code?: string }).code === 'ETIMEDOUT') return { failures: [], stored: undefined }
        return { failures: [`${at}: no acknowledgement from the mllp-listener (${(e as Error).message}), expected ${want}`], stored: false }
      }
      const ack = readAck(answer)
      const failures: string[] = []
      if (ack.code !== want) failures.push(`${at}: the mllp-listener answered ${ack.code}${ack.text ? ` (${ack.text})` : ''}, expected ${want}`)
      if (step.ackText !== undefined && !new RegExp(step.ackText).test(ack.text)) failures.push(`${at}: the ACK text ${JSON.stringify(ack.text)} does not match /${step.ackText}/`)
      return { failures, stored: ack.code === 'AA' || ack.code === 'CA' }
    },
    close() { client?.destroy(); client = undefined },
  }
}

/** Checks `expect.mllp` against what the embedded receiver received. */
export function checkMllp(e: MllpExpectation, receiver: MllpReceiver): string[] {
  const f: string[] = []
  const got = receiver.received
  const seen = () => got.slice(0, 3).map((m) => `${m.messageType}^${m.trigger} ${m.controlId} → ${m.answered}`).join('; ') || 'none'
  if (e.count !== undefined && got.length !== e.count) f.push(`expect.mllp.count: the MLLP receiver received ${got.length} messages, expected ${e.count} (${seen()})`)
  for (const [i, m] of (e.messages ?? []).entries()) {
    const re = new RegExp(m.matches)
    const n = got.filter((r) => re.test(r.text)).length
    if (m.count === undefined ? n === 0 : n !== m.count) f.push(`expect.mllp.messages[${i}]: ${n} received message(s) match /${m.matches}/${m.count !== undefined ? `, expected ${m.count}` : ''} (received: ${seen()})`)
  }
  return f
}
