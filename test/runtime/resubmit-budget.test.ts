import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { silentLogger } from '../../shared/log/index.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { channel, destination, feedSource, startApi, tempDir, until } from './_helpers.ts'

const CUT_OFF = 'cut off by the engine stopping'

let dir: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof startApi>>
/** Which calls the API answers 503 (before the resubmission); the next one hangs until the stop cuts it off, later ones get 200. */
let failing = 0
beforeEach(async () => {
  dir = await tempDir('weir-resubmit-budget-')
  failing = 0
  api = await startApi(({ n }) => (n <= failing ? { status: 503 } : n === failing + 1 ? { status: 200, hang: true } : { status: 200, body: 'ok' }))
})
afterEach(async () => {
  await api.close()
  await dir.remove()
})

describe('a message resubmitted after its retry budget was spent', () => {
  it.each([
    { budget: 'maxAttempts', retry: { maxAttempts: 3, maxElapsedMs: 600_000 }, failures: 3, downMs: 0 },
    // Resubmitted while the engine is down for longer than maxElapsedMs: the budget starts at the next attempt.
    { budget: 'maxElapsedMs', retry: { maxAttempts: 1000, maxElapsedMs: 1000 }, failures: 1000, downMs: 1200 },
  ])('gets a fresh $budget: an attempt cut off by a stop is made again at the next start, not put in error', async ({ retry, failures, downMs }) => {
    failing = failures
    const src = feedSource()
    const ch = channel({
      dir: dir.path, source: src.definition,
      destinations: [destination('api', api.url, { retry: { ...retry, initialDelayMs: 20, maxDelayMs: 20 }, config: { url: api.url, timeoutMs: 600_000 } })],
      options: { shutdownTimeoutMs: 100 },
    })
    const run = async (body: (store: MessageStore) => Promise<void>) => {
      const store = openSqliteStore({ dataDir: dir.path })
      const h = await startChannel(ch, { store, log: silentLogger, dataDir: dir.path })
      try {
        await body(store)
      } finally {
        await h.stop({ timeoutMs: 100 })
        await store.close()
      }
    }
    let id = ''
    // Run 1: every attempt fails (503) until the budget is spent.
    await run(async (store) => {
      id = (await src.emit({ n: 1 })).id
      await until(async () => (await store.get(id))!.message.status === 'error', 20_000)
    })
    const spent = api.received.length
    failing = spent
    const resubmitter = openSqliteStore({ dataDir: dir.path })
    expect(await resubmitter.resubmit({ ids: [id] })).toEqual([id])
    await resubmitter.close()
    await new Promise((ok) => setTimeout(ok, downMs))
    // Run 2: the one attempt after the resubmission hangs until the stop cuts it off.
    await run(async () => {
      await until(() => api.received.length > spent, 10_000)
    })
    // Run 3: the message is sent again, and delivered.
    await run(async (store) => {
      await until(async () => ['delivered', 'error'].includes((await store.get(id))!.message.status), 10_000)
    })
    const store = openSqliteStore({ dataDir: dir.path })
    try {
      const detail = (await store.get(id))!
      expect([detail.message.status, detail.message.error]).toEqual(['delivered', undefined])
      expect(api.received.length).toBe(spent + 2)
      // The history numbers every attempt, before and after the resubmission.
      expect(detail.attempts.slice(spent - 1).map((a) => [a.attempt, a.outcome, a.error ?? a.responseStatus])).toEqual([
        [spent, 'retryable', expect.stringContaining('503')], [spent + 1, 'retryable', expect.stringContaining(CUT_OFF)], [spent + 2, 'delivered', 200],
      ])
      expect(detail.deliveries.map((d) => [d.status, d.attempts, d.budgetAttempts])).toEqual([['delivered', spent + 2, spent]])
    } finally {
      await store.close()
    }
  }, 60_000)
})
