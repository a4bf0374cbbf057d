import { mkdir, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { channelDefinitions, definitionFingerprint } from '../../engine/definition-fingerprint.ts'
import { loadChannel } from '../../engine/load.ts'
import { openPostgresStore, type PostgresMessageStore } from '../../shared/store/index.ts'
import { migrate, migrations } from '../../shared/store/postgres/migrations.ts'
import { runCli } from '../_cli.ts'
import { spawnWeirRun, startWeirRun, tempDir, until } from '../runtime/_helpers.ts'
import { testChannel, useClusterResources } from './_cluster.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')
const NOWHERE = 'http://127.0.0.1:9/none'

const pg = useEmbeddedPostgres()
const { stores, children, dirs, database } = useClusterResources(() => pg.server, 'definitions')

/** An engine of the cluster, in this process, running channels with these fingerprints (and these outlines of them). */
async function engine(url: string, definitions: Record<string, string> | undefined, leaseMs = 60_000, outlines?: Record<string, Record<string, string>>): Promise<PostgresMessageStore> {
  const store = await openPostgresStore({ url, leaseMs, ...(definitions ? { definitions } : {}), ...(outlines ? { outlines } : {}) })
  stores.push(store)
  return store
}

async function dir(): Promise<string> {
  const d = await tempDir('weir-definitions-')
  dirs.push(d)
  return d.path
}

/** The test channel (HTTP source writing its port to `portFile`), with destinations `api` and, unless `fewer`, `audit`. */
function channel(portFile: string, o: { fewer?: boolean; destinationType?: string } = {}): Record<string, unknown> {
  const ch = testChannel(NOWHERE, {}, portFile) as { destinations: Array<Record<string, unknown>> }
  if (o.destinationType) ch.destinations[0]!.type = o.destinationType
  if (!o.fewer) ch.destinations.push({ ...ch.destinations[0]!, name: 'audit' })
  return ch
}

const refusalOf = (c: { channel: string; id: string; host: string; pid: number; at?: string }) =>
  `this engine's definition of channel "${c.channel}" differs from that of the live engine ${c.id} (host ${c.host}, pid ${c.pid})${c.at ? ` at ${c.at}` : ''}: ` +
  'every engine of a cluster must run the same definition of a channel (its file and the modules it loads), or each processes the messages it claims its own way. ' +
  'To change a channel, stop every engine, change the file everywhere and start them again; or deploy the new definition under a new channel name ' +
  '(an engine that died counts until its lease runs out)'

