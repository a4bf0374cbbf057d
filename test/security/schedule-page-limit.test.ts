import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { ServerResponse } from 'node:http'
import schedule from '../../components/sources/schedule.ts'
import { loadComponentConfig, loopbackServer, memoryState, recordingEmit, testContext, until, type TestContext } from '../_setup.ts'

// Finding: a page over 1 MiB was cut silently and then failed every tick as "did not return JSON".
type Sched = { start: (e: ReturnType<typeof recordingEmit>) => Promise<void>; stop: () => Promise<void>; tick: () => Promise<void> }

const MB = 1024 * 1024
let t: TestContext
let api: Awaited<ReturnType<typeof loopbackServer>>
let sent = 0
let closed = false
let pageBytes = 8 * MB
beforeAll(async () => { api = await loopbackServer((_, res) => streamPage(res)) })
afterAll(async () => { await api.close() })
afterEach(async () => { await t?.cleanup() })

/** A JSON array of `pageBytes` bytes, written with backpressure so `sent` counts what the client took. */
function streamPage(res: ServerResponse) {
  sent = 0
  closed = false
  res.on('close', () => { closed = true })
  res.writeHead(200, { 'content-type': 'application/json' })
  const item = Buffer.from(JSON.stringify({ pad: 'p'.repeat(20_000) }) + ',')
  res.write('[')
  sent = 1
  const pump = () => {
    while (sent + item.length < pageBytes - 10 && !res.destroyed) {
      sent += item.length
      if (!res.write(item)) return void res.once('drain', pump)
    }
    if (!res.destroyed) res.end('{"last":1}]')
  }
  pump()
}

async function source(config: Record<string, unknown>) {
  const loaded = await loadComponentConfig(schedule, { cron: '0 0 1 1 *', url: api.url, ...config })
  expect(loaded.problems).toEqual([])
  t = await testContext({ state: memoryState() })
  const s = (await schedule.create(loaded.config as never, t.ctx)) as unknown as Sched
  return s
}

describe('schedule: pages over the size limit', () => {
  it('an 8 MiB page with the default 1 MiB limit fails the tick with an error naming the limit; reading stops early', async () => {
    pageBytes = 8 * MB
    const s = await source({})
    const emit = recordingEmit()
    await s.start(emit)
    await s.tick()
    await s.stop()
    expect(emit.inputs).toEqual([])
    const failed = t.logs.find((l) => l.msg === 'poll failed; cursor not advanced')
    expect(failed?.reason).toBe(`GET ${api.origin}/ answered a page over maxBytes (1048576 bytes); reading stopped there. Raise "maxBytes" or ask the API for smaller pages`)
    await until(() => closed, 10_000, 'the server sees the connection close')
    expect(sent).toBeLessThan(6 * MB)
  })

  it('maxBytes raises the limit: the same page is read whole', async () => {
    pageBytes = 8 * MB
    const s = await source({ maxBytes: 9 * MB })
    const emit = recordingEmit()
    await s.start(emit)
    await s.tick()
    await s.stop()
    expect(t.logs.find((l) => l.msg === 'poll failed; cursor not advanced')).toBeUndefined()
    expect(emit.inputs.at(-1)!.body).toEqual({ last: 1 })
  })
})
