// Found by an on-call walkthrough of `weir messages` with only the README: a delivered message
// resubmitted by id without a word, a purge of every channel's errors without a preview, a mistyped
// channel listed as "no messages", a filter resubmit that did not say which messages it queued.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { join, resolve } from 'node:path'
import { openSqliteStore, type AuditEntry, type MessageStore } from '../../shared/store/index.ts'
import { run as messages } from '../../engine/commands/messages.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { writesHeld } from '../_sqlite.ts'

const ROOT = resolve(import.meta.dirname, '../..')
/** Long enough ago for `--before 1s`. */
const PAST = Date.UTC(2026, 10, 1)
let dir: Awaited<ReturnType<typeof tempDir>>
let data = ''
beforeEach(async () => {
  dir = await tempDir('weir-messages-operator-')
  data = join(dir.path, 'data')
})
afterEach(async () => {
  await dir.remove()
})

/** Stores messages of `channel`, each finished with its status, last updated at PAST; their ids. */
async function finished(channel: string, ...statuses: Array<'delivered' | 'filtered' | 'error'>): Promise<string[]> {
  const store = openSqliteStore({ dataDir: data, now: () => PAST })
  try {
    const ids: string[] = []
    for (const status of statuses) {
      const { id } = await store.enqueue(channel, { body: { n: ids.length } })
      await store.claim(channel, 10)
      await store.complete(id, status)
      ids.push(id)
    }
    return ids
  } finally {
    await store.close()
  }
}

/** Runs `weir messages …` on the test's store: exit status and what it printed. */
async function weir(...args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  const code = await messages([...args, '--data-dir', data], { out: (t) => out.push(t), err: (t) => err.push(t), env: {}, cwd: dir.path, isTTY: false })
  return { code, out, err }
}

async function auditLog(): Promise<AuditEntry[]> {
  const store: MessageStore = openSqliteStore({ dataDir: data, owner: false, create: false })
  try {
    return await store.auditLog()
  } finally {
    await store.close()
  }
}

async function statuses(ids: readonly string[]): Promise<string[]> {
  const store: MessageStore = openSqliteStore({ dataDir: data, owner: false, create: false })
  try {
    return await Promise.all(ids.map(async (id) => (await store.get(id))?.message.status ?? 'purged'))
  } finally {
    await store.close()
  }
}

describe('weir messages resubmit ID of a delivered message', () => {
  it('previews and resubmits only with the --confirm it printed, once', async () => {
    const [id] = await finished('orders', 'delivered')
    const preview = await weir('resubmit', id!)
    expect(preview.code).toBe(0)
    expect(preview.out).toEqual([
      `message ${id} was delivered to every destination: resubmitting sends it again; this resubmits 1 message to 0 destinations.`,
      expect.stringMatching(/^nothing resubmitted yet: run again with --confirm 1:[0-9a-f]{16} \(or --yes, for scripts\): it resubmits these 1 message\(s\) if they are still as they are now \(once: a resubmit spends it\)$/),
    ])
    expect(await statuses([id!])).toEqual(['delivered'])
    const token = /--confirm (\S+)/.exec(preview.out[1]!)![1]!
    expect(await weir('resubmit', id!, '--confirm', token)).toEqual({ code: 0, out: ['resubmitted 1 message(s)', `  ${id}`], err: [] })
    expect(await statuses([id!])).toEqual(['queued'])
    const spent = await weir('resubmit', id!, '--confirm', token)
    expect([spent.code, spent.out]).toEqual([1, []])
    expect(spent.err).toEqual([`--confirm ${token} does not match: these 1 message(s) are not as previewed (this --confirm was used already, or they finished again meanwhile); nothing resubmitted, preview again`])
  })

  it('--yes resubmits at once; error and filtered messages by id still go at once', async () => {
    const [delivered, error, filtered] = await finished('orders', 'delivered', 'error', 'filtered')
    expect(await weir('resubmit', error!, filtered!)).toEqual({ code: 0, out: ['resubmitted 2 message(s)', `  ${error}`, `  ${filtered}`], err: [] })
    expect(await weir('resubmit', delivered!, '--yes')).toEqual({ code: 0, out: ['resubmitted 1 message(s)', `  ${delivered}`], err: [] })
    expect(await statuses([delivered!, error!, filtered!])).toEqual(['queued', 'queued', 'queued'])
  })
})

