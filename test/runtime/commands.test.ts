import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { writeFile, readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { CommandIO } from '../../engine/cli-io.ts'
import { run as runCommand } from '../../engine/commands/run.ts'
import { run as messagesCommand, parseSince, redact } from '../../engine/commands/messages.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { startApi, tempDir, until } from './_helpers.ts'
import { openSqliteStore } from '../../shared/store/index.ts'

const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')

function io(cwd: string, isTTY = false) {
  const out: string[] = []
  const err: string[] = []
  const value: CommandIO = { out: (t) => void out.push(t), err: (t) => void err.push(t), env: {}, cwd, isTTY }
  return { io: value, out, err }
}

let dir: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof startApi>>
beforeEach(async () => {
  dir = await tempDir('weir-cmd-')
  api = await startApi()
})
afterEach(async () => {
  await api.close()
  await dir.remove()
})

async function channelFile(name: string, extra: Record<string, unknown> = {}) {
  const file = join(dir.path, `${name}.json`)
  await writeFile(file, JSON.stringify({
    name,
    source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: `${name}.port` } },
    destinations: [{ name: 'api', type: join(fixtures, 'test-post-destination.ts'), config: { url: api.url }, retry: { maxAttempts: 3, initialDelayMs: 10 } }],
    ...extra,
  }))
  return file
}

async function post(port: number, body: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, body: (await res.json()) as { id: string } }
}

/** Starts `weir run` in process; resolves once the channels are up. */
async function startRun(files: string[], isTTY = false) {
  const ac = new AbortController()
  const t = io(dir.path, isTTY)
  let handles: ChannelHandle[] = []
  let started!: () => void
  const up = new Promise<void>((ok) => (started = ok))
  const done = runCommand([...files, '--data-dir', 'data'], t.io, { signal: ac.signal, onStarted: (h) => { handles = h; started() }, refreshMs: 20 })
  await Promise.race([up, done.then((code) => { throw new Error(`run exited ${code}: ${t.err.join('\n')}`) })])
  return { ...t, stop: () => { ac.abort(); return done }, handles: () => handles }
}