describe('the fingerprint of a channel definition', () => {
  const fingerprintOf = async (d: string, name: string, raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) => {
    const file = join(d, name)
    await writeFile(file, JSON.stringify(raw, null, 2))
    return definitionFingerprint(await loadChannel(file, { env }))
  }

  it('is the same however the file is laid out, whatever the source\'s settings (each engine\'s own listener) and the options that tune one engine; differs with one destination fewer or another option', async () => {
    const d = await dir()
    const a = await fingerprintOf(d, 'a.json', channel('p'))
    const reordered = Object.fromEntries(Object.entries(channel('p')).reverse())
    expect(await fingerprintOf(d, 'b.json', reordered)).toBe(a)
    expect(await fingerprintOf(d, 'b.json', channel('another-port-file'))).toBe(a)
    expect(a).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(await fingerprintOf(d, 'c.json', channel('p', { fewer: true }))).not.toBe(a)
    expect(await fingerprintOf(d, 'c.json', { ...channel('p'), options: { concurrency: 8, queueLimit: 50, maxStoreBytes: 1_048_576, shutdownTimeoutMs: 500 } })).toBe(a)
    expect(await fingerprintOf(d, 'c.json', { ...channel('p'), options: { onError: 'stop' } })).not.toBe(a)
    expect(await fingerprintOf(d, 'c.json', { ...channel('p'), options: { concurrency: 8, orderBy: 'n' } })).not.toBe(a)
  })

  it('counts the content of a component module loaded by path: the same file name with other content is another definition', async () => {
    const [x, y] = [await dir(), await dir()]
    const module = (comment: string) => `// ${comment}\nexport { default } from ${JSON.stringify(join(fixtures, 'test-post-destination.ts'))}\n`
    await writeFile(join(x, 'dest.ts'), module('v1'))
    await writeFile(join(y, 'dest.ts'), module('v1'))
    const raw = channel('p', { destinationType: './dest.ts' })
    const a = await fingerprintOf(x, 'ch.json', raw)
    expect(await fingerprintOf(y, 'ch.json', raw)).toBe(a)
    await writeFile(join(y, 'dest.ts'), module('v2: sends somewhere else'))
    expect(await fingerprintOf(y, 'ch.json', raw)).not.toBe(a)
  })

  it('takes secret references as written, never their values; a literal secret\'s value is not hashed', async () => {
    const d = await dir()
    const withSecret = (secret: unknown) => ({
      ...channel('p'),
      credentials: { crm: { tokenUrl: 'https://auth.example.com/token', clientId: 'weir', clientAuth: { method: 'client_secret_basic', secret } } },
    })
    const byEnv = { $env: 'CRM_SECRET' }
    const a = await fingerprintOf(d, 'a.json', withSecret(byEnv), { CRM_SECRET: 'first-secret-value' })
    expect(await fingerprintOf(d, 'a.json', withSecret(byEnv), { CRM_SECRET: 'second-secret-value' })).toBe(a)
    expect(await fingerprintOf(d, 'a.json', withSecret({ $env: 'OTHER_SECRET' }), { OTHER_SECRET: 'first-secret-value' })).not.toBe(a)
    const literal = await fingerprintOf(d, 'a.json', withSecret('literal-secret-one'))
    expect(await fingerprintOf(d, 'a.json', withSecret('literal-secret-two'))).toBe(literal)
  })

  it('counts the shared credentials file as written (another scope is another definition), never a literal secret\'s value in it', async () => {
    const [x, y] = [await dir(), await dir()]
    const creds = (scope: string, secret: unknown) => JSON.stringify({ crm: { tokenUrl: 'https://auth.example.com/token', clientId: 'weir', scope, clientAuth: { method: 'client_secret_basic', secret } } })
    const raw = { ...channel('p'), credentialsFile: 'creds.json' }
    await writeFile(join(x, 'creds.json'), creds('orders.write', 'literal-secret-one'))
    await writeFile(join(y, 'creds.json'), creds('orders.write', 'literal-secret-two'))
    const a = await fingerprintOf(x, 'ch.json', raw)
    expect(await fingerprintOf(y, 'ch.json', raw)).toBe(a)
    await writeFile(join(y, 'creds.json'), creds('orders.admin', 'literal-secret-one'))
    expect(await fingerprintOf(y, 'ch.json', raw)).not.toBe(a)
  })
})