describe('weir messages purge', () => {
  it('previews per channel and status, keeps errors, and deletes only with --confirm N (or --yes)', async () => {
    const orders = await finished('orders', 'delivered', 'delivered', 'error')
    const adt = await finished('adt', 'filtered', 'error')
    const preview = await weir('purge', '--before', '1s')
    expect(preview.code).toBe(0)
    expect(preview.out).toEqual([
      expect.stringMatching(/^this purges 3 finished message\(s\) last updated before \S+Z \(messages in error kept: --include-errors deletes them too\):$/),
      '  adt: filtered 1',
      '  orders: delivered 2',
      expect.stringMatching(/^nothing purged yet: run again with --before \S+Z --confirm 3 \(or --yes, for scripts\)$/),
    ])
    expect(await statuses([...orders, ...adt])).toEqual(['delivered', 'delivered', 'error', 'filtered', 'error'])
    const before = /--before (\S+)/.exec(preview.out[3]!)![1]!
    const wrong = await weir('purge', '--before', before, '--confirm', '4')
    expect([wrong.code, wrong.err]).toEqual([1, [`--confirm 4 does not match: 3 finished message(s) last updated before ${before} now; nothing purged, preview again`]])
    expect(await weir('purge', '--before', before, '--confirm', '3')).toEqual({ code: 0, out: [`purged 3 finished message(s) last updated before ${before}`], err: [] })
    expect(await statuses([...orders, ...adt])).toEqual(['purged', 'purged', 'error', 'purged', 'error'])
    const errors = await weir('purge', '--before', '1s', '--include-errors', '--channel', 'adt', '--yes')
    expect([errors.code, errors.out]).toEqual([0, [expect.stringMatching(/^purged 1 finished message\(s\) last updated before \S+Z in channel adt$/)]])
    expect(await statuses([orders[2]!, adt[1]!])).toEqual(['error', 'purged'])
  })
})

describe('a mistyped --channel', () => {
  it.each([
    ['list', ['list', '--channel', 'orderz'], 'nothing listed'],
    ['resubmit', ['resubmit', '--status', 'error', '--channel', 'orderz'], 'nothing resubmitted'],
  ])('%s: exit 1, did you mean, the channels there', async (_, args, nothing) => {
    await finished('orders', 'error')
    await finished('adt', 'delivered')
    expect(await weir(...args)).toEqual({ code: 1, out: [], err: [`no messages of channel orderz in the message log; did you mean "orders"?; channels there: adt, orders; ${nothing}`] })
  })
})

/** Runs `weir messages …` on the test's store as a process of its own (bin/weir.js: `npm run build` first). */
function weirProcess(...args: string[]): Promise<{ code: number | null; out: string[]; err: string[] }> {
  return new Promise((done, fail) => {
    execFile(process.execPath, [join(ROOT, 'bin/weir.js'), 'messages', ...args, '--data-dir', data], { cwd: dir.path, env: { ...process.env, CI: 'true' }, timeout: 20_000 }, (e, out, err) => {
      if (e && typeof e.code !== 'number') fail(e)
      else done({ code: e ? (e.code as number) : 0, out: out.split('\n').filter(Boolean), err: err.split('\n').filter(Boolean) })
    })
  })
}

