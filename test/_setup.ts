// Test helpers only: no tests here.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { afterEach, expect } from 'vitest'
import type { ComponentContext, ComponentDefinition, ComponentState, Emit, EmitResult, Message, MessageInput, Source } from '../shared/component.ts'
import { createLogger } from '../shared/log/index.ts'
import type { HttpClient } from '../shared/http/types.ts'
import { createHttpClient } from '../shared/http/index.ts'
import type { AccessToken, TokenProvider } from '../shared/oauth/types.ts'
import type { MessageStore } from '../shared/store/types.ts'
import { Secret } from '../shared/secret.ts'
import { createRegistry } from '../shared/config/registry.ts'
import { loadChannelObject } from '../shared/config/load.ts'
import { ConfigError, type ConfigProblem } from '../shared/errors.ts'

/** A temporary directory, removed by the returned cleanup. */
export async function tempDir(prefix = 'weir-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

export interface LogLine { level: number; msg: string; [k: string]: unknown }

/** An in-memory ComponentState that can be shared across two contexts (a "restart"). */
export function memoryState(map = new Map<string, unknown>()): ComponentState & { map: Map<string, unknown> } {
  return {
    map,
    async get<T>(key: string) { return structuredClone(map.get(key)) as T | undefined },
    async set(key: string, value: unknown) { map.set(key, structuredClone(value)) },
  }
}

/** A token provider that hands out a fixed bearer token and counts calls. */
export function staticTokenProvider(name: string, token: string): TokenProvider & { authorizeCalls: Array<{ method: string; url: string }> } {
  const at: AccessToken = { value: new Secret(token, 'literal'), tokenType: 'Bearer', expiresAt: Date.now() + 3600_000, extra: {} }
  const authorizeCalls: Array<{ method: string; url: string }> = []
  return {
    name,
    authorizeCalls,
    async getToken() { return at },
    invalidate() {},
    async authorize(req) {
      authorizeCalls.push({ method: req.method, url: String(req.url) })
      return { token: at, headers: { authorization: `Bearer ${token}` } }
    },
    stats: () => ({ tokenRequests: 0, tokensFetched: 0, tokenRequestsFailed: 0, tokenErrors: 0 }),
    async close() {},
  }
}

/** The shared HTTP client (shared/http); close it when done (testContext does). */
export function httpClient(): HttpClient {
  return createHttpClient()
}

/** A ComponentState backed by a message store, as the runtime builds it (`store.getState/setState` of channel and component). */
export function storeState(store: Pick<MessageStore, 'getState' | 'setState'>, channel: string, component: string): ComponentState {
  return {
    get: <T>(key: string) => store.getState<T>(channel, component, key),
    set: (key: string, value: unknown) => store.setState(channel, component, key, value),
  }
}

export interface TestContext<S extends ComponentState = ReturnType<typeof memoryState>> {
  ctx: ComponentContext
  /** Parsed log lines written so far. */
  logs: LogLine[]
  /** Every log line as raw text (to assert a token never appears). */
  rawLog: () => string
  state: S
  abort: AbortController
  cleanup: () => Promise<void>
}

/** A ComponentContext with a collected logger, a temp dataDir and in-memory state. */
export async function testContext<S extends ComponentState = ReturnType<typeof memoryState>>(options: {
  channelDir?: string
  credentials?: Record<string, TokenProvider>
  http?: HttpClient
  state?: S
  name?: string
} = {}): Promise<TestContext<S>> {
  const data = await tempDir('weir-data-')
  const lines: string[] = []
  const logs: LogLine[] = []
  const log = createLogger({
    pretty: false, level: 'debug',
    destination: { write: (line: string) => { lines.push(line); logs.push(JSON.parse(line) as LogLine) } } as NodeJS.WritableStream,
  })
  const abort = new AbortController()
  const state = options.state ?? (memoryState() as ComponentState as S)
  // A client of our own is closed in cleanup; one passed in belongs to the caller.
  const ownHttp = options.http ? undefined : httpClient()
  const http = options.http ?? ownHttp!
  const ctx: ComponentContext = {
    channel: 'test-channel',
    channelDir: options.channelDir ?? data.dir,
    name: options.name ?? 'test',
    log,
    credential(name) {
      const c = options.credentials?.[name]
      if (!c) throw new Error(`unknown credential "${name}"`)
      return c
    },
    http,
    dataDir: data.dir,
    signal: abort.signal,
    state,
  }
  return {
    ctx, logs, state, abort,
    rawLog: () => lines.join(''),
    cleanup: async () => { abort.abort(); await ownHttp?.close(); await data.cleanup() },
  }
}

/** A message as the runtime would hand it to a filter or destination. */
export function message(body: unknown, extra: Partial<Message> = {}): Message {
  return {
    id: 'msg-1', channel: 'test-channel', body,
    contentType: typeof body === 'string' ? 'text/plain' : 'application/json',
    attributes: {}, receivedAt: 1_700_000_000_000, ...extra,
  }
}

/** An emit that records inputs and answers with ids; `dedupe` recognises repeated dedupe keys like the store does. */
export function recordingEmit(options: { fail?: (input: MessageInput, n: number) => Error | undefined } = {}): Emit & { inputs: MessageInput[]; results: EmitResult[]; next: () => Promise<MessageInput> } {
  const inputs: MessageInput[] = []
  const results: EmitResult[] = []
  const keys = new Map<string, string>()
  let waiters: Array<(i: MessageInput) => void> = []
  let n = 0
  const emit = (async (input: MessageInput) => {
    const err = options.fail?.(input, n)
    if (err) { n++; throw err }
    n++
    let result: EmitResult
    if (input.dedupeKey && keys.has(input.dedupeKey)) result = { id: keys.get(input.dedupeKey)!, duplicate: true }
    else {
      const id = `m${n}`
      if (input.dedupeKey) keys.set(input.dedupeKey, id)
      result = { id, duplicate: false }
    }
    inputs.push(input)
    results.push(result)
    const w = waiters; waiters = []
    for (const f of w) f(input)
    return result
  }) as Emit & { inputs: MessageInput[]; results: EmitResult[]; next: () => Promise<MessageInput> }
  emit.inputs = inputs
  emit.results = results
  emit.next = () => new Promise((r) => waiters.push(r))
  return emit
}

/** An emit that holds every message until `release()`, as a slow durable write does; `called` resolves when the first one arrives. */
export function gatedEmit() {
  const inner = recordingEmit()
  let release!: () => void
  const gate = new Promise<void>((r) => { release = r })
  let arrived!: () => void
  const called = new Promise<void>((r) => { arrived = r })
  const emit = Object.assign(async (i: MessageInput) => { arrived(); await gate; return inner(i) }, inner)
  return { emit, release, called }
}

/** A source started by `useSourceUnderTest`, with the test context it was created in. */
export interface StartedSource<S extends Source> {
  source: S
  t: TestContext
  /** Stops the source now; the afterEach then leaves it alone. Calls `source.stop()` synchronously, as a test calling it directly would. */
  stop: () => Promise<void>
}

/**
 * For a test file: returns a `start(config, emit)` that loads `config` through the real loader
 * (asserting it is valid), creates the source `def` in a fresh testContext (with `channelDir`
 * when given) and starts it with `emit`. After each test, every source still running
 * is stopped, then every context is cleaned up. Other afterEach hooks of the file, registered
 * after this call, run before it (vitest runs after-hooks in reverse order).
 */
export function useSourceUnderTest<S extends Source = Source>(def: ComponentDefinition): (config: Record<string, unknown>, emit: Emit, channelDir?: string) => Promise<StartedSource<S>> {
  const running = new Set<S>()
  const contexts: TestContext[] = []
  afterEach(async () => {
    for (const source of [...running]) {
      running.delete(source)
      await source.stop()
    }
    for (const t of contexts.splice(0)) await t.cleanup()
  })
  return async (config, emit, channelDir) => {
    const loaded = await loadComponentConfig(def, config, { dir: channelDir })
    expect(loaded.problems).toEqual([])
    const t = await testContext(channelDir ? { channelDir } : {})
    contexts.push(t)
    const source = (await def.create(loaded.config as never, t.ctx)) as unknown as S
    await source.start(emit)
    running.add(source)
    return { source, t, stop: async () => { if (running.delete(source)) await source.stop() } }
  }
}

/** Settles with the outcome of opening a TCP connection to `port` on 127.0.0.1: 'connected' or the error code. */
export const tcpConnect = (port: number) => new Promise<string>((ok) => {
  const s = connect({ host: '127.0.0.1', port })
  s.once('connect', () => { s.destroy(); ok('connected') })
  s.once('error', (e: NodeJS.ErrnoException) => ok(e.code ?? e.message))
})

export interface RecordedRequest { method: string; url: string; headers: IncomingMessage['headers']; body: string }

/** A loopback HTTP server on port 0 recording every request; `handler` answers. */
export async function loopbackServer(handler: (req: RecordedRequest, res: ServerResponse) => void | Promise<void>): Promise<{ url: string; origin: string; requests: RecordedRequest[]; server: Server; close: () => Promise<void> }> {
  const requests: RecordedRequest[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      requests.push(r)
      Promise.resolve(handler(r, res)).catch((e) => { res.statusCode = 500; res.end(String(e)) })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url: origin + '/', origin, requests, server,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }),
  }
}

