import { afterEach, beforeEach, vi } from 'vitest'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { spawn, type ChildProcess } from 'node:child_process'
import { resolve as resolvePath } from 'node:path'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defineComponent, type ComponentDefinition, type Emit } from '../../shared/component.ts'
import type { LoadedChannel, LoadedDestination, RetryPolicy, CircuitBreakerPolicy, ChannelOptions } from '../../shared/config/types.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { startChannel, type ChannelHandle } from '../../engine/runtime/index.ts'
import postDestination from '../fixtures/runtime/test-post-destination.ts'

export interface Received {
  key: string
  body: unknown
  at: number
}

export type Behaviour = (req: { key: string; body: unknown; n: number }) => { status: number; headers?: Record<string, string>; body?: string; delayMs?: number; hang?: boolean } | undefined

/** A loopback API that records each POST (Idempotency-Key, JSON body, time) and answers per `behaviour`. */
export async function startApi(behaviour: Behaviour = () => undefined) {
  const received: Received[] = []
  let active = 0
  let maxActive = 0
  const hanging = new Set<ServerResponse>()
  const api = {
    received,
    behaviour,
    get maxActive() { return maxActive },
    url: '',
    server: undefined as unknown as Server,
    keys: () => received.map((r) => r.key),
    releaseHanging() { for (const r of hanging) r.writeHead(200).end('late'); hanging.clear() },
    close: () => new Promise<void>((ok) => { for (const r of hanging) r.destroy(); api.server.closeAllConnections(); api.server.close(() => ok()) }),
  }
  api.server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const text = Buffer.concat(chunks).toString('utf8')
    const key = String(req.headers['idempotency-key'] ?? '')
    const body = text ? JSON.parse(text) : undefined
    received.push({ key, body, at: Date.now() })
    active++
    maxActive = Math.max(maxActive, active)
    const r = api.behaviour({ key, body, n: received.length }) ?? { status: 200, body: 'ok' }
    if (r.hang) {
      hanging.add(res)
      res.on('close', () => { active--; hanging.delete(res) })
      return
    }
    if (r.delayMs) await new Promise((ok) => setTimeout(ok, r.delayMs))
    active--
    res.writeHead(r.status, r.headers ?? {}).end(r.body ?? '')
  })
  await new Promise<void>((ok) => api.server.listen(0, '127.0.0.1', () => ok()))
  api.url = `http://127.0.0.1:${(api.server.address() as { port: number }).port}/in`
  return api
}

/** A source the test feeds directly. */
export function feedSource() {
  let emit: Emit | undefined
  let stopped = 0
  const definition = defineComponent({
    type: 'feed', kind: 'source', description: 'test feed', configSchema: { type: 'object' },
    create: () => ({ start(e: Emit) { emit = e }, stop() { stopped++ } }),
  })
  return {
    definition,
    emit: (body: unknown, extra: { dedupeKey?: string } = {}) => {
      if (!emit) throw new Error('source not started')
      return emit({ body, ...extra })
    },
    get stopped() { return stopped },
  }
}

export const fastRetry: RetryPolicy = { maxAttempts: 5, initialDelayMs: 20, maxDelayMs: 1000, maxElapsedMs: 60_000 }
export const noBreaker: CircuitBreakerPolicy = { failureThreshold: 1000, resetAfterMs: 1000 }

export function destination(name: string, url: string, extra: Partial<Pick<LoadedDestination, 'retry' | 'circuitBreaker'>> & { definition?: ComponentDefinition<'destination'>; config?: Record<string, unknown> } = {}): LoadedDestination {
  return {
    name,
    definition: extra.definition ?? (postDestination as ComponentDefinition<'destination'>),
    config: extra.config ?? { url, timeoutMs: 5000 },
    pointer: `/destinations/${name}`,
    retry: extra.retry ?? fastRetry,
    circuitBreaker: extra.circuitBreaker ?? noBreaker,
  }
}

export function channel(parts: { name?: string; source: ComponentDefinition<'source'>; sourceConfig?: Record<string, unknown>; filters?: ComponentDefinition<'filter'>[]; destinations: LoadedDestination[]; options?: Partial<ChannelOptions>; dir?: string }): LoadedChannel {
  return {
    name: parts.name ?? 'test',
    file: join(parts.dir ?? tmpdir(), 'test.json'),
    dir: parts.dir ?? tmpdir(),
    credentials: {},
    source: { definition: parts.source, config: parts.sourceConfig ?? {}, pointer: '/source' },
    filters: (parts.filters ?? []).map((definition, i) => ({ definition, config: {}, pointer: `/filters/${i}` })),
    destinations: parts.destinations,
    options: { concurrency: 1, queueLimit: 10_000, onError: 'skip', shutdownTimeoutMs: 2000, ...parts.options },
    warnings: [],
  }
}

export async function tempDir(prefix = 'weir-rt-'): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return { path, remove: () => rm(path, { recursive: true, force: true }) }
}

export function filter(process: (m: any) => any): ComponentDefinition<'filter'> {
  return defineComponent({ type: 'f', kind: 'filter', description: 'test filter', configSchema: { type: 'object' }, create: () => ({ process }) })
}

/** Polls `cond` every 10 ms, at most `timeoutMs`. */
export { until } from '../_setup.ts'
import { until } from '../_setup.ts'

const ROOT = resolvePath(import.meta.dirname, '../..')

