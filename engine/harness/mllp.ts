import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient } from '../../shared/mllp/client.ts'
import { startMllpReceiver, type MllpAnswer, type MllpEncoding, type MllpReceiver, type ReceivedMllpMessage } from '../embedded/mllp-receiver.ts'
import type { JsonSchema } from '../../shared/component.ts'
import { escapePointer } from '../../shared/config/problems.ts'
import type { ConfigProblem } from '../../shared/errors.ts'

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

/** A list of answers (each use gives its own description). */
const mllpAnswers: JsonSchema = { type: 'array', items: mllpAnswer }

/** The embedded MLLP receivers' script, in the test file schema (file level, or per case). */
export const mllpReceiverSchema: JsonSchema = {
  type: 'object', additionalProperties: false,
  description: 'The embedded MLLP receivers: each `mllp` destination is pointed at one of its own (host and port replaced; TLS removed), which reads messages and writes ACKs in that destination\'s `encoding`.',
  properties: {
    answers: { ...mllpAnswers, description: 'The answers of every `mllp` destination\'s receiver, unless `destinations` gives its own: one answer per message received, in order; the last repeats. Default: AA.' },
    destinations: {
      type: 'object',
      description: 'Answers per `mllp` destination name, instead of `answers` (e.g. a lab system answering AE while the archive answers AA). A name that is not an `mllp` destination of the channel is an error.',
      additionalProperties: {
        type: 'object', additionalProperties: false,
        properties: { answers: { ...mllpAnswers, description: 'One answer per message this destination\'s receiver receives, in order; the last repeats. Default: the `answers` beside `destinations`, else AA.' } },
      },
    },
  },
}

/** A count of received messages (each use gives its own description). */
const receivedCount: JsonSchema = { type: 'integer', minimum: 0 }

const receivedMessages: JsonSchema = {
  type: 'array', description: 'Each must match the given number of received messages (default at least one).',
  items: {
    type: 'object', additionalProperties: false, required: ['matches'],
    properties: {
      matches: { type: 'string', description: 'Regular expression over the ER7 text (segments separated by `\\r`).' },
      count: { type: 'integer', minimum: 0, description: 'How many received messages match (default: at least one).' },
    },
  },
}

/** What the embedded MLLP receivers must have received, in the test file schema. */
export const mllpExpectationSchema: JsonSchema = {
  type: 'object', additionalProperties: false,
  description: 'Messages the embedded MLLP receivers received (every attempt, resends and refused ones included): `count` and `messages` over all `mllp` destinations together, `destinations` per destination.',
  properties: {
    count: { ...receivedCount, description: 'How many messages the receivers of all `mllp` destinations received together.' },
    messages: receivedMessages,
    destinations: {
      type: 'object',
      description: 'What one `mllp` destination\'s receiver received, by destination name. Unlike `deliveries`, which counts what the destination delivered (acknowledged with AA/CA), this counts every message on the wire, in the destination\'s encoding, whatever the answer.',
      additionalProperties: {
        type: 'object', additionalProperties: false,
        properties: { count: { ...receivedCount, description: 'How many messages this destination\'s receiver received.' }, messages: receivedMessages },
      },
    },
  },
}

/** The `encoding` of an mllp-listener or `mllp` destination config (utf-8 unless it says latin1). */
export const mllpEncodingOf = (config: Record<string, unknown> | undefined): MllpEncoding => (config?.encoding === 'latin1' ? 'latin1' : 'utf-8')

export interface MllpSendStep { mllp: string; ack?: string; ackText?: string }
/** The test file's `mllp`: the answers of every mllp destination's receiver, and of named ones. */
export interface MllpScript { answers?: MllpAnswer[]; destinations?: Record<string, { answers?: MllpAnswer[] }> }
/** What one receiver, or all of them together, must have received. */
export interface ReceivedExpectation { count?: number; messages?: Array<{ matches: string; count?: number }> }
export interface MllpExpectation extends ReceivedExpectation { destinations?: Record<string, ReceivedExpectation> }

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

/** A destination of the channel: its name, type and, as the channel file writes it, its config. */
export interface DestinationEntry { name: string; type: string; config?: Record<string, unknown> }

/** The channel file's destinations that have a name and a type (the loader has refused the channel otherwise). */
export function destinationsOf(raw: Record<string, any>): DestinationEntry[] {
  const all = Array.isArray(raw.destinations) ? (raw.destinations as Array<Record<string, unknown>>) : []
  return all.filter((d) => typeof d?.name === 'string' && typeof d.type === 'string').map((d) => ({ name: d.name as string, type: d.type as string, config: d.config as Record<string, unknown> | undefined }))
}

