import type { AddressInfo } from 'node:net'
import { Agent, request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import listener from '../../../components/sources/http-listener.ts'
import type { Emit } from '../../../shared/component.ts'
import { errorCodes } from '../../../shared/errors.ts'
import { gatedEmit, loadComponentConfig, recordingEmit, tcpConnect, useSourceUnderTest } from '../../_setup.ts'
import { destination, until, useRuntimeFixture } from '../../runtime/_helpers.ts'

type Listener = { start: (e: Emit) => Promise<void>; stop: () => Promise<void>; address: () => AddressInfo }

const WARN = 40
const startSource = useSourceUnderTest<Listener>(listener)
const agents: Agent[] = []
afterEach(async () => {
  for (const a of agents.splice(0)) await a.destroy()
})

async function start(emit: Emit) {
  const { source, t, stop } = await startSource({ port: 0 }, emit)
  const port = source.address().port
  return { t, stop, port, url: `http://127.0.0.1:${port}/` }
}

describe('http-listener stop', () => {
  it('refuses new connections as soon as stop begins, while a request is still being answered', async () => {
    const g = gatedEmit()
    const { stop, port, url } = await start(g.emit)
    const pending = request(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'a' })
    await g.called
    const stopped = stop()
    expect(await tcpConnect(port)).toBe('ECONNREFUSED')
    g.release()
    const res = await pending
    await res.body.text()
    expect(res.statusCode).toBe(202)
    await stopped
  })

  it('closes a keep-alive connection after the answer it was giving when stop began: no further request on it', async () => {
    const g = gatedEmit()
    const { stop, url } = await start(g.emit)
    const agent = new Agent({ connections: 1, pipelining: 1, keepAliveTimeout: 60_000 })
    agents.push(agent)
    const post = () => request(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'a', dispatcher: agent })
    const first = post()
    await g.called
    const began = Date.now()
    const stopped = stop()
    g.release()
    const res = await first
    await res.body.text()
    expect([res.statusCode, res.headers.connection]).toEqual([202, 'close'])
    const again = await post().then((r) => r.statusCode, (e: NodeJS.ErrnoException) => e.code)
    expect(again).toBe('ECONNREFUSED')
    await stopped
    // Not held until the 5 s after which the connections left are cut.
    expect(Date.now() - began).toBeLessThan(2000)
  })

  it('answers 503 with Retry-After when the channel is stopping, logged at debug, not a warning per request', async () => {
    const emit = recordingEmit({ fail: () => new errorCodes.ERR_SHUTDOWN('channel orders is stopping', { retryAfterMs: 2000 }) })
    const { url, t } = await start(emit)
    for (let i = 0; i < 3; i++) {
      const res = await request(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'a' })
      expect([res.statusCode, res.headers['retry-after'], await res.body.json()]).toEqual([503, '2', { error: 'temporarily unavailable, retry later' }])
    }
    expect(t.logs.filter((line) => line.level >= WARN)).toEqual([])
    expect(t.logs.filter((line) => line.msg === 'message not accepted')).toHaveLength(3)
  })
})

describe('http-listener in a stopping channel', () => {
  const rt = useRuntimeFixture()

  it('refuses new connections from the start of the stop, while in-flight deliveries still finish', async () => {
    rt.api.behaviour = () => ({ status: 200, delayMs: 1500 })
    const loaded = await loadComponentConfig(listener, { port: 0 })
    const h = await rt.start({ source: listener, sourceConfig: loaded.config as Record<string, unknown>, destinations: [destination('api', rt.api.url)], options: { shutdownTimeoutMs: 5000 } })
    const port = h.source.address!()!.port
    const res = await request(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'a' })
    expect([res.statusCode, await res.body.json()]).toEqual([202, { id: expect.any(String) }])
    await until(() => rt.api.received.length === 1)
    let stopped = false
    const stopping = h.stop().then(() => { stopped = true })
    expect(await tcpConnect(port)).toBe('ECONNREFUSED')
    expect(stopped).toBe(false)
    await stopping
    expect(h.counters()).toMatchObject({ delivered: 1 })
  })
})
