import Database from 'better-sqlite3'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { encryptContent } from '../../shared/store/encrypted.ts'
import { openPostgresStore, openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { SEARCH_KEY_NAMES as PG_SEARCH_KEY_NAMES } from '../../shared/store/postgres/open.ts'
import { SEARCH_KEY_NAMES } from '../../shared/store/sqlite/key-names.js'
import { filesHolding } from '../security/_at-rest.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

const MRN = 'MRN-SEARCH-7730291'
const mrn = (value: string) => ({ key: { name: 'mrn', value } })

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'weir-search-keys-')) })
afterEach(() => rm(dir, { recursive: true, force: true }))

/** A burst of messages for a thousand patients over two channels. */
const fill = (store: MessageStore) => Promise.all(Array.from({ length: 2000 }, (_, i) =>
  store.enqueue(i % 2 ? 'a' : 'b', { body: i }, { searchKeys: { mrn: [String(i % 1000)], accession: [`A${i}`] } })))

describe('a search by key is an index lookup', () => {
  it('the search key names in the log: none in an empty store, each name once however many values, those of encrypted channels too', async () => {
    const store = encryptContent(openSqliteStore({ dataDir: dir }), { key: async () => randomBytes(32), channels: new Set(['secret']) })
    try {
      expect(await store.searchKeyNames!()).toEqual([])
      await store.enqueue('secret', { body: 1 }, { searchKeys: { visit: ['V1', 'V2'] } })
      await store.enqueue('open', { body: 2 }, { searchKeys: { mrn: ['1'], visit: ['V3'] } })
      await store.enqueue('open', { body: 3 })
      expect(await store.searchKeyNames!()).toEqual(['mrn', 'visit'])
    } finally {
      await store.close()
    }
  })

  it('latestErrors of an encrypted channel: the error opened, never the sealed text', async () => {
    const key = randomBytes(32)
    const store = encryptContent(openSqliteStore({ dataDir: dir }), { key: async () => key, channels: new Set(['secret']) })
    try {
      const { id } = await store.enqueue('secret', { body: 1 })
      await store.claim('secret', 1)
      await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: { startedAt: 1, endedAt: 2, outcome: 'retryable', error: `http 503 for ${MRN}` } })
      expect((await store.get(id))!.deliveries[0]!.lastError).toBe(`http 503 for ${MRN}`)
      expect(await store.latestErrors!([id])).toEqual([{ id, destination: 'api', error: `http 503 for ${MRN}` }])
    } finally {
      await store.close()
    }
  })

  it('SQLite: EXPLAIN QUERY PLAN searches message_keys by its primary key (name, value[, channel]), never scans; searchKeyNames probes it once per name', async () => {
    const store = openSqliteStore({ dataDir: dir })
    try {
      await fill(store)
      const anyChannel = await store.explainList(mrn('7'))
      expect(anyChannel[0]).toBe('SEARCH k USING PRIMARY KEY (name=? AND value=?)')
      const oneChannel = await store.explainList({ ...mrn('7'), channel: 'a', status: 'queued' })
      expect(oneChannel[0]).toBe('SEARCH k USING PRIMARY KEY (name=? AND value=? AND channel=?)')
      expect([...anyChannel, ...oneChannel].filter((step) => step.startsWith('SCAN'))).toEqual([])
      expect((await store.list({ ...mrn('7'), channel: 'a' })).map((m) => m.body)).toEqual([1007, 7])
      expect(await store.searchKeyNames!()).toEqual(['accession', 'mrn'])
    } finally {
      await store.close()
    }
    // searchKeyNames: one probe of the primary key per name, never a pass over the values.
    const db = new Database(join(dir, 'weir.db'), { readonly: true })
    try {
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${SEARCH_KEY_NAMES}`).all() as Array<{ detail: string }>).map((r) => r.detail)
      const steps = plan.filter((step) => /message_keys/.test(step))
      expect(steps).toHaveLength(2)
      for (const step of steps) expect(step).toMatch(/^SEARCH message_keys USING PRIMARY KEY/)
    } finally {
      db.close()
    }
  })

  describe('PostgreSQL', () => {
    const pg = useEmbeddedPostgres()

    it('EXPLAIN uses the weir_message_keys primary key, with or without the channel; searchKeyNames probes it once per name', async () => {
      const store = await openPostgresStore({ url: await pg.server.createDatabase('search_keys') })
      try {
        await fill(store)
        await store.pool.query('ANALYZE')
        for (const filter of [mrn('7'), { ...mrn('7'), channel: 'a' }]) {
          const plan = (await store.explainList(filter)).join('\n')
          expect(plan).toMatch(/Index (Only )?Scan (Backward )?using weir_message_keys_pkey on weir_message_keys/)
          expect(plan).not.toMatch(/Seq Scan on weir_message_keys/)
        }
        expect((await store.list({ ...mrn('7'), channel: 'a' })).map((m) => m.body)).toEqual([1007, 7])
        expect(await store.searchKeyNames!()).toEqual(['accession', 'mrn'])
        // searchKeyNames: a loose index scan of the primary key (a recursion, each step one probe), never a
        // pass over the values. EXPLAIN does not show the recursive step's subplan: its nodes are what it shows.
        const names = JSON.stringify((await store.pool.query(`EXPLAIN (FORMAT JSON) ${PG_SEARCH_KEY_NAMES}`))[0])
        expect(names).toMatch(/"Node Type":"Recursive Union"/)
        expect(names).toMatch(/"Node Type":"Index Only Scan"[^}]*"Index Name":"weir_message_keys_pkey"/)
        expect(names).not.toMatch(/Seq Scan|Aggregate|"Node Type":"Sort"/)
      } finally {
        await store.close()
      }
    }, 60_000)
  })
})

describe('search keys of encrypted channels (options.encryptContent)', () => {
  it('stores keyed hashes: the clear value is nowhere in weir.db or its WAL, and a search by it still finds the message', async () => {
    const key = randomBytes(32)
    const store = encryptContent(openSqliteStore({ dataDir: dir }), { key: async () => key, channels: new Set(['secret']) })
    const kept = await store.enqueue('secret', { body: { mrn: MRN } }, { searchKeys: { mrn: [MRN] } })
    const clear = await store.enqueue('open', { body: { n: 1 } }, { searchKeys: { mrn: ['OPEN-1'] } })
    await store.enqueue('secret', { body: { mrn: 'other' } }, { searchKeys: { mrn: ['other'] } })
    expect((await store.list(mrn(MRN))).map((m) => [m.id, m.body])).toEqual([[kept.id, { mrn: MRN }]])
    expect((await store.list({ ...mrn(MRN), channel: 'secret' })).map((m) => m.id)).toEqual([kept.id])
    expect((await store.list(mrn('OPEN-1'))).map((m) => m.id)).toEqual([clear.id])
    await store.close()
    expect(await filesHolding(dir, MRN)).toEqual([])
    expect(await filesHolding(dir, 'OPEN-1')).not.toEqual([])

    // A reader that encrypts nothing itself (weir messages) finds both, newest first, under the same store key.
    const reader = encryptContent(openSqliteStore({ dataDir: dir, owner: false }), { key: async () => key, channels: new Set() })
    try {
      await reader.enqueue('open', { body: { n: 2 } }, { searchKeys: { mrn: [MRN] } })
      const both = await reader.list(mrn(MRN))
      expect(both.map((m) => m.channel)).toEqual(['open', 'secret'])
      expect(both[1]!.id).toBe(kept.id)
      expect((await reader.list({ ...mrn(MRN), limit: 1 })).map((m) => m.channel)).toEqual(['open'])
      expect((await reader.list({ ...mrn(MRN), order: 'asc' })).map((m) => m.channel)).toEqual(['secret', 'open'])
    } finally {
      await reader.close()
    }
    const wrongKey = encryptContent(openSqliteStore({ dataDir: dir, owner: false }), { key: async () => randomBytes(32), channels: new Set() })
    try {
      expect((await wrongKey.list(mrn(MRN))).map((m) => m.channel)).toEqual(['open'])
    } finally {
      await wrongKey.close()
    }
  })
})
