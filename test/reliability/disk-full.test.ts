import { execFileSync } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Pool } from 'undici'
import { loadChannelObject } from '../../engine/load.ts'
import { startChannel } from '../../engine/runtime/index.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { report, server, tally, textCollector, until } from './_helpers.ts'

/**
 * The data directory's file system fills up while messages arrive: a real tmpfs of a few
 * megabytes (mounting one needs root, as CI runs; skipped otherwise). The listener must refuse
 * with 503 and Retry-After (a sender retries), never 500 or a dropped connection; the engine
 * must stay up; once space is freed it must accept again, and every acknowledged message must
 * reach the API.
 */
const base = mkdtempSync(join(tmpdir(), 'weir-disk-full-'))
const mountPoint = join(base, 'fs')
mkdirSync(mountPoint)
const mounted = (() => {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', mountPoint], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()
afterAll(() => {
  if (mounted) execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' })
  rmSync(base, { recursive: true, force: true })
})

/** Fills the file system holding `dir` with one file, until it refuses a write (ENOSPC). */
function fill(dir: string): string {
  const file = join(dir, 'filler')
  const fd = openSync(file, 'w')
  const chunk = Buffer.alloc(64 * 1024, 1)
  try {
    for (let i = 0; i < 100_000; i++) writeSync(fd, chunk)
    throw new Error('the file system never filled up')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e
    // The last bytes: fill whatever a 64 KB write could not.
    for (let size = 32 * 1024; size >= 512; size /= 2) try { for (;;) writeSync(fd, chunk, 0, size) } catch { /* next size */ }
  } finally {
    closeSync(fd)
  }
  return file
}

describe.skipIf(!mounted)('the data directory\'s disk fills up under load', () => {
  it('answers 503 with Retry-After while it is full, stays up, accepts again once space is freed, and delivers every acknowledged message', async () => {
    const collector = textCollector()
    const delivered: string[] = []
    // A slow API: deliveries are under way when the disk fills, so their completions cannot be written either.
    const api = await server(async (req, _body, res) => {
      await new Promise((ok) => setTimeout(ok, 100))
      delivered.push(String(req.headers['idempotency-key']))
      res.writeHead(200).end('{}')
    })
    const dataDir = join(mountPoint, 'data')
    const channel = await loadChannelObject({
      name: 'disk-full',
      source: { type: 'http-listener', config: { port: 0 } },
      destinations: [{ name: 'api', type: 'http', config: { url: `${api.url}/in` }, retry: { maxAttempts: 1000, initialDelayMs: 20, maxDelayMs: 200 } }],
      options: { concurrency: 8 },
    }, { file: join(base, 'disk-full.json'), env: {} })
    const store = openSqliteStore({ dataDir })
    const http = createHttpClient({ log: collector.log })
    const handle = await startChannel(channel, { store, log: collector.log, dataDir, http, pollIntervalMs: 100 })
    const pool = new Pool(`http://127.0.0.1:${handle.source.address!()!.port}`, { connections: 8 })
    const acked = new Set<string>()
    const statuses = new Map<number, number>()
    let retryAfterMissing = 0
    /** One POST; the acknowledged id, or the refusal's status. */
    const post = async (n: number): Promise<number> => {
      const res = await pool.request({ method: 'POST', path: '/', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n, pad: 'x'.repeat(16 * 1024) }) })
      const text = await res.body.text()
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      if (res.statusCode === 202) acked.add((JSON.parse(text) as { id: string }).id)
      else if (res.statusCode === 503 && res.headers['retry-after'] === undefined) retryAfterMissing++
      return res.statusCode
    }
    try {
      for (let n = 0; n < 40; n++) expect(await post(n)).toBe(202)
      expect(delivered.length).toBeLessThan(40)

      const filler = fill(mountPoint)
      // The WAL may still have room for some writes: send until the store refuses (bounded).
      let n = 40
      let refused = 0
      for (; n < 2040 && refused < 20; n++) if ((await post(n)) !== 202) refused++
      expect(refused).toBe(20)
      expect(statuses.get(500) ?? 0).toBe(0)
      expect([...statuses.keys()].sort()).toEqual([202, 503])
      expect(retryAfterMissing).toBe(0)
      expect(handle.state).toBe('running')

      rmSync(filler)
      // Free again: the next messages are accepted (the sender retries each until it is).
      for (let i = 0; i < 20; i++, n++) {
        let status = 0
        for (let attempt = 0; attempt < 200 && status !== 202; attempt++) {
          status = await post(n)
          if (status !== 202) await new Promise((ok) => setTimeout(ok, 50))
        }
        expect(status).toBe(202)
      }
      // Every acknowledged message reaches the API (deliveries whose completion could not be written go again: duplicates, not losses).
      const ids = () => new Set(delivered.map((k) => k.split(':')[0]))
      await until(() => [...acked].every((id) => ids().has(id)), 30_000)
      await until(async () => (await store.stats('disk-full')).delivered === acked.size, 30_000)
      const { duplicated } = tally(delivered)
      report({ scenario: 'disk-full', injected: 'the data directory\'s tmpfs filled up under load, then freed', sent: n, delivered: ids().size, lost: [...acked].filter((id) => !ids().has(id)).length, duplicated, notes: `answers: ${[...statuses].map(([s, c]) => `${c}× ${s}`).join(', ')}` })
      expect(await store.stats('disk-full')).toMatchObject({ error: 0, queued: 0, 'in-flight': 0, retrying: 0 })
    } finally {
      await pool.close()
      await handle.stop({ timeoutMs: 2000 })
      await store.close()
      await http.close()
      await api.close()
    }
  }, 120_000)
})
