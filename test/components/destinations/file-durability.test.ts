import { spawnSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { tempDir } from '../../_setup.ts'

/**
 * Durability across a power loss cannot be tested without one. What can be observed is the order of
 * the system calls the file destination makes, by strace from outside the process (no mock, no spy):
 * after the rename (or link) that gives the file its name, the directory holding that name must be
 * fsynced before deliver() returns (and so before the message counts as delivered), or the name may
 * be lost while the file's data was synced. Linux with strace only.
 */
const ROOT = resolve(import.meta.dirname, '../../..')
const hasStrace = process.platform === 'linux' && spawnSync('strace', ['-o', '/dev/null', 'true']).status === 0

let d: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => { d = await tempDir('weir-file-sync-') })
afterEach(async () => { await d.cleanup() })

interface Call { name: string; args: string; result: string }

/** The calls of an strace -f log, with `<unfinished ...>` and `<... resumed>` halves joined. */
function parseStrace(text: string): Call[] {
  const pending = new Map<string, string>()
  const calls: Call[] = []
  for (const raw of text.split('\n')) {
    const m = /^(\d+)\s+(.*)$/.exec(raw)
    if (!m) continue
    const [, tid, rest] = m as unknown as [string, string, string]
    let line = rest
    if (line.endsWith('<unfinished ...>')) { pending.set(tid, line.slice(0, -'<unfinished ...>'.length)); continue }
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(line)
    if (resumed) { line = (pending.get(tid) ?? '') + resumed[1]; pending.delete(tid) }
    const call = /^(\w+)\((.*)\)\s+=\s+(-?\d+.*)$/.exec(line)
    if (call) calls.push({ name: call[1]!, args: call[2]!, result: call[3]! })
  }
  return calls
}

/** Runs one delivery under strace; the path of every fsync'd descriptor, with the index of the calls that give the name, and of the end of deliver(). */
async function traceDelivery(overwrite: boolean) {
  const script = join(d.dir, 'deliver.mts')
  await writeFile(script, `
import { statSync } from 'node:fs'
import file from ${JSON.stringify(pathToFileURL(join(ROOT, 'components/destinations/file.ts')).href)}
import { silentLogger } from ${JSON.stringify(pathToFileURL(join(ROOT, 'shared/log/index.ts')).href)}
const channelDir = process.argv[2]
const dest = await file.create({ directory: 'out', filename: 'day/{id}.json', overwrite: ${overwrite}, fileMode: '0600', dirMode: '0700', jsonIndent: 0 }, { channel: 'c', channelDir, name: 'out', log: silentLogger } as never)
await dest.deliver({ id: 'm1', channel: 'c', body: { a: 1 }, contentType: 'application/json', attributes: {}, receivedAt: 0 } as never, { signal: new AbortController().signal, idempotencyKey: 'k' })
try { statSync(channelDir + '/DELIVERED-MARKER') } catch { /* only a marker in the trace */ }
`)
  const channelDir = join(d.dir, 'ch')
  const log = join(d.dir, 'strace.log')
  const r = spawnSync('strace', ['-f', '-qq', '-o', log, '-e', 'trace=openat,close,rename,renameat,renameat2,link,linkat,unlink,unlinkat,fsync,fdatasync,mkdir,mkdirat,statx,newfstatat,stat',
    process.execPath, '--import', 'tsx', script, channelDir], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  expect(r.status, r.stderr).toBe(0)
  const calls = parseStrace(await readFile(log, 'utf8'))
  const fdPath = new Map<string, string>()
  const synced: Array<{ path: string; at: number }> = []
  let named = -1
  let delivered = -1
  const target = join(channelDir, 'out/day/m1.json')
  calls.forEach((c, i) => {
    const path = /"([^"]*)"/.exec(c.args)?.[1]
    if (c.name === 'openat' && path && /^\d+/.test(c.result)) fdPath.set(c.result.split(' ')[0]!, path)
    if (c.name === 'close') fdPath.delete(c.args.trim())
    if ((c.name === 'fsync' || c.name === 'fdatasync') && fdPath.has(c.args.trim())) synced.push({ path: fdPath.get(c.args.trim())!, at: i })
    if (/^(rename|renameat2?|link|linkat)$/.test(c.name) && c.args.includes(`"${target}"`) && c.result.startsWith('0')) named = i
    if (path?.endsWith('/DELIVERED-MARKER')) delivered = i
  })
  return { channelDir, target, synced, named, delivered }
}

describe.skipIf(!hasStrace)('file destination: the new name is made durable before the message counts as delivered', () => {
  it.each([true, false])('overwrite %s: the file is fsynced, then named, then its directory and the parents of the directories it created are fsynced, all before deliver() returns', async (overwrite) => {
    const t = await traceDelivery(overwrite)
    expect(t.named).toBeGreaterThan(-1)
    expect(t.delivered).toBeGreaterThan(t.named)
    const syncedBetween = (path: string) => t.synced.some((s) => s.path === path && s.at > t.named && s.at < t.delivered)
    // "out/day" holds the new name; "out" and the channel directory hold the directories made for it.
    expect({
      file: t.synced.some((s) => s.path.endsWith('.weir-tmp') && s.at < t.named),
      'out/day': syncedBetween(dirname(t.target)),
      out: syncedBetween(join(t.channelDir, 'out')),
      channelDir: syncedBetween(t.channelDir),
    }).toEqual({ file: true, 'out/day': true, out: true, channelDir: true })
  }, 90_000)
})
