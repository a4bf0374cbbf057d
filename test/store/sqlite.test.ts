import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdir, mkdtemp, rm, writeFile, readFile, utimes } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { spawn } from 'node:child_process'
import Database from 'better-sqlite3'
import { openSqliteStore, type SqliteMessageStore } from '../../shared/store/index.ts'
import { migrations } from '../../shared/store/sqlite/migrations.ts'
import { storeConformance } from './conformance.ts'

const root = resolve(import.meta.dirname, '../..')
let dir: string
let store: SqliteMessageStore
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-store-'))
  store = openSqliteStore({ dataDir: dir })
})
afterEach(async () => {
  await store.close()
  await rm(dir, { recursive: true, force: true })
})

describe('openSqliteStore', () => {
  it('uses WAL, FULL sync by default and the latest schema version', async () => {
    expect(await store.diagnostics()).toMatchObject({ synchronous: 2, journalMode: 'wal' })
    await store.close()
    const db = new Database(join(dir, 'weir.db'), { readonly: true })
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    expect(db.pragma('user_version', { simple: true })).toBe(migrations.length)
    db.close()
    store = openSqliteStore({ dataDir: dir, synchronous: 'NORMAL' })
    expect(await store.diagnostics()).toMatchObject({ synchronous: 1, journalMode: 'wal' })
  })

  it('groups enqueues issued in the same tick into one transaction, resolving all after commit', async () => {
    const before = (await store.diagnostics()).commits
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.enqueue('c', { body: i })))
    expect((await store.diagnostics()).commits - before).toBe(1)
    expect(new Set(results.map((r) => r.id)).size).toBe(50)
    const claimed = await store.claim('c', 100)
    expect(claimed.map((m) => m.body)).toEqual(Array.from({ length: 50 }, (_, i) => i))
  })

  it('close commits what was asked for while a batch was still with the writer thread', async () => {
    const first = store.enqueue('c', { body: 'first' })
    await new Promise((r) => setImmediate(r)) // the first batch is now with the thread
    const second = store.enqueue('c', { body: 'second' }) // waits in the outbox for the first batch's answer
    await store.close()
    await expect(first).resolves.toMatchObject({ duplicate: false })
    await expect(second).resolves.toMatchObject({ duplicate: false })
    store = openSqliteStore({ dataDir: dir })
    expect((await store.claim('c', 10)).map((m) => m.body)).toEqual(['first', 'second'])
  })

  it('migrates a schema-version-1 database with messages in it, keeping every message, its history and the queue order', async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
    await mkdir(dir)
    const v1 = new Database(join(dir, 'weir.db'))
    v1.pragma('journal_mode = WAL')
    migrations[0]!(v1)
    v1.pragma('user_version = 1')
    const ins = v1.prepare(`INSERT INTO messages (seq, id, channel, status, body, content_type, attributes, dedupe_key, received_at, updated_at, error)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    const rows = [
      [1, '01AAAAAAAAAAAAAAAAAAAAAAA1', 'c', 'delivered', '{"n":1}', 'application/json', '{"from":"x"}', 'k1', 100, 150, null],
      [2, '01AAAAAAAAAAAAAAAAAAAAAAA2', 'c', 'error', '"two"', 'text/plain', '{}', null, 200, 250, 'api: 400'],
      [3, '01AAAAAAAAAAAAAAAAAAAAAAA3', 'c', 'in-flight', '3', 'application/json', '{}', null, 300, 300, null],
      [5, '01AAAAAAAAAAAAAAAAAAAAAAA5', 'c', 'queued', '{"n":5}', 'application/json', '{"a":1}', 'k5', 500, 500, null],
      [6, '01AAAAAAAAAAAAAAAAAAAAAAA6', 'd', 'filtered', 'null', 'application/json', '{}', null, 600, 650, null],
    ] as const
    for (const r of rows) ins.run(...r)
    v1.prepare(`INSERT INTO deliveries (message_id, destination, part, status, attempts, first_attempt_at, last_attempt_at, last_error, response_status)
      VALUES (?, 'api', 0, ?, 1, ?, ?, ?, ?)`).run(rows[1][1], 'error', 210, 210, 'HTTP 400', 400)
    v1.prepare(`INSERT INTO attempts (message_id, destination, part, attempt, started_at, ended_at, outcome, response_status, error)
      VALUES (?, 'api', 0, 1, 210, 211, 'permanent', 400, 'HTTP 400')`).run(rows[1][1])
    v1.close()

    // A reader (weir messages) beside a possibly older running engine must not migrate the tables under it.
    expect(() => openSqliteStore({ dataDir: dir, owner: false })).toThrow('the message store has schema version 1; start the engine (weir run) once to upgrade it to')
    const untouched = new Database(join(dir, 'weir.db'), { readonly: true })
    expect(untouched.pragma('user_version', { simple: true })).toBe(1)
    untouched.close()

    store = openSqliteStore({ dataDir: dir, now: () => 1000 })
    const raw = new Database(join(dir, 'weir.db'), { readonly: true })
    expect(raw.pragma('user_version', { simple: true })).toBe(migrations.length)
    raw.close()
    // Every message keeps its content and status (the in-flight one is returned to the queue by the owner's open).
    const listed = await store.list({ order: 'asc' })
    expect(listed.map((m) => [m.seq, m.id, m.channel, m.status, m.body, m.contentType, m.attributes, m.dedupeKey, m.receivedAt, m.error])).toEqual([
      [1, rows[0][1], 'c', 'delivered', { n: 1 }, 'application/json', { from: 'x' }, 'k1', 100, undefined],
      [2, rows[1][1], 'c', 'error', 'two', 'text/plain', {}, undefined, 200, 'api: 400'],
      [3, rows[2][1], 'c', 'queued', 3, 'application/json', {}, undefined, 300, undefined],
      [5, rows[3][1], 'c', 'queued', { n: 5 }, 'application/json', { a: 1 }, 'k5', 500, undefined],
      [6, rows[4][1], 'd', 'filtered', null, 'application/json', {}, undefined, 600, undefined],
    ])
    expect(listed.map((m) => m.updatedAt)).toEqual([150, 250, 1000, 500, 650])
    const detail = (await store.get(rows[1][1]))!
    expect(detail.message).toMatchObject({ status: 'error', error: 'api: 400', body: 'two' })
    expect(detail.deliveries).toEqual([{ destination: 'api', part: 0, status: 'error', attempts: 1, firstAttemptAt: 210, lastAttemptAt: 210, lastError: 'HTTP 400', responseStatus: 400 }])
    expect(detail.attempts).toEqual([{ destination: 'api', part: 0, attempt: 1, startedAt: 210, endedAt: 211, outcome: 'permanent', responseStatus: 400, error: 'HTTP 400' }])
    expect(await store.stats('c')).toMatchObject({ delivered: 1, error: 1, queued: 2, 'in-flight': 0 })
    expect(await store.stats()).toMatchObject({ delivered: 1, error: 1, queued: 2, filtered: 1 })
    expect(store.pending('c')).toBe(2)
    // Dedupe keys of migrated messages still count; new messages queue after the migrated ones.
    expect(await store.enqueue('c', { body: 'again', dedupeKey: 'k1' })).toEqual({ id: rows[0][1], duplicate: true })
    const fresh = await store.enqueue('c', { body: 'new' })
    const claimed = await store.claim('c', 10)
    expect(claimed.map((m) => m.id)).toEqual([rows[2][1], rows[3][1], fresh.id])
    expect(claimed[1]).toMatchObject({ body: { n: 5 }, attributes: { a: 1 }, dedupeKey: 'k5', status: 'in-flight', updatedAt: 1000 })
    expect(await store.resubmit({ status: 'error' })).toEqual([rows[1][1]])
    expect(await store.purge({ before: 2000 })).toBe(2)
    expect((await store.list({ order: 'asc' })).map((m) => [m.id, m.status])).toEqual([
      [rows[1][1], 'queued'], [rows[2][1], 'in-flight'], [rows[3][1], 'in-flight'], [fresh.id, 'in-flight'],
    ])
  })

  it('refuses a data directory locked by another live process, takes over a dead one', async () => {
    await store.close()
    await writeFile(join(dir, 'weir.lock'), String(process.ppid))
    const err = (() => { try { openSqliteStore({ dataDir: dir }) } catch (e) { return e } })() as { code: string; message: string }
    expect(err.code).toBe('ERR_STORE')
    expect(err.message).toBe(`data directory ${dir} is in use by process ${process.ppid}; stop it or use another --data-dir`)
    await writeFile(join(dir, 'weir.lock'), '999999999')
    store = openSqliteStore({ dataDir: dir })
    expect(await readFile(join(dir, 'weir.lock'), 'utf8')).toBe(String(process.pid))
    await store.close()
    expect(existsSync(join(dir, 'weir.lock'))).toBe(false)
    store = openSqliteStore({ dataDir: dir })
  })

  it('an unclean stop with no message recorded in flight says so, and that one claimed just before may come again', async () => {
    await store.close()
    await writeFile(join(dir, 'weir.lock'), '999999999') // a dead owner: an unclean stop
    const said: Array<[Record<string, unknown>, string]> = []
    const log = { warn: (o: Record<string, unknown>, msg: string) => void said.push([o, msg]) } as unknown as NonNullable<NonNullable<Parameters<typeof openSqliteStore>[0]>['log']>
    store = openSqliteStore({ dataDir: dir, log })
    expect(said).toEqual([[{ dataDir: dir, released: 0 }, 'unclean stop detected: no message was recorded in flight (one claimed within 100 ms of the stop was still recorded as queued and is delivered again)']])
  })

  it('two opens of one data directory: the second is refused while the first holds the lock', async () => {
    const err = (() => { try { openSqliteStore({ dataDir: dir }) } catch (e) { return e } })() as { code: string; message: string }
    expect(err.code).toBe('ERR_STORE')
    expect(err.message).toBe(`data directory ${dir} is in use by process ${process.pid}; stop it or use another --data-dir`)
    expect(await readFile(join(dir, 'weir.lock'), 'utf8')).toBe(String(process.pid))
    // Readers beside the owner are fine; once the owner closes, the directory can be taken.
    const reader = openSqliteStore({ dataDir: dir, owner: false })
    await reader.close()
    await store.close()
    store = openSqliteStore({ dataDir: dir })
  })

  it('a lock without a pid is another process mid-create while fresh, stale once old', async () => {
    await store.close()
    const lock = join(dir, 'weir.lock')
    await writeFile(lock, '')
    const err = (() => { try { openSqliteStore({ dataDir: dir }) } catch (e) { return e } })() as { code: string; message: string }
    expect([err.code, err.message]).toEqual(['ERR_STORE', `data directory ${dir} is in use by another process; stop it or use another --data-dir`])
    await utimes(lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
    store = openSqliteStore({ dataDir: dir })
    expect(await readFile(lock, 'utf8')).toBe(String(process.pid))
  })

  it('three processes opening one data directory at once: exactly one owns it', async () => {
    const script = `import { openSqliteStore } from ${JSON.stringify(join(root, 'shared/store/index.ts'))}
let s
try { s = openSqliteStore({ dataDir: process.argv[1] }); console.log('owner') } catch (e) { console.log('refused ' + e.code) }
process.stdin.resume()
process.stdin.on('end', async () => { await s?.close(); process.exit(0) })`
    await store.close()
    const children = Array.from({ length: 3 }, () => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] }))
    const first = children.map((c) => new Promise<string>((ok) => c.stdout!.once('data', (d: Buffer) => ok(d.toString().trim()))))
    const answers = await Promise.all(first)
    const exited = children.map((c) => new Promise((ok) => c.once('exit', ok)))
    for (const c of children) c.stdin!.end()
    await Promise.all(exited)
    expect(answers.filter((a) => a === 'owner')).toHaveLength(1)
    expect(answers.filter((a) => a === 'refused ERR_STORE')).toHaveLength(2)
    expect(existsSync(join(dir, 'weir.lock'))).toBe(false)
    store = openSqliteStore({ dataDir: dir })
  })

  it('fails with ERR_STORE when asked not to create a missing store', async () => {
    const err = (() => { try { openSqliteStore({ dataDir: join(dir, 'nope'), create: false }) } catch (e) { return e } })() as { code: string; message: string; missing?: true }
    expect(err.code).toBe('ERR_STORE')
    expect(err.message).toBe(`no message store in ${join(dir, 'nope')}`)
    // Marked as such, so that a command can say how to name the store meant without matching the text.
    expect(err.missing).toBe(true)
  })

  it('purges in batches of 1000, each its own commit', async () => {
    await Promise.all(Array.from({ length: 2500 }, (_, i) => store.enqueue('c', { body: i })))
    const claimed = await store.claim('c', 3000)
    await Promise.all(claimed.map((m) => store.complete(m.id, 'delivered')))
    const before = (await store.diagnostics()).commits
    expect(await store.purge({ before: Date.now() + 1 })).toBe(2500)
    expect((await store.diagnostics()).commits - before).toBe(3)
    expect(await store.stats()).toMatchObject({ delivered: 0, queued: 0 })
  })

  it('warns how many claims an unclean stop left, when the owner reopens', async () => {
    await store.enqueue('c', { body: 1 })
    await store.enqueue('c', { body: 2 })
    await store.claim('c', 2)
    // A crashed process leaves its (dead) pid in the lock; close() does not release claims.
    await store.close()
    await writeFile(join(dir, 'weir.lock'), '999999999')
    const warned: unknown[] = []
    store = openSqliteStore({ dataDir: dir, log: { warn: (o: unknown) => void warned.push(o) } as never })
    expect(warned).toEqual([{ dataDir: dir, released: 2 }])
  })

  it('warns of an unclean stop whose claims were not marked in flight yet: a dead owner\'s lock is enough', async () => {
    await store.enqueue('c', { body: 1 })
    await store.close()
    await writeFile(join(dir, 'weir.lock'), '999999999')
    const warned: unknown[] = []
    store = openSqliteStore({ dataDir: dir, log: { warn: (o: unknown) => void warned.push(o) } as never })
    expect(warned).toEqual([{ dataDir: dir, released: 0 }])
    expect((await store.claim('c', 5)).map((m) => m.body)).toEqual([1])
    await store.close()
    const again: unknown[] = []
    store = openSqliteStore({ dataDir: dir, log: { warn: (o: unknown) => void again.push(o) } as never })
    expect(again).toEqual([{ dataDir: dir, released: 1 }])
  })

  it('purging leaves no delivery or attempt rows behind', async () => {
    const { id } = await store.enqueue('c', { body: 1 })
    await store.claim('c', 1)
    await store.complete(id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: 1, endedAt: 2, outcome: 'delivered' } }])
    expect(await store.purge({ before: Date.now() + 1 })).toBe(1)
    const raw = new Database(join(dir, 'weir.db'), { readonly: true })
    expect([raw.prepare('SELECT count(*) FROM deliveries').pluck().get(), raw.prepare('SELECT count(*) FROM attempts').pluck().get()]).toEqual([0, 0])
    raw.close()
  })

  it('keeps a delivered attempt in its delivery row, without a row of its own in attempts', async () => {
    const { id } = await store.enqueue('c', { body: 1 })
    await store.claim('c', 1)
    await store.complete(id, 'delivered', [{ destination: 'api', part: 0, status: 'delivered', attempt: { startedAt: 1, endedAt: 2, outcome: 'delivered', responseStatus: 200 } }])
    const raw = new Database(join(dir, 'weir.db'), { readonly: true })
    try {
      expect(raw.prepare('SELECT count(*) FROM attempts').pluck().get()).toBe(0)
      expect(raw.prepare('SELECT attempts, last_attempt_at, last_ended_at FROM deliveries').get()).toEqual({ attempts: 1, last_attempt_at: 1, last_ended_at: 2 })
    } finally {
      raw.close()
    }
    expect((await store.get(id))!.attempts).toEqual([{ destination: 'api', part: 0, attempt: 1, startedAt: 1, endedAt: 2, outcome: 'delivered', responseStatus: 200 }])
  })

  it('marks a claim from memory in flight only if it is still under way after 100 ms: a quick delivery writes no mark', async () => {
    const quick = await store.enqueue('c', { body: 1 })
    const slow = await store.enqueue('c', { body: 2 })
    const other = new Database(join(dir, 'weir.db'))
    try {
      other.exec(`CREATE TABLE marks (id TEXT); CREATE TRIGGER record_mark AFTER UPDATE OF status ON message_status WHEN NEW.status = 'in-flight'
        BEGIN INSERT INTO marks SELECT id FROM message_content WHERE seq = NEW.seq; END`)
      expect((await store.claim('c', 10)).map((m) => m.id)).toEqual([quick.id, slow.id])
      await store.complete(quick.id, 'delivered')
      const marks = () => other.prepare('SELECT id FROM marks').pluck().all()
      expect(marks()).toEqual([])
      await new Promise((r) => setTimeout(r, 300))
      expect(marks()).toEqual([slow.id])
      expect(other.prepare('SELECT status FROM message_status ORDER BY seq').pluck().all()).toEqual(['delivered', 'in-flight'])
    } finally {
      other.exec('DROP TRIGGER record_mark')
      other.close()
    }
  })

  it('a message claimed from memory whose in-flight mark was lost is not claimed again from the database', async () => {
    const { id } = await store.enqueue('c', { body: 1 })
    // The mark goes without waiting; here it fails, as when its batch meets SQLITE_BUSY past the busy
    // timeout or a full disk, and the row stays 'queued' while the message is under way.
    const other = new Database(join(dir, 'weir.db'))
    try {
      other.exec(`CREATE TRIGGER lose_mark BEFORE UPDATE OF status ON message_status WHEN NEW.status = 'in-flight' BEGIN SELECT RAISE(ABORT, 'disk full'); END`)
      expect((await store.claim('c', 10)).map((m) => m.id)).toEqual([id])
      expect((await store.list({ channel: 'c' })).map((m) => m.status)).toEqual(['queued'])
      other.exec('DROP TRIGGER lose_mark')
      // The dispatcher's idle poll: claims read the database from now on.
      await store.refreshPending('c')
      expect(await store.claim('c', 10)).toEqual([])
      expect((await store.list({ channel: 'c' })).map((m) => m.status)).toEqual(['in-flight'])
      await store.complete(id, 'delivered')
      expect(await store.stats('c')).toMatchObject({ delivered: 1, queued: 0, 'in-flight': 0 })
    } finally {
      other.close()
    }
  })

  it('runs its queries on a thread of its own: a long write does not hold up the event loop', async () => {
    // 20,000 enqueues in one turn: one transaction of some tens of milliseconds, all on the writer thread.
    const writes = Promise.all(Array.from({ length: 20_000 }, (_, i) => store.enqueue('c', { body: { i, pad: 'x'.repeat(200) } })))
    let turns = 0
    const ticker = setInterval(() => turns++, 1)
    await writes
    clearInterval(ticker)
    // Timers kept firing while the thread committed (a store on the main thread allows none during its transaction).
    expect(turns).toBeGreaterThan(1)
    expect(store.pending('c')).toBe(20_000)
  })
})

let sqliteDir = ''
storeConformance({
  name: 'sqlite',
  fresh: async () => { sqliteDir = await mkdtemp(join(tmpdir(), 'weir-conf-')) },
  open: (o) => openSqliteStore({ dataDir: sqliteDir, ...o }),
  crash: async (s) => {
    await s.close() // closing does not release claims: the next owner's open finds them as a crash leaves them
    await writeFile(join(sqliteDir, 'weir.lock'), '999999999')
  },
  cleanup: () => rm(sqliteDir, { recursive: true, force: true }),
})
