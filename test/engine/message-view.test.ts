import { describe, expect, it } from 'vitest'
import { shownMessage } from '../../engine/message-view.ts'
import { run as messagesCommand } from '../../engine/commands/messages.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { tempDir } from '../runtime/_helpers.ts'

/** A store in a directory of its own, on the clock `now`, holding one claimed message: `use` gets both (and the directory); all removed after. */
async function withClaimed(now: () => number, use: (store: MessageStore, id: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir('weir-message-view-')
  const store = openSqliteStore({ dataDir: dir.path, now })
  try {
    const { id } = await store.enqueue('orders', { body: { n: 1 } })
    await store.claim('orders', 1)
    await use(store, id, dir.path)
  } finally {
    await store.close()
    await dir.remove()
  }
}

describe('a stored message as weir messages show and the dashboard show it', () => {
  it('a delivery waiting for its retry shows the budget it has spent, not the stored baseline (bookkeeping, not an event)', async () => {
    let t = 1_700_000_000_000
    await withClaimed(() => t, async (store, id) => {
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
    })
  })

  it('a message whose filters wait for their retry shows the budget they spent by the next attempt, as a delivery does, and when it is due; once finished, none', async () => {
    const t = 1_700_000_000_000
    await withClaimed(() => t, async (store, id, dir) => {
      await store.recordFilterRetry(id, { charged: 2, elapsedMs: 1500, nextAttemptAt: t + 1000 })
      const due = new Date(t + 1000).toISOString()
      expect(shownMessage((await store.get(id))!).filterRetry).toEqual({ budgetSpent: { attempts: 2, elapsedMs: 1500 }, nextAttemptAt: due })
      // weir messages show, beside the engine, says so in its text too.
      const out: string[] = []
      const io = { out: (x: string) => void out.push(x), err: () => {}, env: {}, cwd: dir, isTTY: false }
      expect(await messagesCommand(['show', id, '--data-dir', dir], io)).toBe(0)
      expect(out.join('\n')).toContain(`filters   retry budget spent: 2 attempts, 1500 ms (by the attempt due ${due})`)
      await store.fail(id, 'filters/0: gave up after 3 attempts: lookup API down')
      expect(shownMessage((await store.get(id))!)).not.toHaveProperty('filterRetry')
    })
  })
})
