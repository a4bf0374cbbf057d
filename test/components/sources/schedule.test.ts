import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import schedule, { linkWithRel } from '../../../components/sources/schedule.ts'
import { errorCodes } from '../../../shared/errors.ts'
import { loadComponentConfig, loopbackServer, memoryState, recordingEmit, staticTokenProvider, storeState, testContext, type RecordedRequest, type TestContext } from '../../_setup.ts'
import type { ServerResponse } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openSqliteStore } from '../../../shared/store/index.ts'

type Sched = { start: (e: ReturnType<typeof recordingEmit>) => Promise<void>; stop: () => Promise<void>; tick: () => Promise<void> }

const TOKEN = 'sched-token-abcdef123456'
let t: TestContext
let api: Awaited<ReturnType<typeof loopbackServer>>
let answer: (req: RecordedRequest, res: ServerResponse) => void | Promise<void>
const stops: Array<() => Promise<void>> = []
beforeAll(async () => { api = await loopbackServer((req, res) => answer(req, res)) })
afterAll(async () => { await api.close() })
afterEach(async () => {
  vi.useRealTimers()
  for (const s of stops.splice(0)) await s()
  await t?.cleanup()
  api.requests.length = 0
})

const sendJson = (res: ServerResponse, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(200, { 'content-type': 'application/fhir+json', ...headers })
  res.end(JSON.stringify(body))
}
const patient = (id: string, lastUpdated: string, versionId = '1') => ({ resourceType: 'Patient', id, meta: { versionId, lastUpdated } })
const bundle = (resources: unknown[], next?: string) => ({
  resourceType: 'Bundle', type: 'searchset',
  link: [{ relation: 'self', url: 'x' }, ...(next ? [{ relation: 'next', url: next }] : [])],
  entry: resources.map((resource) => ({ fullUrl: 'urn:x', resource })),
})

async function source(config: Record<string, unknown>, state = memoryState()) {
  const { credential, ...rest } = config
  const loaded = await loadComponentConfig(schedule, { cron: '*/10 * * * * *', ...rest })
  expect(loaded.problems).toEqual([])
  t = await testContext({ state, credentials: { fhir: staticTokenProvider('fhir', TOKEN) } })
  const s = (await schedule.create({ ...loaded.config, ...(credential ? { credential } : {}) } as never, t.ctx)) as unknown as Sched
  stops.push(() => s.stop())
  return s
}

