import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { join, resolve } from 'node:path'
import { loadChannelObject } from '../../engine/load.ts'
import { applyRetention, startRetention } from '../../engine/retention.ts'
import { createLogger, silentLogger } from '../../shared/log/index.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import type { RetentionOptions } from '../../shared/config/types.ts'
import { tempDir, until } from '../runtime/_helpers.ts'
import type { LogLine } from '../_setup.ts'

const DAY = 86_400_000
let dir: Awaited<ReturnType<typeof tempDir>>
let store: MessageStore
let t = 0
beforeEach(async () => {
  dir = await tempDir('weir-retention-rules-')
  t = 0
  store = openSqliteStore({ dataDir: join(dir.path, 'data'), now: () => t })
})
afterEach(async () => {
  await store.close()
  await dir.remove()
})

/** Stores a message of `channel` finished with `status` on `day` (or left queued); returns its body. */
async function message(channel: string, day: number, status: 'delivered' | 'filtered' | 'error' | 'queued'): Promise<string> {
  t = day * DAY
  const body = `${channel}-${status}-day${day}`
  const { id } = await store.enqueue(channel, { body })
  if (status === 'queued') return body
  await store.claim(channel, 10)
  await store.complete(id, status)
  return body
}

const left = async (channel = 'c') => (await store.list({ channel, order: 'asc', limit: 1000 })).map((m) => m.body)
const apply = (retention: RetentionOptions, day: number) => applyRetention(store, [{ name: 'c', retention }], { now: () => day * DAY })

describe('options.retention', () => {
  it('maxAgeDays deletes delivered and filtered messages older than that, never errors, queued ones nor other channels', async () => {
    await message('c', 0, 'delivered')
    await message('c', 1, 'filtered')
    const error = await message('c', 2, 'error')
    const queued = await message('c', 2, 'queued')
    const recent = await message('c', 8, 'delivered')
    const other = await message('o', 0, 'delivered')
    expect((await apply({ maxAgeDays: 7 }, 10)).get('c')).toEqual({ purged: 2, errors: 0 })
    expect(await left()).toEqual([error, queued, recent])
    expect(await left('o')).toEqual([other])
  })

  it('maxMessages alone never deletes a message in error, however many and however old', async () => {
    const errors = [await message('c', 0, 'error'), await message('c', 0, 'error'), await message('c', 1, 'error')]
    await message('c', 1, 'delivered')
    await message('c', 2, 'filtered')
    const more = [await message('c', 3, 'error'), await message('c', 3, 'error')]
    const newest = [await message('c', 4, 'delivered'), await message('c', 5, 'delivered')]
    expect((await apply({ maxMessages: 2 }, 400)).get('c')).toEqual({ purged: 2, errors: 0 })
    expect(await left()).toEqual([...errors, ...more, ...newest])
  })

  it('keepErrorsDays keeps errors longer (or shorter) than the rest', async () => {
    const error = await message('c', 0, 'error')
    await message('c', 0, 'delivered')
    expect(await apply({ maxAgeDays: 7, keepErrorsDays: 30 }, 10)).toEqual(new Map([['c', { purged: 1, errors: 0 }]]))
    expect(await left()).toEqual([error])
    expect(await apply({ maxAgeDays: 7, keepErrorsDays: 30 }, 29)).toEqual(new Map([['c', { purged: 0, errors: 0 }]]))
    expect(await apply({ maxAgeDays: 7, keepErrorsDays: 30 }, 31)).toEqual(new Map([['c', { purged: 1, errors: 1 }]]))
    expect(await left()).toEqual([])
    const fresh = await message('c', 40, 'delivered')
    await message('c', 40, 'error')
    expect((await apply({ keepErrorsDays: 0.5 }, 41)).get('c')).toEqual({ purged: 1, errors: 1 })
    expect(await left()).toEqual([fresh])
  })

  it('maxMessages keeps the newest finished messages; errors go only by keepErrorsDays', async () => {
    await message('c', 0, 'delivered')
    const error = await message('c', 1, 'error')
    const queued = await message('c', 1, 'queued')
    await message('c', 2, 'filtered')
    const newest = [await message('c', 3, 'delivered'), await message('c', 4, 'error')]
    expect((await apply({ maxMessages: 2, keepErrorsDays: 30 }, 10)).get('c')).toEqual({ purged: 2, errors: 0 })
    expect(await left()).toEqual([error, queued, ...newest])
    expect((await apply({ maxMessages: 2 }, 10)).get('c')).toEqual({ purged: 0, errors: 0 })
    expect((await apply({ maxMessages: 2, keepErrorsDays: 8 }, 10)).get('c')).toEqual({ purged: 1, errors: 1 })
    expect(await left()).toEqual([queued, ...newest])
  })

  it('logs at info how many were deleted and how many of them were in error', async () => {
    await message('c', 0, 'delivered')
    await message('c', 0, 'error')
    await message('c', 1, 'error')
    t = 10 * DAY
    const lines: LogLine[] = []
    const log = createLogger({ level: 'info', pretty: false, destination: { write: (l: string) => { lines.push(JSON.parse(l)) } } as NodeJS.WritableStream })
    const task = startRetention(store, [{ name: 'c', retention: { maxAgeDays: 1, keepErrorsDays: 5 } }], { log, now: () => t, intervalMs: 60_000 })
    await until(async () => (await left()).length === 0)
    await task.stop()
    expect(lines.filter((l) => l.msg.startsWith('retention'))).toEqual([expect.objectContaining({ level: 30, channel: 'c', purged: 3, errors: 2, msg: 'retention: finished messages deleted' })])
  })

  it('runs in the background at once and then every interval, until stopped', async () => {
    await message('c', 0, 'delivered')
    t = 10 * DAY
    const task = startRetention(store, [{ name: 'c', retention: { maxAgeDays: 1 } }], { log: silentLogger, now: () => t, intervalMs: 20 })
    await until(async () => (await left()).length === 0)
    await message('c', 10, 'delivered')
    t = 12 * DAY
    await until(async () => (await left()).length === 0)
    await task.stop()
    await message('c', 12, 'delivered')
    t = 20 * DAY
    await new Promise((ok) => setTimeout(ok, 100))
    expect(await left()).toHaveLength(1)
  })

  it('is validated with the channel: pointers to what is wrong', async () => {
    const base = { name: 'c', source: { type: 'http-listener', config: { port: 0 } }, destinations: [{ name: 'f', type: 'file', config: { directory: 'out' } }] }
    const file = resolve(dir.path, 'c.json')
    const load = (retention: unknown) => loadChannelObject({ ...base, options: { retention } }, { file, env: {} })
    expect((await load({ maxMessages: 100, keepErrorsDays: 90 })).options.retention).toEqual({ maxMessages: 100, keepErrorsDays: 90 })
    expect((await load(undefined)).options.retention).toBeUndefined()
    const err = await load({ maxMessages: 0, maxAgeDays: 0, keep: 1 }).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.problems.map((p: { pointer: string }) => p.pointer).sort()).toEqual(['/options/retention/keep', '/options/retention/maxAgeDays', '/options/retention/maxMessages'])
    expect((await load({}).catch((e) => e)).code).toBe('ERR_CONFIG_INVALID')
  })
})
