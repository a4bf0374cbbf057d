import { readFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient } from '../../shared/mllp/client.ts'
import { createLogger } from '../../shared/log/index.ts'
import portFileListener from '../fixtures/mllp/port-file-mllp-listener.ts'
import { destination, until, useRuntimeFixture } from '../runtime/_helpers.ts'

// Findings of an HL7 analyst's walkthrough, each through the real mllp-listener on a socket, the
// channel runtime and a SQLite store.
const msh = (controlId: string) => `MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A08^ADT_A01|${controlId}|P|2.5.1`
const adt = (controlId: string, pid = 'PID|1||100234^^^GENHOSP^MR||DOE^JANE') => `${msh(controlId)}\r${pid}\r`

const rt = useRuntimeFixture()
const clients: MllpClient[] = []
afterEach(() => { for (const c of clients.splice(0)) c.destroy() })

/** Starts a channel mllp-listener → HTTP destination; `options` are the channel's; the log is kept as text. */
async function start(config: Record<string, unknown> = {}, options: Record<string, unknown> = {}) {
  let log = ''
  const logger = createLogger({ pretty: false, level: 'info', destination: { write: (line: string) => { log += line } } as NodeJS.WritableStream })
  await rt.start({ name: 'walk', source: portFileListener, sourceConfig: { portFile: 'mllp.port', ...config }, destinations: [destination('out', rt.api.url)], options }, { log: logger })
  const port = Number(await readFile(join(rt.dir.path, 'mllp.port'), 'utf8'))
  const client = async () => {
    const c = await connectMllp({ host: '127.0.0.1', port })
    clients.push(c)
    return c
  }
  /** The control ids stored, oldest first. */
  const stored = async () => (await rt.store.list({ channel: 'walk', limit: 100, order: 'asc' })).map((m) => m.attributes.controlId)
  return { port, client, stored, log: () => log }
}

const msa = (ack: string) => ack.split('\r').find((s) => s.startsWith('MSA|'))

describe('a control id holding ^, & or ~ (MSH-10) is the whole field', () => {
  it('with dedupeByControlId, CX^1 then CX^2 are two messages, both stored; each MSA-2 is the MSH-10 as sent', async () => {
    const { client, stored } = await start({ dedupeByControlId: true })
    const c = await client()
    const ids = ['CX^1', 'CX^2', 'CX&1', 'CX~1']
    for (const id of ids) expect(msa(await c.request(adt(id), 10_000))).toBe(`MSA|AA|${id}`)
    // A resend of the same whole control id is still a duplicate.
    expect(msa(await c.request(adt('CX^1'), 10_000))).toBe('MSA|AA|CX^1')
    expect(await stored()).toEqual(ids)
  }, 60_000)
})

describe('two messages in one frame', () => {
  it('are refused with AR naming the second MSH segment, nothing stored; the next frame is served', async () => {
    const { client, stored } = await start()
    const c = await client()
    const ack = await c.request(adt('M001') + adt('M002'), 10_000)
    expect(readAck(ack)).toEqual({ code: 'AR', controlId: 'M001', text: 'one message per frame: a second MSH segment at segment 3' })
    expect(readAck(await c.request(adt('M003'), 10_000))).toMatchObject({ code: 'AA', controlId: 'M003' })
    expect(await stored()).toEqual(['M003'])
  }, 60_000)

  it('counts segments past empty lines; MSH inside a field is not a second message', async () => {
    const { client, stored } = await start()
    const c = await client()
    const ack = await c.request(`\r\n${msh('M010')}\n\nPID|1||1^^^H^MR\r\rNTE|1||MSH|x\rMSH|^~\\&|A|B`, 10_000)
    expect(readAck(ack)).toEqual({ code: 'AR', controlId: 'M010', text: 'one message per frame: a second MSH segment at segment 4' })
    expect(readAck(await c.request(`${msh('M011')}\rNTE|1||MSH|x\rNTE|2|aMSH|b\r`, 10_000))).toMatchObject({ code: 'AA', controlId: 'M011' })
    expect(await stored()).toEqual(['M011'])
  }, 60_000)
})

describe('a full store (maxStoreBytes)', () => {
  it('is answered AE "store full", not "queue full", and the message is not stored', async () => {
    const { client, stored } = await start({}, { maxStoreBytes: 1_048_576 })
    const c = await client()
    const big = (id: string) => adt(id, `PID|1||100234^^^GENHOSP^MR||DOE^JANE\rNTE|1||${'x'.repeat(700_000)}`)
    let answer = readAck(await c.request(big('B0'), 10_000))
    // The size is read at most once a second: send until the store says it is full (bounded).
    for (let n = 1; n < 30 && answer.code === 'AA'; n++) {
      await new Promise((ok) => setTimeout(ok, 200))
      answer = readAck(await c.request(big(`B${n}`), 10_000))
    }
    expect(answer).toMatchObject({ code: 'AE', text: 'message not stored, send it again later: store full' })
    const ids = await stored()
    expect(ids).not.toContain(answer.controlId)
  }, 60_000)
})

describe('a connection the sender drops in the middle of a frame', () => {
  it('logs that the frame was discarded, with its size and never its content', async () => {
    const { port, log, stored } = await start()
    const socket = connect({ host: '127.0.0.1', port })
    await new Promise<void>((ok) => socket.once('connect', () => ok()))
    const partial = `\x0b${msh('HALF1')}\rPID|1||SECRETMRN77^^^GENHOSP^MR`
    socket.end(partial)
    const line = 'connection closed: frame without end bytes (0x1C 0x0D), discarded'
    await until(() => log().includes(line), 10_000, 'the warning')
    const logged = log().split('\n').filter((l) => l.includes(line)).map((l) => JSON.parse(l) as { bytes: number })
    expect(logged.map((l) => l.bytes)).toEqual([Buffer.byteLength(partial) - 1])
    expect(log()).not.toContain('SECRETMRN77')
    expect(await stored()).toEqual([])
  }, 60_000)
})