/**
 * Starts an embedded receiver for each `mllp` destination, by destination name: it answers as the
 * script says for that name (else as its `answers` say), reading and writing in the destination's
 * `encoding`. None for a channel without an `mllp` destination. If one fails to start, those
 * already started are closed before the error is thrown.
 */
export async function startMllpReceivers(destinations: readonly DestinationEntry[], script: MllpScript | undefined): Promise<Map<string, MllpReceiver>> {
  const receivers = new Map<string, MllpReceiver>()
  try {
    for (const d of destinations.filter((x) => x.type === 'mllp')) {
      const answers = script?.destinations?.[d.name]?.answers ?? script?.answers ?? []
      receivers.set(d.name, await startMllpReceiver({ answers, encoding: mllpEncodingOf(d.config) }))
    }
  } catch (e) {
    await closeMllpReceivers(receivers)
    throw e
  }
  return receivers
}

/** Closes every receiver, each even when another fails to close. */
export async function closeMllpReceivers(receivers: ReadonlyMap<string, MllpReceiver>): Promise<void> {
  await Promise.allSettled([...receivers.values()].map((r) => r.close()))
}

/** The channel's `mllp` destinations as a failure names them: `its mllp destinations: "lab", "archive"`. */
const mllpNames = (names: readonly string[]) => names.length ? `its mllp destinations: ${names.map((n) => `"${n}"`).join(', ')}` : 'it has no mllp destination at all'

/**
 * The `mllp.destinations` entries of the given scripts (each with the JSON pointer of its `mllp`,
 * e.g. `/mllp` or `/cases/2/mllp`) that name no `mllp` destination of the channel: their answers
 * would never be given, and the receiver would answer AA where the test meant a fault.
 */
export function unknownMllpDestinationProblems(scripts: ReadonlyArray<{ script: MllpScript | undefined; pointer: string }>, destinations: readonly DestinationEntry[], file: string): ConfigProblem[] {
  const mllp = destinations.filter((d) => d.type === 'mllp').map((d) => d.name)
  const problems: ConfigProblem[] = []
  for (const { script, pointer } of scripts) {
    for (const name of Object.keys(script?.destinations ?? {})) {
      if (mllp.includes(name)) continue
      const other = destinations.find((d) => d.name === name)
      const what = other ? `the channel's destination "${name}" is of type ${other.type}, not mllp` : `the channel has no mllp destination "${name}"`
      problems.push({ file, pointer: `${pointer}/destinations/${escapePointer(name)}`, message: `${what} (${mllpNames(mllp)})` })
    }
  }
  return problems
}

/** A received message and the destination whose receiver got it. */
type Received = ReceivedMllpMessage & { destination: string }

/** Checks `count` and `messages` of `e` (named `at` in failures) against the messages `who` received. */
function checkReceived(e: ReceivedExpectation, got: readonly Received[], at: string, who: string, showDestination: boolean): string[] {
  const f: string[] = []
  const seen = () => got.slice(0, 3).map((m) => `${showDestination ? `${m.destination}: ` : ''}${m.messageType}^${m.trigger} ${m.controlId} → ${m.answered}`).join('; ') || 'none'
  if (e.count !== undefined && got.length !== e.count) f.push(`${at}.count: ${who} received ${got.length} messages, expected ${e.count} (${seen()})`)
  for (const [i, m] of (e.messages ?? []).entries()) {
    const re = new RegExp(m.matches)
    const n = got.filter((r) => re.test(r.text)).length
    if (m.count === undefined ? n === 0 : n !== m.count) f.push(`${at}.messages[${i}]: ${n} received message(s) match /${m.matches}/${m.count !== undefined ? `, expected ${m.count}` : ''} (received: ${seen()})`)
  }
  return f
}

/**
 * Checks `expect.mllp` against what the embedded receivers received, by destination name:
 * `count` and `messages` over all of them together (in arrival order), `destinations` each
 * against its own receiver.
 */
export function checkMllp(e: MllpExpectation, receivers: ReadonlyMap<string, MllpReceiver>): string[] {
  const of = (name: string, r: MllpReceiver): Received[] => r.received.map((m) => ({ ...m, destination: name }))
  const all = [...receivers].flatMap(([name, r]) => of(name, r)).sort((a, b) => a.at - b.at)
  const several = receivers.size > 1
  const f = checkReceived(e, all, 'expect.mllp', several ? `the ${receivers.size} MLLP receivers` : 'the MLLP receiver', several)
  for (const [name, expected] of Object.entries(e.destinations ?? {})) {
    const at = `expect.mllp.destinations.${name}`
    const r = receivers.get(name)
    if (r) f.push(...checkReceived(expected, of(name, r), at, `the MLLP receiver of "${name}"`, false))
    else f.push(`${at}: the channel has no mllp destination "${name}" (${mllpNames([...receivers.keys()])})`)
  }
  return f
}
