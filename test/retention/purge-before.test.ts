// `weir messages purge --before T`: T is an ISO date or a duration ago. A value that is neither (a
// duration without its unit, "40") must be refused, not read by Date.parse's lenient fallback as a
// date in the future (the year 2040), which would purge every finished message.
import { afterEach, beforeEach, expect, it } from 'vitest'
import { join } from 'node:path'
import { openSqliteStore } from '../../shared/store/index.ts'
import { run as messages, parseSince } from '../../engine/commands/messages.ts'
import { tempDir } from '../runtime/_helpers.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => {
  dir = await tempDir('weir-purge-before-')
})
afterEach(async () => {
  await dir.remove()
})

it('purge --before 40 (a duration without its unit) is refused and deletes nothing', async () => {
  const data = join(dir.path, 'data')
  const store = openSqliteStore({ dataDir: data })
  const { id } = await store.enqueue('c', { body: { mrn: 'MRN-KEEP' } })
  await store.claim('c', 1)
  await store.complete(id, 'delivered')
  await store.close()
  const out: string[] = []
  const io = { out: (t: string) => out.push(t), err: () => {}, env: {}, cwd: dir.path, isTTY: false }
  const err = await messages(['purge', '--before', '40', '--data-dir', data], io).catch((e: { code?: string }) => e)
  expect([typeof err === 'object' ? err.code : err, out]).toEqual(['ERR_USAGE', []])
  const after = openSqliteStore({ dataDir: data, owner: false, create: false })
  expect((await after.get(id))?.message.status).toBe('delivered')
  await after.close()
})

it('takes ISO dates and durations, and nothing else', () => {
  const now = Date.UTC(2026, 11, 1, 9, 0, 0)
  expect(parseSince('30d', now, '--before')).toBe(now - 30 * 86_400_000)
  expect(parseSince('2026-11-30', now, '--before')).toBe(Date.UTC(2026, 10, 30))
  expect(parseSince('2026-11-30T08:15:00Z', now, '--before')).toBe(Date.UTC(2026, 10, 30, 8, 15))
  expect(parseSince('2026-11-30T08:15:00.250+01:00', now, '--before')).toBe(Date.UTC(2026, 10, 30, 7, 15, 0, 250))
  for (const bad of ['40', '7', '30 days', 'Dec 1', '12/01/2026', '1 2040']) expect(() => parseSince(bad, now, '--before'), bad).toThrow(/--before must be an ISO date/)
})
