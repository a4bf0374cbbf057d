// Helpers for the reliability suite only: no tests here.
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import { inspect } from 'node:util'
import { Pool } from 'undici'
import { loadChannelObject } from '../../engine/load.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import { createLogger, type Logger } from '../../shared/log/index.ts'
import { createTokenProvider, TokenCache } from '../../shared/oauth/index.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import { startChannel, type ChannelHandle } from '../../engine/runtime/index.ts'
import { tempDir } from '../_setup.ts'

export const root = resolve(import.meta.dirname, '../..')

/**
 * Collects everything a test file writes: log lines (through `log`), error texts (`error(e)`),
 * and whatever reaches stdout/stderr while `capture()` is on, so the file can assert that no
 * secret, key or token used in it appears anywhere.
 */
export function textCollector() {
  const texts: string[] = []
  const stream = new Writable({ write(chunk, _enc, cb) { texts.push(String(chunk)); cb() } })
  const log: Logger = createLogger({ destination: stream, level: 'debug', pretty: false })
  const originals = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) }
  return {
    log,
    texts,
    add(text: string) { texts.push(text) },
    error(e: unknown) {
      let cur: unknown = e
      for (let depth = 0; cur && depth < 5; depth++) {
        texts.push(String((cur as Error).message), inspect(cur, { depth: 5 }), JSON.stringify(cur) ?? '')
        cur = (cur as { cause?: unknown }).cause
      }
      return e
    },
    capture() {
      process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => { texts.push(String(chunk)); return (originals.out as (...a: unknown[]) => boolean)(chunk, ...rest) }) as typeof process.stdout.write
      process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => { texts.push(String(chunk)); return (originals.err as (...a: unknown[]) => boolean)(chunk, ...rest) }) as typeof process.stderr.write
    },
    release() {
      process.stdout.write = originals.out as typeof process.stdout.write
      process.stderr.write = originals.err as typeof process.stderr.write
    },
    /** The secrets (at least 8 characters) found in any collected text, shown by their first 4 characters only. */
    leaks(secrets: Iterable<string>): string[] {
      const found = new Set<string>()
      const all = texts.join('\n')
      for (const s of secrets) if (s.length >= 8 && all.includes(s)) found.add(`${s.slice(0, 4)}… (${s.length} chars)`)
      for (const m of all.matchAll(/eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g)) found.add(`a JWT: ${m[0].slice(0, 12)}…`)
      if (/PRIVATE KEY-----|MII[A-Za-z0-9+/]{40}/.test(all)) found.add('private key material')
      return [...found]
    },
  }
}

/** Lines of a PEM key long enough to identify it. */
export const pemLines = (pem: string) => pem.split('\n').filter((l) => l.length > 40 && !l.startsWith('-----'))

export interface ScenarioFigures {
  scenario: string
  injected: string
  sent: number
  delivered: number
  lost: number
  duplicated: number
  inError?: number
  tokenRequests?: number
  notes?: string
  seconds?: number
}

/**
 * Prints one scenario's figures; under `npm run test:reliability` (WEIR_RELIABILITY_RESULTS=1) also
 * writes them to bench/results/reliability/<scenario>.json and rewrites bench/results/reliability.json
 * from every scenario file (the README table's source). Plain `npm test` leaves the tree untouched.
 */
export function report(f: ScenarioFigures): void {
  console.log(`reliability: ${f.scenario}: injected ${f.injected}; sent ${f.sent}, delivered ${f.delivered}, lost ${f.lost}, duplicated ${f.duplicated}${f.inError !== undefined ? `, in error ${f.inError}` : ''}${f.tokenRequests !== undefined ? `, token requests ${f.tokenRequests}` : ''}${f.notes ? ` (${f.notes})` : ''}`)
  if (!process.env.WEIR_RELIABILITY_RESULTS) return
  const dir = join(root, 'bench/results/reliability')
  mkdirSync(dir, { recursive: true })
  const slug = f.scenario.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')
  const write = (file: string, data: unknown) => {
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n')
    renameSync(tmp, file)
  }
  write(join(dir, `${slug}.json`), { ...f, at: new Date().toISOString() })
  const all = readdirSync(dir).filter((n) => n.endsWith('.json')).sort().map((n) => { try { return JSON.parse(readFileSync(join(dir, n), 'utf8')) } catch { return undefined } }).filter(Boolean)
  write(join(root, 'bench/results/reliability.json'), { scenarios: all })
}

