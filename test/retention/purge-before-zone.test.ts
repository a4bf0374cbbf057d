// `weir messages purge --before T`: a date and time must say which zone it is in (Z or ±hh:mm); read
// in the server's local zone, the same command would delete different messages on two servers. A
// date alone is midnight UTC wherever the command runs. Checked in spawned processes with TZ set.
import { afterAll, beforeAll, expect, it } from 'vitest'
import { join } from 'node:path'
import { openSqliteStore } from '../../shared/store/index.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { weir } from '../security/_at-rest.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
let data: string
let id: string
beforeAll(async () => {
  dir = await tempDir('weir-purge-zone-')
  data = join(dir.path, 'data')
  const store = openSqliteStore({ dataDir: data })
  id = (await store.enqueue('c', { body: { mrn: 'MRN-ZONE' } })).id
  await store.claim('c', 1)
  await store.complete(id, 'delivered')
  await store.close()
})
afterAll(async () => {
  await dir.remove()
})

const purge = (before: string, TZ: string) => weir(['messages', 'purge', '--before', before, '--data-dir', data], { TZ })
const ZONES = ['UTC', 'Asia/Tokyo', 'America/Los_Angeles']

it('a date and time without a zone is refused (ERR_USAGE naming --before), whatever TZ, and nothing is deleted', async () => {
  for (const TZ of ZONES) {
    for (const before of ['2026-11-30T10:00', '2026-11-30T10:00:00.5', '2026-11-30 10:00']) {
      const r = await purge(before, TZ)
      expect([r.code, r.out], `${before} TZ=${TZ}`).toEqual([2, ''])
      expect(r.err, `${before} TZ=${TZ}`).toContain('--before')
      expect(r.err).toContain('zone')
    }
  }
  const store = openSqliteStore({ dataDir: data, owner: false, create: false })
  expect((await store.get(id))?.message.status).toBe('delivered')
  await store.close()
}, 60_000)

it('a date alone is midnight UTC and a date-time with a zone is that instant, whatever TZ', async () => {
  for (const TZ of ZONES) {
    const day = await purge('2026-11-30', TZ)
    expect([day.code, day.err], TZ).toEqual([0, ''])
    expect(day.out, TZ).toContain('before 2026-11-30T00:00:00.000Z')
    const zoned = await purge('2026-11-30T10:00+01:00', TZ)
    expect([zoned.code, zoned.err], TZ).toEqual([0, ''])
    expect(zoned.out, TZ).toContain('before 2026-11-30T09:00:00.000Z')
    const utc = await purge('2026-11-30T10:00Z', TZ)
    expect([utc.code, utc.err], TZ).toEqual([0, ''])
    expect(utc.out, TZ).toContain('before 2026-11-30T10:00:00.000Z')
  }
}, 60_000)