/** Spawns `weir run <file> --data-dir <dataDir> …` (the real CLI entry), collecting its output. */
export function spawnWeirRun(file: string, dataDir: string, children: Set<ChildProcess>, extraArgs: string[] = []) {
  const child = spawn(process.execPath, [join(ROOT, 'bin/weir.js'), 'run', file, '--data-dir', dataDir, ...extraArgs], {
    cwd: ROOT, env: { ...process.env, WEIR_LOG_LEVEL: 'warn', CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((ok) => child.on('exit', (code, signal) => ok({ code, signal, at: Date.now() })))
  /** Waits for `ready`, failing with the output if the process exits first. */
  const until$ = (ready: () => Promise<boolean>) => until(async () => {
    if (child.exitCode !== null) throw new Error(`weir run exited early: ${output}`)
    return ready()
  }, 20_000)
  return { child, exited, output: () => output, until: until$ }
}

/**
 * Starts `weir run <file>` as a child process with its data in `<dir>/data`, and waits for the
 * port the test source writes to `<dir>/<portFile>`.
 */
export async function startWeirRun(file: string, dir: string, portFile: string, children: Set<ChildProcess>, extraArgs: string[] = []) {
  await rm(join(dir, portFile), { force: true })
  const run = spawnWeirRun(file, join(dir, 'data'), children, extraArgs)
  await run.until(() => readFile(join(dir, portFile), 'utf8').then((p) => p.length > 0, () => false))
  const port = Number(await readFile(join(dir, portFile), 'utf8'))
  return { child: run.child, port, exited: run.exited, output: run.output }
}


type RuntimeDeps = Parameters<typeof startChannel>[1]

export interface RuntimeFixture {
  dir: Awaited<ReturnType<typeof tempDir>>
  store: MessageStore
  api: Awaited<ReturnType<typeof startApi>>
  /** Started channels, stopped after each test. */
  handles: ChannelHandle[]
  /** Starts a channel in the test's directory with the test's store; `defaults` and `extra` override the deps. */
  start(parts: Parameters<typeof channel>[0], extra?: Partial<RuntimeDeps>): Promise<ChannelHandle>
}

/** Per test: a temporary directory, a SQLite store in it and a loopback API; all closed after the test. */
export function useRuntimeFixture(defaults: Partial<RuntimeDeps> = {}): RuntimeFixture {
  const rt = {
    handles: [] as ChannelHandle[],
    async start(parts: Parameters<typeof channel>[0], extra: Partial<RuntimeDeps> = {}) {
      const h = await startChannel(channel({ dir: rt.dir.path, ...parts }), { store: rt.store, log: silentLogger, dataDir: rt.dir.path, ...defaults, ...extra })
      rt.handles.push(h)
      return h
    },
  } as RuntimeFixture
  beforeEach(async () => {
    rt.dir = await tempDir()
    rt.store = openSqliteStore({ dataDir: rt.dir.path })
    rt.api = await startApi()
  })
  afterEach(async () => {
    for (const h of rt.handles.splice(0)) await h.stop({ timeoutMs: 500 })
    await rt.api.close()
    await rt.store.close()
    await rt.dir.remove()
  })
  return rt
}

// Captured at load, so waits below stay real even while a test fakes timers.
const realSetImmediate = globalThis.setImmediate

/**
 * For tests on fake timers (`useFakeClock`): runs turns of the real event loop (store commits on the
 * writer thread,
 * loopback I/O) while fake time stands still, until `cond` holds. Bounded by a turn count, never by
 * elapsed time.
 */
export async function settle(cond: () => boolean | Promise<boolean>, maxTurns = 20_000): Promise<void> {
  for (let i = 0; i < maxTurns; i++) {
    if (await cond()) return
    await new Promise<void>((ok) => realSetImmediate(ok))
  }
  if (!(await cond())) throw new Error(`condition not met within ${maxTurns} event-loop turns`)
}

/** `n` turns of the real event loop, to show that nothing more happens while fake time stands still. */
export async function turns(n = 200): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((ok) => realSetImmediate(ok))
}

/** Waits for a condition that needs real I/O (loopback HTTP): many more turns, still bounded by count. */
export const settleIo = (cond: () => boolean | Promise<boolean>) => settle(cond, 200_000)

/**
 * On fake time: waits until the retry after the filters' `n`th failure of message `id` is stored,
 * so that its wait is scheduled (the runtime begins it after the write), before the clock moves.
 */
export async function filterRetryStored(store: MessageStore, id: string, n: number): Promise<void> {
  await settleIo(async () => (await store.get(id))!.message.filterRetry?.charged === n)
  await turns()
}

/**
 * Fakes setTimeout/setInterval and Date (the runtime's `now` reads `Date.now`), leaving
 * setImmediate real so store commits and I/O go on; restore with `vi.useRealTimers()`.
 */
export function useFakeClock(start = Date.UTC(2026, 0, 1)): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'], now: start })
}

export interface EngineFixture {
  dir: Awaited<ReturnType<typeof tempDir>>
  api: Awaited<ReturnType<typeof startApi>>
  /** `weir run` children started by the test, SIGKILLed after it. */
  children: Set<ChildProcess>
}

/** A fresh temporary directory and loopback API (answering per `behaviour`) for each test, and clean-up of the engines it started. */
export function useEngineFixture(prefix: string, behaviour?: Behaviour): EngineFixture {
  const f = { children: new Set<ChildProcess>() } as EngineFixture
  beforeEach(async () => {
    f.dir = await tempDir(prefix)
    f.api = await startApi(behaviour)
  })
  afterEach(async () => {
    for (const c of f.children) c.kill('SIGKILL')
    f.children.clear()
    await f.api.close()
    await f.dir.remove()
  })
  return f
}
