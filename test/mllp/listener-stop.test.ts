import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import listener from '../../components/sources/mllp-listener.ts'
import type { Emit } from '../../shared/component.ts'
import { errorCodes } from '../../shared/errors.ts'
import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp, type MllpClient } from '../../shared/mllp/client.ts'
import { gatedEmit, recordingEmit, tcpConnect, useSourceUnderTest } from '../_setup.ts'

type Listener = { start: (e: Emit) => Promise<void>; stop: () => Promise<void>; address: () => AddressInfo }

const WARN = 40
const adt = (controlId: string) => [
  `MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A01^ADT_A01|${controlId}|P|2.5.1`,
  'EVN|A01|20260301120000',
  'PID|1||100234^^^GENHOSP^MR||DOE^JANE^Q||19800101|F',
].join('\r')

const startSource = useSourceUnderTest<Listener>(listener)
const clients: MllpClient[] = []
// Registered after useSourceUnderTest, so it runs first: the clients go before the listener stops.
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy()
})

async function start(emit: Emit) {
  const { source, t, stop } = await startSource({ port: 0 }, emit)
  const port = source.address().port
  const c = await connectMllp({ host: '127.0.0.1', port })
  clients.push(c)
  return { t, stop, port, c }
}

describe('mllp-listener stop', () => {
  it('refuses new connections as soon as stop begins; the frame being stored still gets its ACK', async () => {
    const g = gatedEmit()
    const { stop, port, c } = await start(g.emit)
    const acked = c.request(adt('SLOW1'), 5000)
    await g.called
    const stopped = stop()
    expect(await tcpConnect(port)).toBe('ECONNREFUSED')
    g.release()
    expect(readAck(await acked).code).toBe('AA')
    await stopped
  })

  it('answers AE when the channel is stopping, logged at debug, not a warning per frame', async () => {
    const emit = recordingEmit({ fail: () => new errorCodes.ERR_SHUTDOWN('channel orders is stopping', { retryAfterMs: 1000 }) })
    const { c, t } = await start(emit)
    for (const id of ['STOP1', 'STOP2']) {
      expect(readAck(await c.request(adt(id), 5000))).toEqual({ code: 'AE', controlId: id, text: 'message not stored, send it again later: temporarily unavailable' })
    }
    expect(t.logs.filter((line) => line.level >= WARN)).toEqual([])
    expect(t.logs.filter((line) => line.msg === 'message not accepted')).toHaveLength(2)
  })
})