describe('schedule config', () => {
  it.each([
    [{ cron: '* * * * *' }, '/source/config', 'must have required property "url"'],
    [{ cron: '61 * * * *', url: 'https://x.org/' }, '/source/config/cron', /^invalid cron expression "61 \* \* \* \*": /],
    [{ cron: 'every minute', url: 'https://x.org/' }, '/source/config/cron', /^invalid cron expression "every minute"/],
    [{ cron: '* * * * *', timezone: 'Mars/Olympus', url: 'https://x.org/' }, '/source/config/timezone', 'unknown time zone "Mars/Olympus"'],
    [{ cron: '* * * * *', url: 'https://x.org/', items: 'entry[' }, '/source/config/items', /^invalid JSONata expression at position \d+: /],
    [{ cron: '* * * * *', url: 'https://x.org/', cursor: {} }, '/source/config/cursor', 'must have required property "param"'],
    [{ cron: '* * * * *', url: 'ftp://x.org/' }, '/source/config/url', 'must start with http:// or https://'],
    [{ cron: '* * * * *', url: 'https://x.org/', maxPages: 0 }, '/source/config/maxPages', 'must be >= 1'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(schedule, config)
    expect(problems).toHaveLength(1)
    expect(problems[0]!.pointer).toBe(pointer)
    if (typeof msg === 'string') expect(problems[0]!.message).toBe(msg)
    else expect(problems[0]!.message).toMatch(msg)
  })

  it('create() refuses an invalid cron expression with ERR_SCHEDULE_INVALID', async () => {
    t = await testContext()
    const err = await Promise.resolve().then(() => schedule.create({ cron: '* * *', timezone: 'UTC', url: 'https://x.org/', headers: {}, timeoutMs: 1000, maxPages: 1, maxBytes: 1024, runOnStart: false }, t.ctx)).catch((e) => e)
    expect(err.code).toBe('ERR_SCHEDULE_INVALID')
    expect(err.message).toMatch(/^invalid cron expression "\* \* \*"/)
  })

  it.each([
    ['<https://a/2>; rel="next", <https://a/1>; rel="prev"', 'https://a/2'],
    ['<https://a/1>; rel=prev, <https://a/3>; title="a, b"; rel="last next"', 'https://a/3'],
    ['<https://a/1>; rel="prev"', undefined],
  ])('Link header %s → %s', (header, next) => {
    expect(linkWithRel(header, 'next')).toBe(next)
  })
})

describe('schedule source', () => {
  it('follows pagination across 3 pages (Link header, then FHIR Bundle link) and emits every item', async () => {
    answer = (req, res) => {
      if (req.url === '/fhir/Patient?_count=2') return sendJson(res, bundle([patient('a', '2026-01-01T00:00:00Z'), patient('b', '2026-01-02T00:00:00Z')]), { link: `<${api.origin}/fhir/Patient?page=2>; rel="next"` })
      if (req.url === '/fhir/Patient?page=2') return sendJson(res, bundle([patient('c', '2026-01-03T00:00:00Z')], '/fhir/Patient?page=3'))
      if (req.url === '/fhir/Patient?page=3') return sendJson(res, bundle([patient('d', '2026-01-04T00:00:00Z')]))
      res.statusCode = 404; res.end()
    }
    const src = await source({ url: api.origin + '/fhir/Patient?_count=2', credential: 'fhir' })
    const emit = recordingEmit()
    await src.start(emit)
    await src.tick()
    expect(api.requests.map((r) => r.url)).toEqual(['/fhir/Patient?_count=2', '/fhir/Patient?page=2', '/fhir/Patient?page=3'])
    expect(api.requests.every((r) => r.headers.authorization === `Bearer ${TOKEN}`)).toBe(true)
    expect(emit.inputs.map((i) => (i.body as { id: string }).id)).toEqual(['a', 'b', 'c', 'd'])
    expect(emit.inputs[2]).toMatchObject({ contentType: 'application/fhir+json', dedupeKey: 'schedule:Patient/c/_history/1', attributes: { url: `${api.origin}/fhir/Patient?page=2`, page: '2' } })
    expect(t.logs.find((l) => l.msg === 'poll finished')).toMatchObject({ emitted: 4, duplicates: 0 })
  })

  it('keeps a cursor in the state and sends it after a restart (state in the SQLite store, closed and reopened)', async () => {
    const seen: string[] = []
    answer = (req, res) => {
      seen.push(new URL(req.url, api.origin).searchParams.get('_lastUpdated') ?? '(none)')
      sendJson(res, bundle(seen.length === 1 ? [patient('a', '2026-03-01T10:00:00+01:00'), patient('b', '2026-03-01T09:30:00Z'), patient('c', '2026-02-01T00:00:00Z')] : []))
    }
    const data = await mkdtemp(join(tmpdir(), 'weir-sched-'))
    stops.push(() => rm(data, { recursive: true, force: true }))
    const loaded = await loadComponentConfig(schedule, { cron: '*/10 * * * * *', url: api.origin + '/fhir/Observation', cursor: { param: '_lastUpdated' } })
    expect(loaded.problems).toEqual([])
    // One "process": a store, the source's state in it as the runtime builds it, then everything closed.
    const run = async () => {
      const store = openSqliteStore({ dataDir: data })
      const tc = await testContext({ state: storeState(store, 'obs', 'source') })
      const src = (await schedule.create(loaded.config as never, tc.ctx)) as unknown as Sched
      await src.start(recordingEmit())
      await src.tick()
      await src.stop()
      await tc.cleanup()
      await store.close()
    }
    await run()
    const reader = openSqliteStore({ dataDir: data, owner: false })
    expect(await reader.getState('obs', 'source', 'cursor')).toBe('2026-03-01T09:30:00Z') // compared as instants: 10:00+01:00 is 09:00Z
    await reader.close()
    await run() // a new process with the same data directory
    expect(seen).toEqual(['(none)', 'ge2026-03-01T09:30:00Z'])
  })

  describe('cursor boundary: items sharing the stored value', () => {
    /** A FHIR server filtering on _lastUpdated=gt… / ge… (as instants) over the resources it holds now. */
    function fhirServer(held: Array<ReturnType<typeof patient>>) {
      answer = (req, res) => {
        const q = new URL(req.url, api.origin).searchParams.get('_lastUpdated')
        const m = q ? /^(gt|ge)(.+)$/.exec(q) : null
        const since = m ? Date.parse(m[2]!) : undefined
        sendJson(res, bundle(held.filter((r) => since === undefined || (m![1] === 'gt' ? Date.parse(r.meta.lastUpdated) > since : Date.parse(r.meta.lastUpdated) >= since))))
      }
    }

    it('an item committed after a tick with the same lastUpdated as the newest item of that tick is not lost, and the one already emitted is not emitted again', async () => {
      const held = [patient('a', '2026-04-01T10:00:00Z')]
      fhirServer(held)
      const src = await source({ url: api.origin + '/fhir/Patient', cursor: { param: '_lastUpdated' } })
      const emit = recordingEmit()
      await src.start(emit)
      await src.tick()
      // Written in the same instant as "a", but visible only after the first tick read the page.
      held.push(patient('b', '2026-04-01T10:00:00Z'), patient('c', '2026-04-01T10:05:00Z'))
      await src.tick()
      expect(emit.inputs.map((i) => (i.body as { id: string }).id)).toEqual(['a', 'b', 'c'])
      expect(new URL(api.requests[1]!.url, api.origin).searchParams.get('_lastUpdated')).toBe('ge2026-04-01T10:00:00Z')
      expect(t.logs.filter((l) => l.msg === 'poll finished').at(-1)).toMatchObject({ emitted: 2, duplicates: 1 })
    })

    it('the items already emitted at the stored value are remembered across a restart', async () => {
      const state = memoryState()
      const held = [patient('a', '2026-04-01T10:00:00Z'), patient('b', '2026-04-01T10:00:00.000+00:00')]
      fhirServer(held)
      const first = await source({ url: api.origin + '/fhir/Patient', cursor: { param: '_lastUpdated' } }, state)
      const emit1 = recordingEmit()
      await first.start(emit1)
      await first.tick()
      await first.stop()
      held.push(patient('c', '2026-04-01T10:00:00Z'))
      // A new process: its emit (the store) knows nothing, only the component state survives.
      const second = await source({ url: api.origin + '/fhir/Patient', cursor: { param: '_lastUpdated' } }, state)
      const emit2 = recordingEmit()
      await second.start(emit2)
      await second.tick()
      expect(emit1.inputs.map((i) => (i.body as { id: string }).id)).toEqual(['a', 'b'])
      expect(emit2.inputs.map((i) => (i.body as { id: string }).id)).toEqual(['c'])
    })
  })

  it('starts from cursor.initial and does not advance the cursor when a page fails', async () => {
    answer = (req, res) => {
      if (req.url.includes('page=2')) { res.writeHead(503, { 'retry-after': '1' }); return void res.end('down') }
      sendJson(res, bundle([patient('a', '2026-05-01T00:00:00Z')], `${api.origin}/fhir/Observation?page=2`))
    }
    const state = memoryState()
    const src = await source({ url: api.origin + '/fhir/Observation', cursor: { param: '_lastUpdated', prefix: 'ge', initial: '2026-01-01' } }, state)
    const emit = recordingEmit()
    await src.start(emit)
    await src.tick()
    expect(new URL(api.requests[0]!.url, api.origin).searchParams.get('_lastUpdated')).toBe('ge2026-01-01')
    expect(emit.inputs).toHaveLength(1)
    expect(state.map.has('cursor')).toBe(false)
    expect(t.logs.find((l) => l.msg === 'poll failed; cursor not advanced')?.reason).toMatch(/answered 503/)
  })

  it('does not follow a next link to another origin', async () => {
    const evil = await loopbackServer((_, res) => sendJson(res, bundle([])))
    try {
      answer = (_, res) => sendJson(res, bundle([patient('a', '2026-01-01T00:00:00Z')], `${evil.origin}/steal`))
      const src = await source({ url: api.origin + '/fhir/Patient', credential: 'fhir', cursor: { param: '_lastUpdated' } })
      await src.start(recordingEmit())
      await src.tick()
      expect(evil.requests).toEqual([])
      expect(t.logs.find((l) => l.msg === 'poll failed; cursor not advanced')).toMatchObject({ reason: `next link to another origin (${evil.origin}) refused` })
      expect(t.state.map.has('cursor')).toBe(false)
    } finally { await evil.close() }
  })

  it('an expression that fails at run time: the poll fails naming the expression and the place in it, not the value it met', async () => {
    answer = (_, res) => sendJson(res, { data: { results: [{ id: 'MRN-8841207' }] } })
    const src = await source({ url: api.origin + '/api/items', items: 'data.results', dedupeKey: "'item-' & $undefinedFn(id)" })
    const emit = recordingEmit()
    await src.start(emit)
    await src.tick()
    expect(emit.inputs).toEqual([])
    const failed = t.logs.find((l) => l.msg === 'poll failed; cursor not advanced')
    expect(failed?.reason).toBe('dedupeKey expression failed at position 23 ($undefinedFn): Attempted to invoke a non-function')
    expect(JSON.stringify(t.logs)).not.toContain('MRN-8841207')
  })

  it('selects items and next links with JSONata, and derives dedupe keys from them', async () => {
    answer = (req, res) => {
      const page = req.url.endsWith('p2') ? 2 : 1
      sendJson(res, { data: { results: page === 1 ? [{ id: 1, v: 'x' }, { id: 2, v: 'y' }] : [{ id: 1, v: 'x' }] }, paging: page === 1 ? { next: '/api/items?p2' } : {} })
    }
    const src = await source({ url: api.origin + '/api/items', items: 'data.results', nextLink: 'paging.next', dedupeKey: "'item-' & id" })
    const emit = recordingEmit()
    await src.start(emit)
    await src.tick()
    expect(emit.inputs.map((i) => [i.body, i.dedupeKey, i.contentType])).toEqual([
      [{ id: 1, v: 'x' }, 'schedule:item-1', 'application/json'],
      [{ id: 2, v: 'y' }, 'schedule:item-2', 'application/json'],
      [{ id: 1, v: 'x' }, 'schedule:item-1', 'application/json'],
    ])
    expect(t.logs.find((l) => l.msg === 'poll finished')).toMatchObject({ emitted: 2, duplicates: 1 })
  })

  it('stops the tick under backpressure without advancing the cursor', async () => {
    answer = (_, res) => sendJson(res, bundle([patient('a', '2026-01-01T00:00:00Z'), patient('b', '2026-01-02T00:00:00Z')]))
    const src = await source({ url: api.origin + '/fhir/Patient', cursor: { param: '_lastUpdated' } })
    const emit = recordingEmit({ fail: (_, n) => (n === 1 ? new errorCodes.ERR_BACKPRESSURE('queue full') : undefined) })
    await src.start(emit)
    await src.tick()
    expect(emit.inputs).toHaveLength(1)
    expect(t.state.map.has('cursor')).toBe(false)
    expect(t.logs.find((l) => l.msg === 'queue full; poll stopped, cursor not advanced')).toBeDefined()
  })

  it('ticks on the cron schedule with fake timers, never overlapping, and stop() ends the schedule', async () => {
    vi.useFakeTimers({ now: new Date('2026-06-01T12:00:00.500Z'), toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    let release!: () => void
    let arrived!: () => void
    let arrival = new Promise<void>((r) => { arrived = r })
    answer = async (_, res) => {
      arrived()
      await new Promise<void>((r) => { release = r })
      sendJson(res, bundle([]))
    }
    const src = await source({ url: api.origin + '/fhir/Patient', cron: '*/10 * * * * *' })
    await src.start(recordingEmit())
    await vi.advanceTimersByTimeAsync(9_000)
    expect(api.requests).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(1_000) // 12:00:10
    await arrival
    expect(api.requests).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(10_000) // 12:00:20, the first poll still waits for its response
    expect(t.logs.filter((l) => l.msg === 'previous poll still running; tick skipped')).toHaveLength(1)
    expect(api.requests).toHaveLength(1)
    arrival = new Promise<void>((r) => { arrived = r })
    release()
    await vi.waitFor(() => expect(t.logs.some((l) => l.msg === 'poll finished')).toBe(true), { interval: 1 })
    await vi.advanceTimersByTimeAsync(10_000) // 12:00:30
    await arrival
    expect(api.requests).toHaveLength(2)
    release()
    await src.stop()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(api.requests).toHaveLength(2)
  })
})
