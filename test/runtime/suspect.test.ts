import { describe, it, expect } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openSqliteStore } from '../../shared/store/index.ts'
import { feedSource, destination, until, useRuntimeFixture } from './_helpers.ts'

describe('a message under way at an unclean stop (processed alone after the restart)', () => {
  const rt = useRuntimeFixture()

  it('once its attempt ends in a retry, claiming resumes at once: the messages behind it do not wait for the next poll', async () => {
    const { id: suspect } = await rt.store.enqueue('test', { body: { i: 'suspect' } })
    await rt.store.claim('test', 1)
    // A crash: the store closes without releasing the claim, and the lock names a dead process.
    await rt.store.close()
    await writeFile(join(rt.dir.path, 'weir.lock'), '999999999')
    rt.store = openSqliteStore({ dataDir: rt.dir.path })
    const others: string[] = []
    for (let i = 0; i < 3; i++) others.push((await rt.store.enqueue('test', { body: { i } })).id)
    let refused = 0
    rt.api.behaviour = ({ key }) => (key === `${suspect}:api` && refused++ === 0 ? { status: 503 } : undefined)
    const src = feedSource()
    // A poll interval far longer than the wait below: only a claim woken at once delivers the others in time.
    await rt.start({
      source: src.definition,
      destinations: [destination('api', rt.api.url, { retry: { maxAttempts: 5, initialDelayMs: 20, maxDelayMs: 20, maxElapsedMs: 60_000 } })],
      options: { concurrency: 4 },
    }, { pollIntervalMs: 600_000 })
    const ids = () => rt.api.keys().map((k) => k.split(':')[0])
    await until(() => new Set(ids()).size === 4, 10_000)
    expect(ids()[0]).toBe(suspect)
    expect(refused).toBeGreaterThan(0)
    expect(new Set(ids())).toEqual(new Set([suspect, ...others]))
  }, 20_000)
})
