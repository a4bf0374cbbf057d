import { describe, expect, it } from 'vitest'
import { shownMessage } from '../../engine/message-view.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { tempDir } from '../runtime/_helpers.ts'

describe('a stored message as weir messages show and the dashboard show it', () => {
  it('a delivery waiting for its retry shows the budget it has spent, not the stored baseline (bookkeeping, not an event)', async () => {
    const dir = await tempDir('weir-message-view-')
    let t = 1_700_000_000_000
    const store = openSqliteStore({ dataDir: dir.path, now: () => t })
    try {
      const { id } = await store.enqueue('orders', { body: { n: 1 } })
      await store.claim('orders', 1)
      // Three attempts, two of them charged (one was a failure of the credential), 4.5 s of the budget spent by the retry.
      for (const [i, charged] of [1, 1, 2].entries()) {
        t += 1000
        const attempt = { startedAt: t, endedAt: t + 10, outcome: 'retryable' as const, error: `http 503 (${i})` }
        await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: t + 2000, budget: { charged, elapsedMs: 4500 }, attempt })
      }
      const [delivery] = shownMessage((await store.get(id))!).deliveries
      expect(delivery).toMatchObject({ destination: 'api', status: 'retrying', attempts: 3, budgetSpent: { attempts: 2, elapsedMs: 4500 } })
      expect(Object.keys(delivery!)).not.toContain('budgetSince')
      expect(Object.keys(delivery!)).not.toContain('budgetAttempts')
    } finally {
      await store.close()
      await dir.remove()
    }
  })
})