describe('weir run', () => {
  it('runs several channels in one process, logs JSON when not on a TTY, stops cleanly', async () => {
    const a = await channelFile('alpha')
    const b = await channelFile('beta')
    const r = await startRun([a, b])
    const pa = Number(await readFile(join(dir.path, 'alpha.port'), 'utf8'))
    const pb = Number(await readFile(join(dir.path, 'beta.port'), 'utf8'))
    const ra = await post(pa, { to: 'alpha' })
    const rb = await post(pb, { to: 'beta' })
    expect([ra.status, rb.status]).toEqual([202, 202])
    await until(() => api.received.length === 2)
    expect(api.keys().sort()).toEqual([`${ra.body.id}:api`, `${rb.body.id}:api`].sort())
    expect(existsSync(join(dir.path, 'data', 'weir.lock'))).toBe(true)
    expect(await r.stop()).toBe(0)
    expect(existsSync(join(dir.path, 'data', 'weir.lock'))).toBe(false)
    const logs = r.out.map((l) => JSON.parse(l) as { msg: string; channels?: string[] })
    expect(logs.find((l) => l.msg === 'weir running')!.channels).toEqual(['alpha', 'beta'])
    expect(logs.at(-1)!.msg).toBe('weir stopped; message store closed')
  })

  it('draws a live line per channel on a TTY', async () => {
    const a = await channelFile('alpha')
    const r = await startRun([a], true)
    const port = Number(await readFile(join(dir.path, 'alpha.port'), 'utf8'))
    await post(port, { n: 1 })
    await until(() => r.handles()[0]!.counters().delivered === 1)
    await new Promise((ok) => setTimeout(ok, 60))
    expect(await r.stop()).toBe(0)
    const last = r.out.at(-1)!
    expect(last).toMatch(/^\x1b\[1A\x1b\[2Kalpha  received +1  queued +0  delivered +1  filtered +0  errors +0  retrying +0  tokens +0  stopped$/)
    expect(r.out[0]).toMatch(/^\x1b\[2Kalpha  received +0/)
  })

  it('the HTTP source answers 503 with Retry-After while the queue is full', async () => {
    api.behaviour = () => ({ status: 200, hang: true })
    const file = await channelFile('bp', { options: { queueLimit: 2 } })
    const r = await startRun([file])
    const port = Number(await readFile(join(dir.path, 'bp.port'), 'utf8'))
    expect((await post(port, { n: 1 })).status).toBe(202)
    expect((await post(port, { n: 2 })).status).toBe(202)
    const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":3}' })
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('1')
    expect(await res.json()).toEqual({ error: 'ERR_BACKPRESSURE', message: 'channel bp: queue is full (2 messages pending)' })
    api.behaviour = () => undefined
    api.releaseHanging()
    await until(() => r.handles()[0]!.counters().queued === 0)
    expect((await post(port, { n: 3 })).status).toBe(202)
    expect(await r.stop()).toBe(0)
  })

  it('reports every channel file problem and exits 1 without starting', async () => {
    const bad = join(dir.path, 'bad.json')
    await writeFile(bad, '{"name": "x"')
    const t = io(dir.path)
    expect(await runCommand([bad, '--data-dir', 'data'], t.io)).toBe(1)
    expect(t.err.join('\n')).toMatch(/bad\.json#: invalid JSON at line 1/)
    expect(existsSync(join(dir.path, 'data'))).toBe(false)
  })
})

describe('weir messages', () => {
  it('a permanent 400 is listed and shown with its excerpt; resubmit redelivers it to the running engine once the API is fixed', async () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3ZWlyIn0.c2lnbmF0dXJlLWJ5dGVz'
    api.behaviour = ({ body }) => ((body as { n: number }).n === 2 ? { status: 400, body: `{"error":"mrn is required","access_token":"opaque-at-77","echo":"${jwt}"}` } : undefined)
    const file = await channelFile('adt')
    const r = await startRun([file])
    const port = Number(await readFile(join(dir.path, 'adt.port'), 'utf8'))
    await post(port, { n: 1 })
    const bad = await post(port, { n: 2, password: 'hunter22' })
    await until(() => r.handles()[0]!.counters().errors === 1 && r.handles()[0]!.counters().delivered === 1)

    const l = io(dir.path)
    expect(await messagesCommand(['list', '--status', 'error', '--data-dir', 'data'], l.io)).toBe(0)
    const lines = l.out.join('\n').split('\n')
    expect(lines).toHaveLength(2)
    // The status first (the full reason, with the URL, in show and --json).
    expect(lines[1]).toMatch(new RegExp(`^${bad.body.id}  adt +error +\\S+Z  api: http 400$`))

    const s = io(dir.path)
    expect(await messagesCommand(['show', bad.body.id.slice(0, 22), '--data-dir', 'data'], s.io)).toBe(0)
    const shown = s.out.join('\n')
    expect(shown).toContain(`message   ${bad.body.id}`)
    expect(shown).toContain('"password": "[REDACTED]"')
    expect(shown).not.toContain('hunter22')
    expect(shown).toMatch(/api +0 +error +1 +\S+ +400 +ERR_HTTP_STATUS/)
    expect(shown).toContain('response: {"error":"mrn is required","access_token":"[REDACTED]","echo":"[REDACTED]"}')
    expect(shown).not.toContain('opaque-at-77')
    expect(shown).not.toContain(jwt)

    api.behaviour = () => undefined
    const rs = io(dir.path)
    expect(await messagesCommand(['resubmit', '--status', 'error', '--data-dir', 'data'], rs.io)).toBe(0)
    expect(rs.out).toEqual(['every channel: status error: this resubmits 1 message to 1 destination (api 1).', expect.stringMatching(/^nothing resubmitted yet: run again with --confirm 1:[0-9a-f]{16}: it resubmits the messages the filter then matches, if they are still exactly these 1 as they are now \(once: a resubmit spends it\)$/)])
    const token = /--confirm (\S+):/.exec(rs.out[1]!)![1]!
    expect(api.received.filter((x) => x.key === `${bad.body.id}:api`)).toHaveLength(1)
    const refused2 = async (confirm: string) => {
      const r = io(dir.path)
      return [await messagesCommand(['resubmit', '--status', 'delivered', '--confirm', confirm, '--data-dir', 'data'], r.io), r.err.join('\n')] as const
    }
    const refused = async (confirm: string) => {
      const r = io(dir.path)
      return [await messagesCommand(['resubmit', '--status', 'error', '--confirm', confirm, '--data-dir', 'data'], r.io), r.err.join('\n')]
    }
    await expect(messagesCommand(['resubmit', '--status', 'error', '--confirm', '1', '--data-dir', 'data'], io(dir.path).io)).rejects.toThrow("--confirm takes the value the preview printed, the count and the set's digest (--confirm N:DIGEST), not 1; run the resubmit without --confirm to preview; nothing resubmitted")
    expect(await refused(`2:${token.slice(2)}`)).toEqual([1, `--confirm 2:${token.slice(2)} does not match: every channel: status error now matches 1 finished message(s); nothing resubmitted, preview again`])
    // As many messages as previewed is not enough: a set of other messages (one left it, another joined) is refused.
    expect(await refused('1:0123456789abcdef')).toEqual([1, '--confirm 1:0123456789abcdef does not match: every channel: status error still matches 1 finished message(s), but not as previewed (this --confirm was used already, or some left the set, others joined it or finished again meanwhile); nothing resubmitted, preview again'])
    expect(api.received.filter((x) => x.key === `${bad.body.id}:api`)).toHaveLength(1)
    const ok = io(dir.path)
    expect(await messagesCommand(['resubmit', '--status', 'error', '--confirm', token, '--data-dir', 'data'], ok.io)).toBe(0)
    expect(ok.out).toEqual(['resubmitted 1 message(s)', `  ${bad.body.id}`])
    // The running engine polls for work queued by another process.
    await until(() => api.received.filter((x) => x.key === `${bad.body.id}:api`).length === 2, 5000)
    await until(() => r.handles()[0]!.counters().delivered === 2)
    // The same --confirm again, once the message is delivered: spent, nothing resent.
    expect(await refused(token)).toEqual([1, expect.stringMatching(/^--confirm [0-9]:[0-9a-f]{16} does not match: every channel: status error now matches no finished message .*; nothing resubmitted, preview again$/)])
    const replay = io(dir.path)
    expect(await messagesCommand(['resubmit', '--status', 'delivered', '--data-dir', 'data'], replay.io)).toBe(0)
    const spent = /--confirm (\S+):/.exec(replay.out[1]!)![1]!
    expect(await messagesCommand(['resubmit', '--status', 'delivered', '--confirm', spent, '--data-dir', 'data'], io(dir.path).io)).toBe(0)
    await until(() => r.handles()[0]!.counters().delivered === 4)
    const again = await refused2(spent)
    expect(again[0]).toBe(1)
    expect(again[1]).toMatch(/this --confirm was used already.*nothing resubmitted, preview again$/)
    expect(await r.stop()).toBe(0)

    const j = io(dir.path)
    expect(await messagesCommand(['show', bad.body.id, '--json', '--data-dir', 'data'], j.io)).toBe(0)
    const detail = JSON.parse(j.out[0]!) as { status: string; attempts: Array<{ outcome: string; responseStatus: number }> }
    expect(detail.status).toBe('delivered')
    expect(detail.attempts.map((a) => [a.outcome, a.responseStatus])).toEqual([['permanent', 400], ['delivered', 200], ['delivered', 200]]) // resubmitted by status error, then (once) by status delivered
    // The resubmit is in the audit log: who (the OS user), what, on what, how many.
    const { openSqliteStore } = await import('../../shared/store/index.ts')
    const reader = openSqliteStore({ dataDir: join(dir.path, 'data'), owner: false })
    const { userInfo } = await import('node:os')
    expect((await reader.auditLog()).at(-1)).toEqual(expect.objectContaining({ actor: `cli:${userInfo().username}`, action: 'resubmit', target: `every channel: status error; ${bad.body.id}`, count: 1 }))
    await reader.close()
  })

  it('finds the store through WEIR_DATA_DIR', async () => {
    const file = await channelFile('envdir')
    const r = await startRun([file])
    const port = Number(await readFile(join(dir.path, 'envdir.port'), 'utf8'))
    const { body } = await post(port, { n: 1 })
    await until(() => api.received.length === 1)
    expect(await r.stop()).toBe(0)
    const t = io('/', false)
    t.io.env = { WEIR_DATA_DIR: join(dir.path, 'data') }
    expect(await messagesCommand(['list', '--json'], t.io)).toBe(0)
    expect(JSON.parse(t.out[0]!)).toEqual([expect.objectContaining({ id: body.id, channel: 'envdir', status: 'delivered' })])
  })

  it('list says when more messages match than --limit shows, and how to see older ones; not when the page holds them all', async () => {
    let t = 1_000_000
    const store = openSqliteStore({ dataDir: join(dir.path, 'data'), now: () => (t += 1000) })
    for (let n = 0; n < 5; n++) await store.enqueue('c', { body: { n } })
    await store.close()
    const page = io(dir.path)
    expect(await messagesCommand(['list', '--limit', '3', '--json', '--data-dir', 'data'], page.io)).toBe(0)
    const shown = JSON.parse(page.out[0]!) as Array<{ id: string; receivedAt: string }>
    expect(shown).toHaveLength(3)
    expect(page.err).toEqual([`more messages match: the newest 3 are shown; raise --limit, or see older ones (with the same filters) with --older-than ${shown[2]!.id}`])
    const one = io(dir.path)
    expect(await messagesCommand(['list', '--limit', '1', '--json', '--data-dir', 'data'], one.io)).toBe(0)
    expect(one.err).toEqual([`more messages match: only the newest is shown; raise --limit, or see older ones (with the same filters) with --older-than ${shown[0]!.id}`])
    const all = io(dir.path)
    expect(await messagesCommand(['list', '--limit', '5', '--data-dir', 'data'], all.io)).toBe(0)
    expect(all.err).toEqual([])
    const older = io(dir.path)
    expect(await messagesCommand(['list', '--until', shown[2]!.receivedAt, '--json', '--data-dir', 'data'], older.io)).toBe(0)
    expect(JSON.parse(older.out[0]!)).toHaveLength(2)
  })

  it('list shows, beside a message being retried, its latest failed attempt\'s error after the destination\'s name', async () => {
    const store = openSqliteStore({ dataDir: join(dir.path, 'data') })
    const retried = await store.enqueue('c', { body: 1 })
    const failed = await store.enqueue('c', { body: 2 })
    const fresh = await store.enqueue('c', { body: 3 })
    await store.claim('c', 2)
    const attempt = (at: number, error: string) => ({ startedAt: at, endedAt: at + 10, outcome: 'retryable' as const, responseStatus: 503, error })
    await store.recordDelivery(retried.id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: attempt(1000, 'http 503 (first)') })
    await store.recordDelivery(retried.id, { destination: 'audit', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: attempt(3000, 'http 503 from audit') })
    await store.recordDelivery(retried.id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: attempt(2000, 'http 503 (second)') })
    await store.complete(failed.id, 'error', [], 'api: gave up after 3 attempts')
    await store.close()
    const t = io(dir.path)
    expect(await messagesCommand(['list', '--data-dir', 'data'], t.io)).toBe(0)
    const rows = t.out[0]!.split('\n')
    expect(rows[0]).toMatch(/^ID +CHANNEL +STATUS +RECEIVED +REASON$/)
    const row = (id: string) => rows.find((r) => r.startsWith(id))!
    expect(row(retried.id)).toMatch(/ retrying +\S+ +audit: http 503 from audit$/)
    expect(row(failed.id)).toMatch(/ error +\S+ +api: gave up after 3 attempts$/)
    expect(row(fresh.id)).toMatch(/ queued +\S+ *$/)
    const json = io(dir.path)
    expect(await messagesCommand(['list', '--json', '--data-dir', 'data'], json.io)).toBe(0)
    const listed = JSON.parse(json.out[0]!) as Array<{ id: string; error?: string; lastError?: string }>
    expect(listed.map((m) => [m.id, m.error, m.lastError])).toEqual([[fresh.id, undefined, undefined], [failed.id, 'api: gave up after 3 attempts', undefined], [retried.id, undefined, 'audit: http 503 from audit']])
  })

  it('answers user errors plainly', async () => {
    const t = io(dir.path)
    const missing = await messagesCommand(['list', '--data-dir', 'nowhere'], t.io).catch((e) => e)
    expect(missing.code).toBe('ERR_STORE')
    expect(missing.userError).toBe(true)
    expect(missing.message).toBe(`no message store in ${join(dir.path, 'nowhere')}; name the data directory with --data-dir D (or $WEIR_DATA_DIR), or a cluster's store with --store postgres://… (or $WEIR_STORE)`)
    expect(missing.missing).toBe(true)
    const badStatus = await messagesCommand(['list', '--status', 'lost'], t.io).catch((e) => e)
    expect(badStatus.message).toBe('--status must be one of queued, in-flight, retrying, delivered, filtered, error; not "lost"')
    expect(await messagesCommand(['frobnicate'], t.io)).toBe(2)
  })

  it('--channel-file with a JSON syntax error names file, line and column, never the text around it (a secret)', async () => {
    const file = join(dir.path, 'leak.json')
    await writeFile(file, '{"name":"leak",\n "credentials":{"api":{"clientAuth":{"method":"client_secret_post","secret": s3cr3tValue42}}}}')
    const t = io(dir.path)
    const e = await messagesCommand(['list', '--channel-file', file, '--key', 'mrn=1', '--data-dir', 'data'], t.io).catch((x) => x)
    expect([e.code, e.userError]).toEqual(['ERR_CONFIG_INVALID', true])
    expect(e.message).toBe(`${file}#: invalid JSON at line 2, column 78: unexpected token 's'`)
    expect(e.message + t.out.join('') + t.err.join('')).not.toContain('s3cr3t')
  })

  it('list shows an error\'s HTTP status first, never cut behind the URL, and which filter dropped a filtered message; --json and show keep the full text', async () => {
    const store = openSqliteStore({ dataDir: join(dir.path, 'data') })
    const [failed, retried, filtered] = [await store.enqueue('c', { body: 1 }), await store.enqueue('c', { body: 2 }), await store.enqueue('c', { body: 3 })]
    await store.claim('c', 3)
    const url = 'POST http://127.0.0.1:18443/api/FHIR/R4/Patient'
    const full = `epic-fhir: ERR_HTTP_STATUS: ${url} answered 422: "{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}"`
    await store.complete(failed.id, 'error', [], full)
    await store.recordDelivery(retried.id, { destination: 'api', part: 0, status: 'retrying', nextAttemptAt: 9000, attempt: { startedAt: 1, endedAt: 2, outcome: 'retryable', responseStatus: 503, error: `ERR_HTTP_STATUS: ${url} answered 503` } })
    await store.complete(filtered.id, 'filtered', [{ destination: 'api', part: 0, status: 'filtered' }], 'filters/2 "test-patients" (match)')
    await store.close()
    const t = io(dir.path)
    expect(await messagesCommand(['list', '--data-dir', 'data'], t.io)).toBe(0)
    const rows = t.out[0]!.split('\n')
    const reason = (id: string) => rows.find((r) => r.startsWith(id))!.replace(/^(\S+ +){4}/, '')
    expect(reason(failed.id)).toMatch(/^epic-fhir: http 422: "\{"resourceType":"OperationOutcome","issue":.*…$/)
    expect(reason(failed.id)).toHaveLength(80)
    expect(reason(retried.id)).toBe('api: http 503')
    expect(reason(filtered.id)).toBe('filtered by filters/2 "test-patients" (match)')
    const json = io(dir.path)
    expect(await messagesCommand(['list', '--json', '--data-dir', 'data'], json.io)).toBe(0)
    const listed = JSON.parse(json.out[0]!) as Array<{ id: string; error?: string; lastError?: string; filteredBy?: string }>
    expect(listed.map((m) => [m.id, m.error, m.lastError, m.filteredBy])).toEqual([
      [filtered.id, undefined, undefined, 'filters/2 "test-patients" (match)'],
      [retried.id, undefined, `api: ERR_HTTP_STATUS: ${url} answered 503`, undefined],
      [failed.id, full, undefined, undefined],
    ])
    const shown = io(dir.path)
    expect(await messagesCommand(['show', filtered.id, '--data-dir', 'data'], shown.io)).toBe(0)
    expect(shown.out.join('\n')).toContain('\nfiltered  by filters/2 "test-patients" (match)\n')
    expect(shown.out.join('\n')).not.toMatch(/^error /m)
    const shownJson = io(dir.path)
    expect(await messagesCommand(['show', filtered.id, '--json', '--data-dir', 'data'], shownJson.io)).toBe(0)
    const detail = JSON.parse(shownJson.out[0]!) as { status: string; filteredBy?: string; error?: string }
    expect([detail.status, detail.filteredBy, detail.error]).toEqual(['filtered', 'filters/2 "test-patients" (match)', undefined])
    const showFailed = io(dir.path)
    expect(await messagesCommand(['show', failed.id, '--data-dir', 'data'], showFailed.io)).toBe(0)
    expect(showFailed.out.join('\n')).toContain(`error     ${full}`)
  })

  it('show redacts token fields and JWTs in excerpts stored unredacted (by an older weir)', async () => {
    const store = openSqliteStore({ dataDir: join(dir.path, 'data') })
    const { id } = await store.enqueue('adt', { body: 1 })
    await store.claim('adt', 1)
    const raw = '{"access_token":"old-at-1","id_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}'
    await store.complete(id, 'error', [{ destination: 'api', part: 0, status: 'error', attempt: { startedAt: 1, endedAt: 2, outcome: 'permanent', responseStatus: 400, excerpt: raw } }], 'api: 400')
    await store.close()
    const text = io(dir.path)
    expect(await messagesCommand(['show', id, '--data-dir', 'data'], text.io)).toBe(0)
    expect(text.out.join('\n')).toContain('response: {"access_token":"[REDACTED]","id_token":"[REDACTED]"}')
    const json = io(dir.path)
    expect(await messagesCommand(['show', id, '--json', '--data-dir', 'data'], json.io)).toBe(0)
    expect(json.out.join('\n')).not.toMatch(/old-at-1|eyJhbGci/)
  })

  it('purge --before deletes finished messages older than the cutoff and keeps the rest', async () => {
    const day = 86_400_000
    let t = Date.now() - 40 * day
    const store = openSqliteStore({ dataDir: join(dir.path, 'data'), now: () => t })
    const old = await store.enqueue('adt', { body: 1 })
    const oldQueued = await store.enqueue('adt', { body: 2 })
    await store.claim('adt', 1)
    await store.complete(old.id, 'delivered')
    t = Date.now()
    const recent = await store.enqueue('adt', { body: 3 })
    await store.claim('adt', 5)
    await store.complete(recent.id, 'error', [], 'api: 400')
    await store.release([oldQueued.id])
    await store.close()

    const p = io(dir.path)
    expect(await messagesCommand(['purge', '--before', '30d', '--yes', '--data-dir', 'data'], p.io)).toBe(0)
    expect(p.out).toHaveLength(1)
    expect(p.out[0]).toMatch(/^purged 1 finished message\(s\) last updated before \d{4}-\d\d-\d\dT[\d:.]+Z$/)
    const l = io(dir.path)
    expect(await messagesCommand(['list', '--json', '--data-dir', 'data'], l.io)).toBe(0)
    expect((JSON.parse(l.out[0]!) as Array<{ id: string }>).map((m) => m.id).sort()).toEqual([oldQueued.id, recent.id].sort())
    const again = io(dir.path)
    expect(await messagesCommand(['purge', '--before', '2000-01-01T00:00:00Z', '--channel', 'adt', '--yes', '--data-dir', 'data'], again.io)).toBe(0)
    expect(again.out).toEqual(['purged 0 finished message(s) last updated before 2000-01-01T00:00:00.000Z in channel adt'])

    // A channel the log holds no message of (a typo): refused, nothing audited.
    const typo = io(dir.path)
    expect(await messagesCommand(['purge', '--before', '3m', '--channel', 'adtt', '--data-dir', 'data'], typo.io)).toBe(1)
    expect([typo.out, typo.err]).toEqual([[], ['no messages of channel adtt in the message log; did you mean "adt"?; channels there: adt; nothing purged']])
    const audited = openSqliteStore({ dataDir: join(dir.path, 'data'), owner: false })
    expect((await audited.auditLog()).map((e) => e.target)).not.toContain(expect.stringContaining('adtt'))
    expect(await audited.auditLog()).toHaveLength(2)
    await audited.close()

    const missing = await messagesCommand(['purge', '--data-dir', 'data'], io(dir.path).io).catch((e) => e)
    expect([missing.userError, missing.message]).toEqual([true, 'purge needs --before (an ISO date or a duration ago like 30d)'])
    const bad = await messagesCommand(['purge', '--before', 'last week', '--data-dir', 'data'], io(dir.path).io).catch((e) => e)
    expect(bad.message).toBe('--before must be an ISO date or a duration like 10m, 2h, 7d; not "last week"')
    const u = io(dir.path)
    expect(await messagesCommand(['frobnicate'], u.io)).toBe(2)
    expect(u.err[0]).toContain('weir messages purge --before T [--channel C]')
  })

  it('parses --since and redacts credential-like keys', () => {
    expect(parseSince('10m', 1_000_000)).toBe(400_000)
    expect(parseSince('2h', 10_000_000)).toBe(2_800_000)
    expect(parseSince('2026-01-02T03:04:05Z')).toBe(Date.UTC(2026, 0, 2, 3, 4, 5))
    expect(() => parseSince('yesterday')).toThrow('--since must be an ISO date or a duration like 10m, 2h, 7d; not "yesterday"')
    expect(redact({ a: 1, Authorization: 'Bearer x', nested: [{ client_secret: 's', ok: 'y' }] })).toEqual({ a: 1, Authorization: '[REDACTED]', nested: [{ client_secret: '[REDACTED]', ok: 'y' }] })
  })
})
