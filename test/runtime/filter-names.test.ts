import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { server, startTestChannel, textCollector, type TestChannel } from '../reliability/_helpers.ts'

// A filter's optional `name` in the channel file is what the message log says of it when it sends a
// message to error: `filters/1 "check-mrn"`, beside its place, so an operator finds it in a long chain.

const collector = textCollector()
let api: Awaited<ReturnType<typeof server>>
let ch: TestChannel

beforeAll(async () => {
  collector.capture()
  api = await server((_req, _body, res) => void res.writeHead(200).end('{}'))
  ch = await startTestChannel({
    name: 'named-filters',
    source: { type: 'http-listener', config: { port: 0, path: '/in' } },
    filters: [
      { type: 'map', config: { jsonata: '$' } },
      { name: 'check-mrn', type: 'validate', config: { schema: { type: 'object', required: ['mrn'] } } },
      { type: 'validate', config: { schema: { type: 'object', required: ['ward'] } } },
    ],
    destinations: [{ name: 'api', type: 'http', config: { url: `${api.url}/in` } }],
  }, { log: collector.log })
})
afterAll(async () => {
  await ch?.close()
  await api?.close()
  collector.release()
})

describe('a named filter that sends a message to error', () => {
  it('is named in the reason by its place and its name; an unnamed one by its place alone', async () => {
    const noMrn = await ch.post({ ward: 'W1' })
    const noWard = await ch.post({ mrn: '42' })
    await ch.handle.whenIdle({ timeoutMs: 5000 })
    const first = (await ch.store.get(noMrn))!.message
    const second = (await ch.store.get(noWard))!.message
    expect(first.status).toBe('error')
    expect(first.error).toMatch(/^filters\/1 "check-mrn": .*mrn/)
    expect(second.status).toBe('error')
    expect(second.error).toMatch(/^filters\/2: .*ward/)
  })
})