/** Counts deliveries by Idempotency-Key: distinct keys, and extra arrivals of a key already seen. */
export function tally(keys: string[]): { distinct: Set<string>; duplicated: number } {
  const distinct = new Set<string>()
  let duplicated = 0
  for (const k of keys) {
    if (distinct.has(k)) duplicated++
    else distinct.add(k)
  }
  return { distinct, duplicated }
}

/** A loopback server: `handle` answers each request after its body is read. */
export async function server(handle: (req: IncomingMessage, body: string, res: ServerResponse) => void | Promise<void>): Promise<{ url: string; server: Server; close: () => Promise<void> }> {
  const s = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      Promise.resolve(handle(req, Buffer.concat(chunks).toString('utf8'), res)).catch(() => { if (!res.headersSent) res.writeHead(500).end() })
    })
  })
  s.keepAliveTimeout = 10_000
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', () => ok()))
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    server: s,
    close: () => new Promise<void>((ok) => { s.closeAllConnections(); s.close(() => ok()) }),
  }
}

export interface TestChannel {
  handle: ChannelHandle
  store: MessageStore
  /** POSTs a JSON body to the channel's http-listener; resolves with the acknowledged message id. */
  post(body: unknown): Promise<string>
  close(): Promise<void>
}

/**
 * Starts a channel in this process from a channel object (built-in components, the real loader,
 * the durable store with its default sync, the shared HTTP client and OAuth providers).
 * `now` is given to the token providers (a simulated clock shared with the authorization server).
 */
export async function startTestChannel(raw: Record<string, unknown>, options: { log: Logger; env?: Record<string, string>; now?: () => number; random?: () => number }): Promise<TestChannel> {
  const dir = await tempDir('weir-rel-')
  const channel = await loadChannelObject(raw, { file: join(dir.dir, 'channel.json'), env: options.env ?? {} })
  const dataDir = join(dir.dir, 'data')
  const store = openSqliteStore({ dataDir })
  const http = createHttpClient({ log: options.log })
  const cache = new TokenCache()
  const handle = await startChannel(channel, {
    store, log: options.log, dataDir, http, pollIntervalMs: 100,
    ...(options.random ? { random: options.random } : {}),
    credential: (name, ch) => createTokenProvider(name, ch.credentials[name] as never, { log: options.log, cache, dataDir, ...(options.now ? { now: options.now } : {}) }),
  })
  const port = handle.source.address!()!.port
  const path = ((raw.source as { config?: { path?: string } }).config?.path) ?? '/'
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 16 })
  return {
    handle, store,
    async post(body) {
      for (let i = 0; ; i++) {
        const res = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
        const text = await res.body.text()
        if (res.statusCode === 202) return (JSON.parse(text) as { id: string }).id
        if (i > 100) throw new Error(`listener answered ${res.statusCode}: ${text}`)
        await new Promise((ok) => setTimeout(ok, 50))
      }
    },
    async close() {
      await pool.close()
      await handle.stop({ timeoutMs: 2000 })
      await store.close()
      await http.close()
      await dir.cleanup()
    },
  }
}

/** Runs `fn` over [0, n) with `parallel` at once. */
export async function inParallel(n: number, parallel: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: parallel }, async () => {
    for (let i = next++; i < n; i = next++) await fn(i)
  }))
}

/** Polls `cond` every 20 ms, at most `timeoutMs`. */
export { until } from '../_setup.ts'