describe('engines joining the cluster compare their definitions', () => {
  it('engines with the same definitions both join; one with another definition of a channel they run is refused, naming the channel and the engine; disjoint channels are fine', async () => {
    const { url, db } = await database()
    const a = await engine(url, { orders: 'sha256:one', adt: 'sha256:adt' })
    const b = await engine(url, { orders: 'sha256:one' })
    const err = await engine(url, { orders: 'sha256:two', billing: 'sha256:b' }).catch((e) => e)
    expect([err?.code, err?.message]).toEqual(['ERR_STORE', refusalOf({ channel: 'orders', id: a.engineId!, host: hostname(), pid: process.pid })])
    await engine(url, { billing: 'sha256:b', lab: 'sha256:lab' })
    const rows = await db.query<{ id: string; channels: Record<string, string> }>('SELECT id, channels FROM weir_engines ORDER BY started_at')
    expect(rows.map((r) => r.channels)).toEqual([{ orders: 'sha256:one', adt: 'sha256:adt' }, { orders: 'sha256:one' }, { billing: 'sha256:b', lab: 'sha256:lab' }])
    expect(rows.map((r) => r.id).slice(0, 2)).toEqual([a.engineId, b.engineId])
  })

  it('the refusal names where the definitions differ (changed, added here, missing here: a whole part once), at most 10 and how many more; as before when the live engine records no outline', async () => {
    const { url } = await database()
    const outline = { '/name': 'n1', '/destinations/0/config/url': 'u1', '/destinations/1/name': 'a1', '/destinations/1/type': 't1', '/options': 'e0', 'files/./dest.ts': 'f1' }
    const a = await engine(url, { orders: 'sha256:one' }, 60_000, { orders: outline })
    const live = { channel: 'orders', id: a.engineId!, host: hostname(), pid: process.pid }
    const mine = { '/name': 'n1', '/destinations/0/config/url': 'u2', '/options/orderBy': 'o1', 'files/./dest.ts': 'f2' }
    const err = await engine(url, { orders: 'sha256:two' }, 60_000, { orders: mine }).catch((e) => e)
    expect([err?.code, err?.message]).toEqual(['ERR_STORE', refusalOf({ ...live, at: '/destinations/0/config/url, /destinations/1 (missing here), /options/orderBy (added here), files/./dest.ts' })])
    expect(err.conflicts).toEqual([{ ...live, differences: [
      { pointer: '/destinations/0/config/url', change: 'changed' }, { pointer: '/destinations/1', change: 'removed' },
      { pointer: '/options/orderBy', change: 'added' }, { pointer: 'files/./dest.ts', change: 'changed' },
    ] }])
    const many = (digest: string) => ({ ...Object.fromEntries(Array.from({ length: 14 }, (_, i) => [`/destinations/${i}/config/url`, digest])), '/name': 'n1' })
    const b = await engine(url, { lab: 'sha256:lab' }, 60_000, { lab: many('x') })
    const tooMany = await engine(url, { lab: 'sha256:other' }, 60_000, { lab: many('y') }).catch((e) => e)
    expect(tooMany?.message).toBe(refusalOf({ channel: 'lab', id: b.engineId!, host: hostname(), pid: process.pid, at: `${Array.from({ length: 10 }, (_, i) => `/destinations/${i}/config/url`).join(', ')} and 4 more` }))
    // The live engine's outline is the same (a difference the outline cannot show), or an engine that records none: the message as before.
    expect((await engine(url, { orders: 'sha256:three' }, 60_000, { orders: outline }).catch((e) => e))?.message).toBe(refusalOf(live))
    const { url: other } = await database()
    const older = await engine(other, { orders: 'sha256:one' })
    expect((await engine(other, { orders: 'sha256:two' }, 60_000, { orders: mine }).catch((e) => e))?.message)
      .toBe(refusalOf({ channel: 'orders', id: older.engineId!, host: hostname(), pid: process.pid }))
  })

  it('an expired engine with another definition does not block; a live one of an older weir (no fingerprints) is unknown, not a mismatch', async () => {
    const { url, db } = await database()
    const old = await engine(url, { orders: 'sha256:old' })
    await old.abandon()
    await db.sql`UPDATE weir_engines SET lease_until = clock_timestamp() - interval '1 second' WHERE id = ${old.engineId!}`
    await db.sql`INSERT INTO weir_engines (id, host, pid, version, lease_until) VALUES ('older-weir', 'h', 1, '0.0.9', clock_timestamp() + interval '1 hour')`
    const fresh = await engine(url, { orders: 'sha256:new' })
    expect(fresh.engineId).toBeDefined()
  })

  it('two engines joining at once with different definitions: exactly one gets in, every time', async () => {
    const { url, db } = await database()
    await migrate(db, { allowMigration: true })
    for (let round = 0; round < 5; round++) {
      // Both joins are let go at the same moment: the engines table is locked until both wait (on it, or on each other).
      const joins = await db.transaction(async (tx) => {
        await tx.query('LOCK TABLE weir_engines IN ACCESS EXCLUSIVE MODE')
        const started = [engine(url, { orders: 'sha256:one' }), engine(url, { orders: 'sha256:two' })].map((p) => p.then(() => 'joined', (e: Error) => e.message))
        await until(async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`))[0]!.n === 2)
        return started
      })
      const outcomes = await Promise.all(joins)
      expect(outcomes.filter((o) => o === 'joined'), `round ${round}: ${outcomes.join(' / ')}`).toHaveLength(1)
      expect(outcomes.find((o) => o !== 'joined')).toMatch(/^this engine's definition of channel "orders" differs from that of the live engine /)
      expect((await db.query('SELECT id FROM weir_engines')).length).toBe(1)
      await Promise.all(stores.splice(0).map((s) => s.close()))
    }
  }, 60_000)

  it('migrates a database at schema version 8 (before fingerprints): the engines already there (no fingerprints) are kept, unknown', async () => {
    const { url, db } = await database()
    await db.transaction(async (tx) => {
      for (const m of migrations.slice(0, 8)) await tx.query(m)
      await tx.query('CREATE TABLE weir_schema (version integer NOT NULL); INSERT INTO weir_schema VALUES (8)')
      await tx.query(`INSERT INTO weir_engines (id, host, pid, version, lease_until) VALUES ('older-weir', 'h', 1, '0.0.9', clock_timestamp() + interval '1 hour')`)
    })
    const fresh = await engine(url, { orders: 'sha256:one' })
    expect(await db.query('SELECT version FROM weir_schema')).toEqual([{ version: migrations.length }])
    expect(await db.query('SELECT id, channels, outlines FROM weir_engines ORDER BY started_at')).toEqual([
      { id: 'older-weir', channels: null, outlines: null }, { id: fresh.engineId, channels: { orders: 'sha256:one' }, outlines: null },
    ])
    expect(await db.query(`SELECT indexname FROM pg_indexes WHERE indexname = 'weir_messages_errors'`)).toEqual([{ indexname: 'weir_messages_errors' }])
  })
  it('migrates a database at schema version 10 (fingerprints, no outlines): an engine there that records fingerprints alone is kept and compared as before', async () => {
    const { url, db } = await database()
    await db.transaction(async (tx) => {
      for (const m of migrations.slice(0, 10)) await tx.query(m)
      await tx.query('CREATE TABLE weir_schema (version integer NOT NULL); INSERT INTO weir_schema VALUES (10)')
      await tx.query(`INSERT INTO weir_engines (id, host, pid, version, lease_until, channels) VALUES ('previous-weir', 'h', 1, '0.1.0', clock_timestamp() + interval '1 hour', '{"orders": "sha256:one"}')`)
    })
    const err = await engine(url, { orders: 'sha256:two' }, 60_000, { orders: { '/name': 'n' } }).catch((e) => e)
    expect(err?.message).toBe(refusalOf({ channel: 'orders', id: 'previous-weir', host: 'h', pid: 1 }))
    const fresh = await engine(url, { orders: 'sha256:one' }, 60_000, { orders: { '/name': 'n' } })
    expect(await db.query('SELECT version FROM weir_schema')).toEqual([{ version: migrations.length }])
    expect(await db.query('SELECT id, channels, outlines FROM weir_engines ORDER BY started_at')).toEqual([
      { id: 'previous-weir', channels: { orders: 'sha256:one' }, outlines: null },
      { id: fresh.engineId, channels: { orders: 'sha256:one' }, outlines: { orders: { '/name': 'n' } } },
    ])
  })
})

describe('weir cluster status: whether the live engines agree on each channel', () => {
  it('agree, differ (exit 1) and unknown (an older weir), per channel', async () => {
    const { url, db } = await database()
    const a = await engine(url, { orders: 'sha256:1111111111111111aaaa', adt: 'sha256:2222222222222222bbbb' })
    const b = await engine(url, { orders: 'sha256:1111111111111111aaaa' })
    const agree = await runCli(['cluster', 'status', '--store', url])
    expect(agree.code).toBe(0)
    const lines = agree.out.split('\n')
    const table = lines.slice(lines.findIndex((l) => l.startsWith('CHANNEL')))
    expect(table.slice(0, 3).map((l) => l.split(/\s{2,}/))).toEqual([
      ['CHANNEL', 'ENGINES', 'DEFINITION'],
      ['adt', '1', 'one engine (sha256:2222222222222222)'],
      ['orders', '2', 'same on every engine (sha256:1111111111111111)'],
    ])
    // A disagreement can still arise (here written by hand): flagged, with which engine runs what.
    await db.sql`UPDATE weir_engines SET channels = '{"orders": "sha256:3333333333333333cccc"}' WHERE id = ${b.engineId!}`
    await db.sql`INSERT INTO weir_engines (id, host, pid, version, lease_until) VALUES ('older-weir', 'h', 1, '0.0.9', clock_timestamp() + interval '1 hour')`
    const differ = await runCli(['cluster', 'status', '--store', url])
    expect(differ.code).toBe(1)
    const rows = differ.out.split('\n').map((l) => l.split(/\s{2,}/))
    // Neither records an outline: where they differ cannot be told.
    expect(rows.find((r) => r[0] === 'orders')).toEqual(['orders', '2',
      `DIFFERENT: sha256:1111111111111111 on ${a.engineId}; sha256:3333333333333333 on ${b.engineId}, where cannot be told (an engine of an older weir records no outline)`])
    expect(differ.out).toContain('unknown: older-weir (host h, pid 1) records no channel definitions (an older weir): whether it runs the same ones cannot be told')
    const json = JSON.parse((await runCli(['cluster', 'status', '--store', url, '--json'])).out) as Array<{ id: string; channels: unknown; conflicts: unknown }>
    expect(json.map((e) => [e.id, e.channels])).toEqual([
      [a.engineId, { orders: 'sha256:1111111111111111aaaa', adt: 'sha256:2222222222222222bbbb' }], [b.engineId, { orders: 'sha256:3333333333333333cccc' }], ['older-weir', null],
    ])
    expect(json.map((e) => e.conflicts)).toEqual([[], [{ channel: 'orders', id: a.engineId, host: hostname(), pid: process.pid }], []])
  })

  it('names where each definition differs from the first, as JSON pointers into the channel file (at most 5, then how many more), in the table and in --json', async () => {
    const { url, db } = await database()
    const d = await dir()
    const elsewhere = channel('p') as { destinations: Array<{ config: Record<string, unknown> }> }
    elsewhere.destinations[0]!.config = { ...elsewhere.destinations[0]!.config, url: 'http://127.0.0.1:9/elsewhere' }
    await writeFile(join(d, 'first.json'), JSON.stringify(channel('p')))
    await writeFile(join(d, 'elsewhere.json'), JSON.stringify(elsewhere))
    const first = await channelDefinitions([await loadChannel(join(d, 'first.json'))])
    const other = await channelDefinitions([await loadChannel(join(d, 'elsewhere.json'))])
    const many = (digest: string) => ({ ...Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`/destinations/${i}/config/url`, digest])), '/name': 'n1' })
    const [fingerprints, outlines] = [{ ...first.fingerprints, lab: 'sha256:lab1', adt: 'sha256:adt' }, { ...first.outlines, lab: many('x'), adt: { '/name': 'a1' } }]
    const a = await engine(url, fingerprints, 60_000, outlines)
    const b = await engine(url, fingerprints, 60_000, outlines)
    expect((await a.cluster()).map((e) => e.outlines)).toEqual([undefined, undefined])
    // A disagreement as a race or an older weir could leave it (a join with another definition is refused).
    await db.sql`UPDATE weir_engines SET channels = ${JSON.stringify({ ...fingerprints, ...other.fingerprints, lab: 'sha256:lab2' })}::jsonb,
      outlines = ${JSON.stringify({ ...outlines, ...other.outlines, lab: { ...many('y'), '/options/orderBy': 'o1' } })}::jsonb WHERE id = ${b.engineId!}`
    // Read for the comparison: the outlines of the channels in conflict only (not adt's, run the same everywhere).
    expect((await a.cluster()).map((e) => Object.keys(e.outlines ?? {}).sort())).toEqual([['clustered', 'lab'], ['clustered', 'lab']])
    const status = await runCli(['cluster', 'status', '--store', url])
    expect(status.code).toBe(1)
    const rows = status.out.split('\n').map((l) => l.split(/\s{2,}/))
    const short = (fingerprint: string) => fingerprint.slice(0, 'sha256:'.length + 16)
    expect(rows.find((r) => r[0] === 'clustered')).toEqual(['clustered', '2',
      `DIFFERENT: ${short(first.fingerprints.clustered!)} on ${a.engineId}; ${short(other.fingerprints.clustered!)} on ${b.engineId}, differing at /destinations/0/config/url`])
    expect(rows.find((r) => r[0] === 'lab')).toEqual(['lab', '2',
      `DIFFERENT: sha256:lab1 on ${a.engineId}; sha256:lab2 on ${b.engineId}, differing at ${Array.from({ length: 5 }, (_, i) => `/destinations/${i}/config/url`).join(', ')} and 4 more`])
    const json = JSON.parse((await runCli(['cluster', 'status', '--store', url, '--json'])).out) as Array<Record<string, unknown>>
    const firstEngine = { id: a.engineId, host: hostname(), pid: process.pid }
    expect(json.map((e) => [e.id, e.conflicts])).toEqual([[a.engineId, []], [b.engineId, [
      { channel: 'clustered', ...firstEngine, differences: [{ pointer: '/destinations/0/config/url', change: 'changed' }] },
      { channel: 'lab', ...firstEngine, differences: [
        ...Array.from({ length: 8 }, (_, i) => ({ pointer: `/destinations/${i}/config/url`, change: 'changed' })), { pointer: '/options', change: 'added' },
      ] },
    ]]])
    // The outlines are what the comparison reads, not what the engines show.
    expect(json.map((e) => 'outlines' in e)).toEqual([false, false])
  })
})

describe('weir run in a cluster', () => {
  it('two engines with the same definition both run; a third with one destination fewer exits 1 with one line naming the channel, the engine and what to do', async () => {
    const { url, db } = await database()
    const d = await dir()
    // Each engine its own listener (port file): the source is each engine's own.
    for (const e of ['a', 'b']) await writeFile(join(d, `${e}.json`), JSON.stringify(channel(`${e}.port`)))
    await writeFile(join(d, 'c.json'), JSON.stringify(channel('c.port', { fewer: true })))
    const a = await startWeirRun(join(d, 'a.json'), join(d, 'a'), '../a.port', children, ['--store', url, '--admin', 'off'])
    const b = await startWeirRun(join(d, 'b.json'), join(d, 'b'), '../b.port', children, ['--store', url, '--admin', 'off'])
    const rows = await db.query<{ id: string; pid: number; channels: Record<string, string> }>('SELECT id, pid, channels FROM weir_engines ORDER BY started_at')
    expect(rows.map((r) => r.pid)).toEqual([a.child.pid, b.child.pid])
    expect(rows[0]!.channels.clustered).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(rows[1]!.channels).toEqual(rows[0]!.channels)
    const c = spawnWeirRun(join(d, 'c.json'), join(d, 'c', 'data'), children, ['--store', url, '--admin', 'off'])
    const exit = await c.exited
    const lines = c.output().split('\n').filter((l) => l.trim() !== '')
    expect({ code: exit.code, lines }).toEqual({ code: 1, lines: [`weir run: ${refusalOf({ channel: 'clustered', id: rows[0]!.id, host: hostname(), pid: a.child.pid!, at: '/destinations/1 (missing here)' })}`] })
    expect((await db.query('SELECT pid FROM weir_engines ORDER BY started_at')).map((r) => r.pid)).toEqual([a.child.pid, b.child.pid])
    expect([a.child.exitCode, b.child.exitCode]).toEqual([null, null])
  }, 90_000)

  it('an engine whose destination sends elsewhere is refused, naming the pointer that differs', async () => {
    const { url, db } = await database()
    const d = await dir()
    const elsewhere = channel('b.port', { fewer: true }) as { destinations: Array<{ config: Record<string, unknown> }> }
    elsewhere.destinations[0]!.config = { ...elsewhere.destinations[0]!.config, url: 'http://127.0.0.1:9/elsewhere' }
    await writeFile(join(d, 'a.json'), JSON.stringify(channel('a.port', { fewer: true })))
    await writeFile(join(d, 'b.json'), JSON.stringify(elsewhere))
    const a = await startWeirRun(join(d, 'a.json'), join(d, 'a'), '../a.port', children, ['--store', url, '--admin', 'off'])
    const [row] = await db.query<{ id: string; outlines: Record<string, Record<string, string>> }>('SELECT id, outlines FROM weir_engines')
    expect(row!.outlines.clustered!['/destinations/0/config/url']).toMatch(/^[0-9a-f]{12}$/)
    const b = spawnWeirRun(join(d, 'b.json'), join(d, 'b', 'data'), children, ['--store', url, '--admin', 'off'])
    const exit = await b.exited
    const lines = b.output().split('\n').filter((l) => l.trim() !== '')
    expect({ code: exit.code, lines }).toEqual({ code: 1, lines: [`weir run: ${refusalOf({ channel: 'clustered', id: row!.id, host: hostname(), pid: a.child.pid!, at: '/destinations/0/config/url' })}`] })
  }, 90_000)

  it('an engine whose custom destination module (same name, same channel file) was changed is refused', async () => {
    const { url } = await database()
    const [x, y] = [await dir(), await dir()]
    const module = (comment: string) => `// ${comment}\nexport { default } from ${JSON.stringify(join(fixtures, 'test-post-destination.ts'))}\n`
    await writeFile(join(x, 'dest.ts'), module('v1'))
    await writeFile(join(y, 'dest.ts'), module('v2'))
    for (const d of [x, y]) {
      await mkdir(join(d, 'run'))
      await writeFile(join(d, 'ch.json'), JSON.stringify(channel('port', { destinationType: './dest.ts' })))
    }
    await startWeirRun(join(x, 'ch.json'), join(x, 'run'), '../port', children, ['--store', url, '--admin', 'off'])
    const other = spawnWeirRun(join(y, 'ch.json'), join(y, 'run', 'data'), children, ['--store', url, '--admin', 'off'])
    expect((await other.exited).code).toBe(1)
    expect(other.output()).toContain('weir run: this engine\'s definition of channel "clustered" differs from that of the live engine')
    expect(other.output()).toContain(` at files/./dest.ts: every engine`)
  }, 90_000)
})