/**
 * Loads a one-component channel through the real loader and returns its problems
 * (empty when valid) or the loaded config. `pointer` is where the component sits.
 */
export async function loadComponentConfig(def: ComponentDefinition, config: unknown, options: { dir?: string; credentials?: Record<string, unknown> } = {}): Promise<{ problems: ConfigProblem[]; config?: Readonly<Record<string, unknown>> }> {
  const registry = createRegistry([def, ...helperComponents.filter((h) => h.kind !== def.kind)])
  const entry = { type: def.type, config }
  const raw: Record<string, unknown> = {
    name: 'config-test',
    credentials: options.credentials ?? {},
    source: def.kind === 'source' ? entry : { type: 'noop-source' },
    filters: def.kind === 'filter' ? [entry] : [],
    destinations: [def.kind === 'destination' ? { name: 'out', ...entry } : { name: 'out', type: 'noop-destination' }],
  }
  try {
    const ch = await loadChannelObject(raw, { file: join(options.dir ?? tmpdir(), 'channel.json'), env: {}, registry })
    const c = def.kind === 'source' ? ch.source : def.kind === 'filter' ? ch.filters[0]! : ch.destinations[0]!
    return { problems: [], config: c.config }
  } catch (e) {
    if (e instanceof ConfigError) return { problems: e.problems }
    throw e
  }
}

const emptySchema = { type: 'object', additionalProperties: false, properties: {} }
const helperComponents: ComponentDefinition[] = [
  { type: 'noop-source', kind: 'source', description: 'test', configSchema: emptySchema, create: () => ({ start() {}, stop() {} }) },
  { type: 'noop-destination', kind: 'destination', description: 'test', configSchema: emptySchema, create: () => ({ deliver: async () => ({}) }) },
]

/** Polls `cond` until it holds, bounded by `timeoutMs` (for real I/O in child processes and servers; never a timing assertion). */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not met within ${timeoutMs} ms`)
    await new Promise((ok) => setTimeout(ok, 10))
  }
}
