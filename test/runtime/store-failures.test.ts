import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { encryptContent, onUnreadable } from '../../shared/store/encrypted.ts'
import { INTERRUPTED_ERROR, MAX_INTERRUPTIONS } from '../../shared/store/types.ts'
import { createMetrics } from '../../engine/admin/metrics.ts'
import { composeObservers, RuntimeWatch } from '../../engine/alerts/index.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { feedSource, destination, until, useRuntimeFixture, type RuntimeFixture } from './_helpers.ts'

/** What an operator sees of the channel: its counters, the alerts' error count and /metrics. */
function watched(rt: RuntimeFixture) {
  const handles: ChannelHandle[] = []
  const metrics = createMetrics({ handles: () => handles, store: () => rt.store })
  const watch = new RuntimeWatch(Date.now, 300_000)
  return {
    handles, watch,
    observer: composeObservers(metrics.observer, watch.observer),
    errorsMetric: async () => {
      const line = (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith('weir_messages_finished_total{channel="test",status="error"}'))
      return line === undefined ? 0 : Number(line.split(' ').at(-1))
    },
  }
}

/** Closes the store as a crash would (the claim kept, the lock naming a dead process) and opens it again. */
async function crash(rt: RuntimeFixture, wrap: (s: MessageStore) => MessageStore = (s) => s): Promise<void> {
  await rt.store.close()
  await writeFile(join(rt.dir.path, 'weir.lock'), '999999999')
  rt.store = wrap(openSqliteStore({ dataDir: rt.dir.path }))
}

describe('messages the store puts in error outside processing are counted by the running channel', () => {
  const rt = useRuntimeFixture()

  it(`a message given up after ${MAX_INTERRUPTIONS} unclean stops: counters, the alerts and /metrics see it once`, async () => {
    const { id } = await rt.store.enqueue('test', { body: { i: 'suspect' } })
    for (let i = 0; i < MAX_INTERRUPTIONS; i++) {
      const [m] = await rt.store.claim('test', 1)
      expect(m!.id).toBe(id)
      await crash(rt)
    }
    expect((await rt.store.get(id))!.message).toMatchObject({ status: 'error', error: INTERRUPTED_ERROR })
    const w = watched(rt)
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] }, { observer: w.observer })
    w.handles.push(h)
    await until(() => h.counters().errors === 1)
    expect(w.watch.errors('test', 60_000)).toBe(1)
    expect(await w.errorsMetric()).toBe(1)

    // A second start of the channel in the same process does not count it again.
    await h.stop()
    const again = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] }, { observer: w.observer })
    w.handles.splice(0, 1, again)
    await src.emit({ after: 'restart' })
    await again.whenIdle()
    expect(again.counters()).toMatchObject({ errors: 0, delivered: 1 })
    expect(w.watch.errors('test', 60_000)).toBe(1)
    expect(await w.errorsMetric()).toBe(1)
  }, 20_000)

  it('a message no key of the store keyring opens: counters, the alerts and /metrics see it once', async () => {
    const lost = randomBytes(32)
    const sealed = encryptContent(rt.store, { key: async () => lost, channels: true })
    const { id } = await sealed.enqueue('test', { body: { mrn: 'MRN-1' } })
    await sealed.close()
    const current = randomBytes(32)
    rt.store = encryptContent(openSqliteStore({ dataDir: rt.dir.path }), { key: async () => current, channels: true })
    const told: string[] = []
    onUnreadable(rt.store, (m) => told.push(m.id))
    const w = watched(rt)
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)] }, { observer: w.observer })
    w.handles.push(h)
    await until(() => h.counters().errors === 1)
    await src.emit({ mrn: 'MRN-2' })
    await h.whenIdle()
    expect(told).toEqual([id])
    expect(h.counters()).toMatchObject({ errors: 1, delivered: 1 })
    expect(w.watch.errors('test', 60_000)).toBe(1)
    expect(await w.errorsMetric()).toBe(1)
    expect((await rt.store.get(id))!.message.status).toBe('error')
  }, 20_000)

  it('a message stored in error because its order key cannot be computed: the alerts and /metrics see it too', async () => {
    const w = watched(rt)
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url)], options: { orderBy: 'mrn' } }, { observer: w.observer })
    w.handles.push(h)
    await src.emit({ name: 'no mrn' })
    await h.whenIdle()
    expect(h.counters().errors).toBe(1)
    expect(w.watch.errors('test', 60_000)).toBe(1)
    expect(await w.errorsMetric()).toBe(1)
  }, 20_000)
})
