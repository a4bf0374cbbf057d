import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { silentLogger } from '../../shared/log/index.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { channel, destination, feedSource, startApi, tempDir, until } from './_helpers.ts'

const CUT_OFF = 'cut off by the engine stopping'

let dir: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof startApi>>
beforeEach(async () => {
  dir = await tempDir('weir-cut-off-')
  // Takes every request and never answers: each attempt lasts until the stop cuts it off.
  api = await startApi(() => ({ status: 200, hang: true }))
})
afterEach(async () => {
  await api.close()
  await dir.remove()
})

describe('a delivery cut off at every stop (shutdownTimeoutMs)', () => {
  it.each([
    { budget: 'maxAttempts', retry: { maxAttempts: 2, maxElapsedMs: 600_000 }, reason: /^api: gave up after 2 attempts: cut off by the engine stopping/ },
    { budget: 'maxElapsedMs', retry: { maxAttempts: 1000, maxElapsedMs: 150 }, reason: /^api: gave up after \d+ ms: cut off by the engine stopping/ },
  ])('goes to error once its $budget is spent, without calling the destination again', async ({ retry, reason }) => {
    const src = feedSource()
    const ch = channel({
      dir: dir.path, source: src.definition,
      destinations: [destination('api', api.url, { retry: { ...retry, initialDelayMs: 20, maxDelayMs: 20 }, config: { url: api.url, timeoutMs: 600_000 } })],
      options: { shutdownTimeoutMs: 100 },
    })
    let id = ''
    let store: MessageStore | undefined
    // One engine run per turn on the same data directory: start, wait for the attempt (or the end), stop.
    for (let run = 1; run <= 6; run++) {
      store = openSqliteStore({ dataDir: dir.path })
      const h = await startChannel(ch, { store, log: silentLogger, dataDir: dir.path })
      if (run === 1) id = (await src.emit({ n: 1 })).id
      const calls = api.received.length
      const s = store
      await until(async () => api.received.length > calls || (await s.get(id))!.message.status === 'error', 10_000)
      const ended = (await store.get(id))!.message.status === 'error'
      await h.stop({ timeoutMs: 100 })
      if (ended) break
      await store.close()
      store = undefined
    }
    store ??= openSqliteStore({ dataDir: dir.path })
    try {
      const detail = (await store.get(id))!
      expect(detail.message.status).toBe('error')
      expect(detail.message.error).toMatch(reason)
      // Every call the destination got is one cut-off attempt in the history; the last run made none.
      expect(detail.attempts.map((a) => [a.attempt, a.outcome, a.error])).toEqual(
        api.received.map((_, i) => [i + 1, 'retryable', expect.stringContaining(CUT_OFF)]))
      expect(detail.deliveries.map((d) => [d.status, d.attempts])).toEqual([['error', api.received.length]])
      expect(api.received.length).toBeLessThanOrEqual(retry.maxAttempts)
      if (retry.maxAttempts === 2) expect(api.received.length).toBe(2)
    } finally {
      await store.close()
    }
  }, 60_000)
})
