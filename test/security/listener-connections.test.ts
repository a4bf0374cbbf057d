import { request } from 'undici'
import { expect, it } from 'vitest'
import { until } from '../_setup.ts'
import { rawClient, startListenerChannel, startWeir, stalledRequest, useStarted } from './_listener.ts'

const PARTIAL_HEADERS = 'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'

const started = useStarted()

/** A POST that must be answered within `ms` (a deadline, not a measurement). */
async function postWithin(url: string, ms: number) {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"legitimate":true}', signal: AbortSignal.timeout(ms) })
  return { status: res.statusCode, body: await res.body.text() }
}

// Review finding: 1,050 half-open connections (partial headers) exhausted the file descriptors and
// blocked every legitimate request for 16 s. weir run here gets the common soft limit of 1024.
it('serves a legitimate client within a second while 1,050 half-open connections are open (fd limit 1024)', async () => {
  const weir = (started.weir = await startWeir({}))
  const clients = started.clients
  for (let i = 0; i < 1050; i += 150) {
    clients.push(...await Promise.all(Array.from({ length: 150 }, () => rawClient(weir.port, PARTIAL_HEADERS))))
  }
  expect(await postWithin(`http://127.0.0.1:${weir.port}/`, 1000)).toMatchObject({ status: 202 })
  // At most maxConnections (512) stay open: the connections that waited longest for headers were closed.
  await until(() => clients.filter((c) => !c.closed).length <= 512, 10_000, 'at most 512 half-open connections left')
  expect(weir.logs().find((l) => l.msg.startsWith('connection limit reached'))).toMatchObject({ maxConnections: 512 })
}, 90_000)

it('answers 408 and closes a connection that has not sent its headers within headersTimeoutMs', async () => {
  const channel = (started.channel = await startListenerChannel({ headersTimeoutMs: 1000, requestTimeoutMs: 30_000 }))
  const client = await rawClient(Number(new URL(channel.url).port), PARTIAL_HEADERS)
  started.clients.push(client)
  await until(() => client.closed, 5000, 'closed after the headers timeout')
  expect(client.received()).toMatch(/^HTTP\/1\.1 408 /)
})

it('closes at once a connection beyond maxConnectionsPerAddress while other addresses are served', async () => {
  const channel = (started.channel = await startListenerChannel({ maxConnections: 16, maxConnectionsPerAddress: 8 }))
  const port = Number(new URL(channel.url).port)
  // Headers complete, body stalled: these connections serve a request and are not replaced.
  const clients = started.clients
  clients.push(...await Promise.all(Array.from({ length: 12 }, () => rawClient(port, stalledRequest(10, 100), '127.0.0.2'))))
  await until(() => clients.filter((c) => c.closed).length === 4, 5000, '4 of 12 closed')
  expect(clients.filter((c) => c.closed).every((c) => c.received() === '')).toBe(true)
  expect(await postWithin(channel.url, 2000)).toMatchObject({ status: 202 })
  const another = await rawClient(port, stalledRequest(10, 100), '127.0.0.2')
  clients.push(another)
  await until(() => another.closed, 5000, 'the 13th closed')
  expect(clients.filter((c) => !c.closed)).toHaveLength(8)
})
