import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { server, startTestChannel, textCollector, type TestChannel } from '../reliability/_helpers.ts'

// A filter's optional `name` in the channel file is what the message log says of it when it sends a
// message to error: `filters/1 "check-mrn"`, beside its place, so an operator finds it in a long chain;
// and when it drops one (filtered), with its type: `filters/2 "test-patients" (match)`, so of two
// `match` filters (training messages, test patients) the log says which.

const collector = textCollector()
let api: Awaited<ReturnType<typeof server>>
let ch: TestChannel
let screened: TestChannel
let delivered = 0

beforeAll(async () => {
  collector.capture()
  api = await server((_req, _body, res) => { delivered++; res.writeHead(200).end('{}') })
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
  screened = await startTestChannel({
    name: 'screened',
    source: { type: 'http-listener', config: { port: 0, path: '/in' } },
    filters: [
      { name: 'training', type: 'match', config: { jsonata: '$not(training)' } },
      { type: 'map', config: { jsonata: '$' } },
      { name: 'test-patients', type: 'match', config: { jsonata: "mrn != 'TEST'" } },
      { type: 'match', config: { jsonata: "ward != 'closed'" } },
    ],
    destinations: [{ name: 'api', type: 'http', config: { url: `${api.url}/in` } }],
  }, { log: collector.log })
})
afterAll(async () => {
  await ch?.close()
  await screened?.close()
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

describe('a filter that drops a message', () => {
  it('is kept as the message\'s filteredBy (its place, name and type), not as an error; a delivered message has none', async () => {
    delivered = 0
    const training = await screened.post({ training: true, mrn: '1', ward: 'a' })
    const test = await screened.post({ training: false, mrn: 'TEST', ward: 'a' })
    const closed = await screened.post({ training: false, mrn: '2', ward: 'closed' })
    const kept = await screened.post({ training: false, mrn: '3', ward: 'a' })
    await screened.handle.whenIdle({ timeoutMs: 5000 })
    const message = async (id: string) => (await screened.store.get(id))!.message
    expect(await message(training)).toMatchObject({ status: 'filtered', filteredBy: 'filters/0 "training" (match)' })
    expect(await message(test)).toMatchObject({ status: 'filtered', filteredBy: 'filters/2 "test-patients" (match)' })
    expect(await message(closed)).toMatchObject({ status: 'filtered', filteredBy: 'filters/3 (match)' })
    for (const id of [training, test, closed]) expect((await message(id)).error).toBeUndefined()
    const ok = await message(kept)
    expect(ok.status).toBe('delivered')
    expect(ok).not.toHaveProperty('filteredBy')
    expect(delivered).toBe(1)
    expect((await screened.store.get(test))!.deliveries.map((d) => [d.destination, d.status])).toEqual([['api', 'filtered']])
  })
})