describe('two confirmations of one preview at the same instant', () => {
  it('two weir messages resubmit --confirm processes on one data directory, both past the check before either writes: one resubmits, the other exits 1 as a spent --confirm does; every message queued and audited once', async () => {
    const ids = await finished('orders', 'error', 'error', 'delivered')
    const filter = ['resubmit', '--status', 'error']
    const token = /--confirm (\d+:[0-9a-f]+)/.exec((await weir(...filter)).out[1]!)![1]!
    const runs = await writesHeld(data, 2500, () => Promise.all([weirProcess(...filter, '--confirm', token), weirProcess(...filter, '--confirm', token)]))
    expect(runs.map((r) => r.code).sort()).toEqual([0, 1])
    expect(runs.find((r) => r.code === 0)!.out[0]).toBe('resubmitted 2 message(s)')
    expect(runs.find((r) => r.code === 1)!.err).toEqual([`--confirm ${token} does not match: every channel: status error still matches 2 finished message(s), but not as previewed (this --confirm was used already, or some left the set, others joined it or finished again meanwhile); nothing resubmitted, preview again`])
    expect(await statuses(ids)).toEqual(['queued', 'queued', 'delivered'])
    expect((await auditLog()).map((e) => [e.action, e.count])).toEqual([['resubmit', 2]])
  })

  it('two weir messages resubmit ID --confirm of a delivered message: one resubmits it, the other exits 1', async () => {
    const [id] = await finished('orders', 'delivered')
    const token = /--confirm (\d+:[0-9a-f]+)/.exec((await weir('resubmit', id!)).out[1]!)![1]!
    const runs = await writesHeld(data, 1500, () => Promise.all([weir('resubmit', id!, '--confirm', token), weir('resubmit', id!, '--confirm', token)]))
    expect(runs.map((r) => r.code).sort()).toEqual([0, 1])
    expect(runs.find((r) => r.code === 1)!.err).toEqual([`--confirm ${token} does not match: these 1 message(s) are not as previewed (this --confirm was used already, or they finished again meanwhile); nothing resubmitted, preview again`])
    expect(await statuses([id!])).toEqual(['queued'])
    expect((await auditLog()).map((e) => [e.action, e.count])).toEqual([['resubmit', 1]])
  })
})

describe('smaller things', () => {
  it('a filter resubmit lists the ids it resubmitted, the first 20 and how many more', async () => {
    const ids = await finished('orders', ...Array<'error'>(23).fill('error'))
    const preview = await weir('resubmit', '--status', 'error')
    const token = /--confirm (\S+)/.exec(preview.out[1]!)![1]!
    const done = await weir('resubmit', '--status', 'error', '--confirm', token)
    expect(done.code).toBe(0)
    expect(done.out[0]).toBe('resubmitted 23 message(s)')
    const shown = done.out.slice(1, 21).map((l) => l.trim())
    expect(new Set(shown).size).toBe(20)
    expect(shown.filter((id) => !ids.includes(id))).toEqual([])
    expect(done.out.slice(21)).toEqual(['  … and 3 more'])
  })

  it('a spent --confirm says as the README does: nothing resubmitted, preview again', async () => {
    await finished('orders', 'error')
    const token = /--confirm (\S+)/.exec((await weir('resubmit', '--status', 'error')).out[1]!)![1]!
    expect((await weir('resubmit', '--status', 'error', '--confirm', token)).code).toBe(0)
    const spent = await weir('resubmit', '--status', 'error', '--confirm', token)
    expect([spent.code, spent.err]).toEqual([1, [`--confirm ${token} does not match: every channel: status error now matches no finished message (this --confirm was used already, or the set left it meanwhile); nothing resubmitted, preview again`]])
  })

  it('list leaves the alert channels out unless --channel names one or --all is given', async () => {
    const [order] = await finished('orders', 'delivered')
    const [alert] = await finished('weir-alerts.ops', 'delivered')
    const listed = async (...args: string[]) => (JSON.parse((await weir('list', '--json', ...args)).out[0]!) as Array<{ id: string }>).map((m) => m.id)
    expect(await listed()).toEqual([order])
    expect(await listed('--limit', '1')).toEqual([order])
    expect(await listed('--all')).toEqual([alert, order])
    expect(await listed('--channel', 'weir-alerts.ops')).toEqual([alert])
  })
})
