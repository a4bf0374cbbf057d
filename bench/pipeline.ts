/**
 * Pipeline benchmark: Weir against the physical limit of this machine, every figure a ratio
 * against a baseline measured in the same run. `npm run bench -- pipeline` or `npx tsx bench/pipeline.ts`.
 *
 * Two processes: this one holds the loopback sink API, the embedded authorization server and the
 * load generator; a child process holds the system under test, so "peak RSS" is the peak of the
 * process under test alone (its `maxRSS`). The child runs Weir from dist/, as `weir run` does (see
 * `weir` below). Scenarios, each with a warm-up before N measured messages
 * of about 1 KB and 64 in flight:
 *   (a) limit   bare undici Pool (16 connections) POSTing to the sink with a fixed bearer header (a token
 *               the authorization server issued, so it is as long as (b)'s), the same headers and body as (b)
 *   (b) dest    Weir's `http` destination, client_credentials credential (token cached), driven directly
 *   (c) relay   minimal node:http server forwarding each POST to the sink through undici
 *   (d) channel http-listener → durable store (WAL, synchronous=FULL) → map → http destination
 *   (e) jwt     (d) with private_key_jwt RS384 and 60-second tokens, on a simulated clock
 *   (f) ordered (d) with `options.orderBy: "pid"` (500 distinct keys), at the same concurrency
 *   (g) mllp    mllp-listener → durable store → hl7v2 → map → http destination, fed ~1 KB ADT^A01 over 64
 *               MLLP connections (one message in flight on each, as MLLP allows); compared with (d)
 *   (h) sender  Weir's `mllp` destination on one connection to a loopback MLLP receiver, driven directly:
 *               messages per second of one MLLP link (each waits for its ACK); no ratio
 *
 * Every figure is the median of WEIR_BENCH_ROUNDS rounds (default 3), the order of the scenarios
 * rotated each round, so that no scenario always runs first (cold machine) or last (warm). (a) and
 * (b) run as a pair, in alternating slices of their N messages (pairedScenario), and (c) to (g) as a
 * group, taking turns slice by slice (groupedScenario): the differences their ratios measure are
 * smaller than this machine's drift between two runs a minute apart.
 *
 * (e) crosses several token lifetimes without taking minutes: it has an authorization server of its
 * own, which shares a clock `sim(t) = t0 + (t - t0) × speed` with (e)'s token provider (the server's
 * `now` option and the provider's `now` option), with `speed` chosen from (d)'s measured duration so
 * that (e)'s measured slices cover about five 60-second lifetimes. Everything else (timeouts, the
 * store, the runtime, the other scenarios' tokens) runs on real time.
 *
 * (c), (d) and (e) are fed by the same generator: 64 concurrent POSTs, each awaiting its answer,
 * with at most WINDOW messages sent but not yet at the sink (for (c) that is always ≤ 64; for the
 * channel it bounds the queue so the store never refuses, as a sender honouring 503 would).
 * Latency is end to end: generator send → arrival at the sink (for (a)/(b): the request's round trip).
 *
 * Environment: WEIR_BENCH_N (default 50000), WEIR_BENCH_WARM (default 2000), WEIR_BENCH_ONLY=a,b,…
 * WEIR_BENCH_PROF=<scenario> runs that scenario's child under --cpu-prof (into WEIR_BENCH_PROF_DIR,
 * default bench/results/profiles); WEIR_BENCH_NODE_FLAGS adds Node flags to every child (for example
 * `--single-threaded-gc`, or `--import` of a heap-profiling hook; split on spaces). Only a run with
 * the defaults (none of WEIR_BENCH_N, _ONLY, _WARM, _PROF, _NODE_FLAGS, _RSS_N, _RSS_MAX_S, and at
 * least 3 rounds) writes bench/results/pipeline-<date>.json; any other writes its JSON to
 * <tmpdir>/weir-bench/.
 * WEIR_BENCH_RSS=1 runs only the RSS-flatness mode: (d) for WEIR_BENCH_RSS_N (default 500000)
 * messages or WEIR_BENCH_RSS_MAX_S seconds (default 300), reporting RSS in the first vs last fifth.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync, randomBytes, createPublicKey } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { exportJWK } from 'jose'
import { Pool } from 'undici'
import type { AuthorizationServer } from '../engine/embedded/authorization-server.ts'
import type { ComponentContext } from '../shared/component.ts'
import { build, distProblem } from '../bin/build.js'
import { benchBody, generate } from './lib/generator.ts'
import { median } from './lib/stats.ts'
import { endToEnd, startSink, type Sink } from './lib/sink.ts'
import { benchEr7, generateMllp } from './lib/mllp-generator.ts'

const SELF = fileURLToPath(import.meta.url)
const IN_FLIGHT = 64
/** (a) and (b), and the members of GROUP, are measured in this many slices each, taking turns (see pairedScenario, groupedScenario). */
const SLICES = 10
/** The relayed scenarios measured together in slices: their ratios (d/c, f/d, g/d) then compare the same minutes of the machine. */
const GROUP = ['c', 'd', 'e', 'f', 'g'] as const
type Member = (typeof GROUP)[number]
const WINDOW = 512
const body = benchBody

/** A clock that may run faster than real time (scenario e). */
interface ClockSpec { base: number; anchor: number; speed: number }
const clockNow = (c: ClockSpec) => () => c.base + (Date.now() - c.anchor) * c.speed

const pct = (xs: Float64Array | number[], p: number) => {
  const a = Float64Array.from(xs).sort()
  return a.length ? a[Math.min(a.length - 1, Math.floor(p * a.length))]! : NaN
}

/** `xs` starting at index `k` (mod its length): the order of a round, or whose turn comes first in a slice. */
const rotated = <T>(xs: readonly T[], k: number): T[] => [...xs.slice(k % xs.length), ...xs.slice(0, k % xs.length)]

/** The acknowledgement latencies of the first `count` messages a generator sent (NaN: never accepted). */
const ackLatencies = (g: { ack: Float64Array }, count: number) => Array.from(g.ack.subarray(0, count)).filter((x) => !Number.isNaN(x))

// ───────────────────────────── child: the system under test ─────────────────────────────

type Scenario = 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g' | 'h'
/** The scenarios whose system under test is fed over the network by the parent's generator. */
type Relayed = 'c' | 'd' | 'e' | 'f' | 'g'

interface ChildInit {
  scenario: Scenario
  sinkUrl: string
  tokenUrl: string
  clientId: string
  secret?: string
  keyPem?: string
  clock: ClockSpec
  n: number
  warm: number
  /** The fixed Authorization of (a) and (c): a token the authorization server issued, so the header is as long as (b)'s and (d)'s. */
  fixedAuthorization: string
  /** (h): port of the loopback MLLP receiver. */
  mllpPort?: number
  /** (a), (b): after the warm-up, measure in the slices the parent asks for (see pairedScenario). */
  sliced?: boolean
}

type FromParent = { type: 'slice'; from: number; to: number } | { type: 'figures' } | { type: 'cpu' } | { type: 'stop' }

type ToParent =
  | { type: 'ready'; port?: number }
  | { type: 'sliced' }
  | { type: 'cpu'; ms: number }
  | { type: 'done'; durationMs: number; p50: number; p99: number; cpuMs: number }
  | { type: 'stats'; maxRssKb: number; tokenRequests: number; rss: Array<[number, number, number]>; counters?: Record<string, number> }

const toParent = (m: ToParent) => process.send!(m)
/** This process's CPU time (user + system) so far, ms. */
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }

/**
 * A module of Weir in a child, as `weir run` loads it: compiled JavaScript from dist/ (the parent
 * builds it first when it is missing or older than a source), not the TypeScript sources through
 * tsx, so the figures and profiles are those of the code users run. `path` is relative to the
 * project root, without extension; every module of the system under test comes this way, so that
 * classes checked with instanceof (Secret, the errors) are dist's own.
 */
const weir = (path: string): Promise<any> => import(new URL(`../dist/${path}.js`, import.meta.url).href)

/** The modules every child loads whatever its scenario (each one's peak RSS includes them), and its logger. */
const loadChildModules = async () => {
  const { Secret }: typeof import('../shared/secret.ts') = await weir('shared/secret')
  const { createTokenProvider, TokenCache }: typeof import('../shared/oauth/index.ts') = await weir('shared/oauth/index')
  const { createHttpClient }: typeof import('../shared/http/index.ts') = await weir('shared/http/index')
  const { createLogger }: typeof import('../shared/log/index.ts') = await weir('shared/log/index')
  return { Secret, createTokenProvider, TokenCache, createHttpClient, log: createLogger({ level: 'warn', pretty: false }) }
}

/** What a scenario's set-up in the child works with: the shared modules, the parent's init and the (possibly simulated) clock. */
type ChildKit = Awaited<ReturnType<typeof loadChildModules>> & { init: ChildInit; now: () => number }

/** A started system under test: its token requests so far, and its teardown (returning a channel's counters). */
interface UnderTest {
  tokenRequests: () => number
  finish: () => Promise<Record<string, number> | undefined>
}

/** The child process: starts the system under test the parent names, then answers the parent until it says stop. */
async function child(): Promise<void> {
  // A parent that failed or was killed leaves no child behind (the RSS sampler would keep it alive).
  process.on('disconnect', () => process.exit(1))
  const init = await new Promise<ChildInit>((ok) => process.once('message', (m) => ok(m as ChildInit)))
  // [wall ms, RSS bytes, CPU ms (user + system) of this process so far]
  const rss: Array<[number, number, number]> = []
  const sampler = setInterval(() => rss.push([Date.now(), process.memoryUsage().rss, cpuMs()]), 250)
  const kit: ChildKit = { ...(await loadChildModules()), init, now: clockNow(init.clock) }
  const unit = await START_UNDER_TEST[init.scenario](kit)
  answerParent(unit, sampler, rss)
}

/** Answers the parent's CPU queries; at "stop", tears the system under test down and sends its figures. */
function answerParent(unit: UnderTest, sampler: NodeJS.Timeout, rss: Array<[number, number, number]>): void {
  process.on('message', async (m) => {
    if ((m as FromParent).type === 'cpu') return toParent({ type: 'cpu', ms: cpuMs() })
    if ((m as { type?: string }).type !== 'stop') return
    clearInterval(sampler)
    const counters = await unit.finish()
    toParent({ type: 'stats', maxRssKb: process.resourceUsage().maxRSS, tokenRequests: unit.tokenRequests(), rss, ...(counters ? { counters } : {}) })
    setTimeout(() => process.exit(0), 50)
  })
}

/** Drives `one(seq)` with 64 in flight over [from, to); returns wall time, per-request latency and this process's CPU time. */
async function drive(from: number, to: number, one: (seq: number) => Promise<void>) {
  const lat = new Float64Array(to - from)
  let next = from
  const t0 = performance.now()
  const c0 = cpuMs()
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    for (let seq = next++; seq < to; seq = next++) {
      const s = performance.now()
      await one(seq)
      lat[seq - from] = performance.now() - s
    }
  }))
  return { durationMs: performance.now() - t0, lat, cpuMs: cpuMs() - c0 }
}

/**
 * (a), (b), (h): the warm-up, then the N measured messages at once, or (init.sliced) in the slices
 * the parent asks for, alternating with another child's, until it asks for the figures.
 */
async function runDirect(init: ChildInit, one: (seq: number) => Promise<void>): Promise<void> {
  await drive(0, init.warm, one)
  if (!init.sliced) {
    const r = await drive(init.warm, init.warm + init.n, one)
    toParent({ type: 'done', durationMs: r.durationMs, p50: pct(r.lat, 0.5), p99: pct(r.lat, 0.99), cpuMs: r.cpuMs })
    return
  }
  const lats: Float64Array[] = []
  let durationMs = 0
  let cpu = 0
  process.on('message', async (m: FromParent) => {
    if (m.type === 'slice') {
      const r = await drive(m.from, m.to, one)
      lats.push(r.lat)
      durationMs += r.durationMs
      cpu += r.cpuMs
      toParent({ type: 'sliced' })
    } else if (m.type === 'figures') {
      const lat = Float64Array.from(lats.flatMap((l) => [...l]))
      toParent({ type: 'done', durationMs, p50: pct(lat, 0.5), p99: pct(lat, 0.99), cpuMs: cpu })
    }
  })
  toParent({ type: 'ready' })
}

/** The context a destination driven directly (no channel around it) gets: what a channel would give it, with no state kept. */
const directContext = (o: Pick<ComponentContext, 'name' | 'log' | 'http' | 'dataDir' | 'signal' | 'credential'>): ComponentContext =>
  ({ channel: 'bench', channelDir: o.dataDir, ...o, state: { get: async () => undefined, set: async () => {} } })

/** (a): a bare undici Pool POSTing to the sink with the fixed bearer, as (b) would. */
async function startBarePool({ init }: ChildKit): Promise<UnderTest> {
  const pool = new Pool(new URL(init.sinkUrl).origin, { connections: 16 })
  const path = new URL(init.sinkUrl).pathname
  const one = async (seq: number) => {
    const res = await pool.request({
      method: 'POST', path, body: JSON.stringify(body(seq)),
      headers: { authorization: init.fixedAuthorization, 'content-type': 'application/json', 'idempotency-key': `m${seq}:sink`, 'x-seq': String(seq) },
    })
    await res.body.text()
    if (res.statusCode !== 200) throw new Error(`sink answered ${res.statusCode}`)
  }
  await runDirect(init, one)
  return { tokenRequests: () => 0, finish: async () => { await pool.close(); return undefined } }
}

/** (b): Weir's `http` destination with a client_credentials token provider. */
async function startHttpDestination(kit: ChildKit): Promise<UnderTest> {
  const { init, log } = kit
  const { default: httpDestination }: typeof import('../components/destinations/http.ts') = await weir('components/destinations/http')
  const provider = kit.createTokenProvider('api', { tokenUrl: init.tokenUrl, clientId: init.clientId, clientAuth: { method: 'client_secret_basic', secret: new kit.Secret(init.secret!) } } as never, { cache: new kit.TokenCache(), log, now: kit.now })
  const http = kit.createHttpClient({ log, connections: 16 })
  const abort = new AbortController()
  const dataDir = mkdtempSync(join(tmpdir(), 'weir-bench-b-'))
  const config = Object.freeze({ url: init.sinkUrl, method: 'POST', headers: { 'x-seq': '{body.seq}' }, secretHeaders: {}, credential: 'api', timeoutMs: 30_000, successStatuses: ['2xx'] })
  const dest = await httpDestination.create(config as never, directContext({ name: 'sink', log, http, dataDir, signal: abort.signal, credential: () => provider }))
  const one = async (seq: number) => {
    const id = `m${seq}`
    await dest.deliver({ id, channel: 'bench', body: body(seq), contentType: 'application/json', attributes: {}, receivedAt: Date.now() }, { signal: abort.signal, idempotencyKey: `${id}:sink` })
  }
  await runDirect(init, one)
  return {
    tokenRequests: () => provider.stats().tokenRequests,
    finish: async () => { await http.close(); await provider.close(); rmSync(dataDir, { recursive: true, force: true }); return undefined },
  }
}

/** (h): Weir's `mllp` destination on one connection to the parent's loopback MLLP receiver. */
async function startMllpDestination({ init, log }: ChildKit): Promise<UnderTest> {
  const { default: mllpDestination }: typeof import('../components/destinations/mllp.ts') = await weir('components/destinations/mllp')
  const abort = new AbortController()
  const dataDir = mkdtempSync(join(tmpdir(), 'weir-bench-h-'))
  const config = Object.freeze({ host: '127.0.0.1', port: init.mllpPort!, ackTimeoutMs: 30_000, connectTimeoutMs: 10_000, connections: 1, reconnectDelayMs: 500, maxReconnectDelayMs: 30_000, retryOnError: true })
  const dest = await mllpDestination.create(config as never, directContext({
    name: 'lab', log, http: undefined as never, dataDir, signal: abort.signal, credential: () => { throw new Error('no credential') },
  }))
  const one = async (seq: number) => {
    await dest.deliver({ id: `m${seq}`, channel: 'bench', body: benchEr7(seq), contentType: 'x-application/hl7-v2+er7', attributes: {}, receivedAt: Date.now() }, { signal: abort.signal, idempotencyKey: `m${seq}:lab` })
  }
  await runDirect(init, one)
  return { tokenRequests: () => 0, finish: async () => { await dest.close?.(); rmSync(dataDir, { recursive: true, force: true }); return undefined } }
}

/** (c): a minimal node:http server forwarding each POST to the sink through undici, with the fixed bearer. */
async function startRawRelay({ init }: ChildKit): Promise<UnderTest> {
  const sink = new URL(init.sinkUrl)
  const pool = new Pool(sink.origin, { connections: 16 })
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      pool.request({
        method: 'POST', path: sink.pathname, body: Buffer.concat(chunks),
        headers: { authorization: init.fixedAuthorization, 'content-type': 'application/json', 'x-seq': String(req.headers['x-seq']) },
      }).then(async (r) => {
        await r.body.text()
        res.writeHead(r.statusCode === 200 ? 202 : 502, { 'content-type': 'application/json' }).end('{}')
      }, () => res.writeHead(502).end())
    })
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  toParent({ type: 'ready', port: (server.address() as AddressInfo).port })
  return { tokenRequests: () => 0, finish: async () => { server.closeAllConnections(); server.close(); await pool.close(); return undefined } }
}

/** The channel of (d), (e), (f) and (g), as its JSON file would say; its secret and key come from BENCH_SECRET and BENCH_KEY. */
function benchChannel(init: ChildInit) {
  const credential = init.scenario === 'e'
    ? { tokenUrl: init.tokenUrl, clientId: init.clientId, clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid: 'bench-k1', privateKey: { $env: 'BENCH_KEY' } }, scope: 'system/Patient.write' }
    : { tokenUrl: init.tokenUrl, clientId: init.clientId, clientAuth: { method: 'client_secret_basic', secret: { $env: 'BENCH_SECRET' } } }
  return {
    name: 'bench',
    credentials: { api: credential },
    source: init.scenario === 'g' ? { type: 'mllp-listener', config: { port: 0, maxConnections: 200 } } : { type: 'http-listener', config: { port: 0, path: '/in' } },
    // (g) maps the parsed HL7 v2 message to the same Encounter as (d); MSH-10 is the seq.
    filters: init.scenario === 'g'
      ? [{ type: 'hl7v2', config: { to: 'json' } }, { type: 'map', config: { jsonata: "( $pid := PID[0]; { 'resourceType': 'Encounter', 'seq': $number(MSH[0].`10`[0].`1`), 'subject': { 'identifier': $pid.`3`[0].`1`, 'display': $pid.`5`[0].`1` & '^' & $pid.`5`[0].`2` }, 'class': MSH[0].`9`[0].`2`, 'location': PV1[0].`3`[0].`1`, 'note': NTE[0].`3` } )" } }]
      : [{ type: 'map', config: { jsonata: "{ 'resourceType': 'Encounter', 'seq': seq, 'subject': { 'identifier': mrn, 'display': name }, 'class': event, 'location': ward, 'note': payload }" } }],
    destinations: [{ name: 'sink', type: 'http', config: { url: init.sinkUrl, credential: 'api', headers: { 'x-seq': '{body.seq}' } } }],
    options: { concurrency: IN_FLIGHT, queueLimit: 50_000, ...(init.scenario === 'f' ? { orderBy: 'pid' } : {}) },
  }
}

type Provider = ReturnType<ChildKit['createTokenProvider']>

/** `p`, counting in `waits` the deliveries that could not use the cached token at once (a wait for a token), and their wait. */
function countingWaits(p: Provider, waits: { count: number; ms: number }): Provider {
  const authorize = p.authorize.bind(p)
  return Object.assign(p, {
    async authorize(...args: Parameters<typeof p.authorize>) {
      const s = performance.now()
      try { return await authorize(...args) } finally { waits.count++; waits.ms += performance.now() - s }
    },
  })
}

/** (d), (e), (f), (g): the bench channel, running on a durable SQLite store. */
async function startBenchChannel(kit: ChildKit): Promise<UnderTest> {
  const { init, log } = kit
  const { loadChannelObject }: typeof import('../engine/load.ts') = await weir('engine/load')
  const { openSqliteStore }: typeof import('../shared/store/index.ts') = await weir('shared/store/index')
  const { startChannel }: typeof import('../engine/runtime/index.ts') = await weir('engine/runtime/index')
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-ch-'))
  const channel = await loadChannelObject(benchChannel(init), { file: join(dir, 'bench.json'), env: { BENCH_SECRET: init.secret ?? '', BENCH_KEY: init.keyPem ?? '' } })
  const store = openSqliteStore({ dataDir: join(dir, 'data') }) // default: WAL, synchronous=FULL
  const http = kit.createHttpClient({ log })
  const providers: Provider[] = []
  const waits = { count: 0, ms: 0 }
  const handle = await startChannel(channel, {
    store, log, dataDir: join(dir, 'data'), http,
    credential: (name, ch) => {
      const p = kit.createTokenProvider(name, ch.credentials[name] as never, { log, now: kit.now, cache: new kit.TokenCache(), dataDir: join(dir, 'data') })
      providers.push(p)
      return countingWaits(p, waits)
    },
  })
  toParent({ type: 'ready', port: handle.source.address!()!.port })
  const finish = async () => {
    const c = handle.counters()
    await handle.stop({ timeoutMs: 5000 })
    await store.close()
    await http.close()
    rmSync(dir, { recursive: true, force: true })
    return { delivered: c.delivered, errors: c.errors, refused: c.refused, tokensFetched: c.tokensFetched, tokenWaits: waits.count, tokenWaitMs: Math.round(waits.ms) }
  }
  return { tokenRequests: () => providers.reduce((a, p) => a + p.stats().tokenRequests, 0), finish }
}

/** Each scenario's system under test; (a), (b) and (h) are driven in the child itself, the others are fed by the parent. */
const START_UNDER_TEST: Record<Scenario, (kit: ChildKit) => Promise<UnderTest>> = {
  a: startBarePool, b: startHttpDestination, h: startMllpDestination, c: startRawRelay,
  d: startBenchChannel, e: startBenchChannel, f: startBenchChannel, g: startBenchChannel,
}

// ───────────────────────────── parent: sink, authorization server, generator ─────────────────────────────

interface Row {
  scenario: string
  name: string
  messages: number
  msgsPerSec: number
  p50Ms: number
  p99Ms: number
  ackP50Ms?: number
  ackP99Ms?: number
  peakRssMb: number
  /** CPU time (user + system) of the process under test per measured message, µs: less noisy than msgs/s on a shared machine. */
  cpuUsPerMsg?: number
  tokenRequests: number
  distinctTokensAtSink: number
  notes?: string
  rssFirstFifthMb?: number
  rssLastFifthMb?: number
  rssTenthsMb?: number[]
}

const NAMES: Record<Scenario, string> = {
  a: 'bare undici Pool, fixed bearer (limit)',
  b: 'Weir http destination, client_credentials',
  c: 'raw relay: node:http → undici',
  d: 'Weir channel: listener → store (FULL) → map → http',
  e: '(d) with private_key_jwt RS384, 60 s tokens',
  f: '(d) ordered by key (orderBy, 500 keys)',
  g: 'MLLP: mllp-listener → store (FULL) → hl7v2 → map → http',
  h: 'Weir mllp destination, one connection, to a loopback receiver',
}

/** The run's settings, from the environment (see the top of this file). */
function benchSettings() {
  const rssMode = process.env.WEIR_BENCH_RSS === '1'
  const n = rssMode ? Number(process.env.WEIR_BENCH_RSS_N ?? 500_000) : Number(process.env.WEIR_BENCH_N ?? 50_000)
  const warm = Number(process.env.WEIR_BENCH_WARM ?? Math.min(2000, Math.max(200, Math.floor(n / 10))))
  const maxSeconds = rssMode ? Number(process.env.WEIR_BENCH_RSS_MAX_S ?? 300) : Number(process.env.WEIR_BENCH_MAX_S ?? 150)
  const only = rssMode ? ['d'] : (process.env.WEIR_BENCH_ONLY ?? 'a,b,c,d,e,f,g,h').split(',')
  const scenarios = (['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'] as const).filter((x) => only.includes(x))
  const rounds = rssMode ? 1 : Number(process.env.WEIR_BENCH_ROUNDS ?? 3)
  // Only a full run (every scenario, default N and warm-up, at least 3 rounds, no profiler or other
  // Node flags) replaces the dated results file; any other run goes to the temp directory.
  const altered = process.env.WEIR_BENCH_NODE_FLAGS !== undefined || process.env.WEIR_BENCH_PROF !== undefined || process.env.WEIR_BENCH_WARM !== undefined
  const partial = altered || (rssMode ? process.env.WEIR_BENCH_RSS_N !== undefined || process.env.WEIR_BENCH_RSS_MAX_S !== undefined : process.env.WEIR_BENCH_ONLY !== undefined || process.env.WEIR_BENCH_N !== undefined || rounds < 3)
  return { rssMode, n, warm, total: warm + n, maxSeconds, only, scenarios, rounds, partial }
}
type Settings = ReturnType<typeof benchSettings>

/** What the scenarios share: the settings, the sink, the authorization servers with their clients, and the clocks. */
interface Bench {
  settings: Settings
  /** Records the arrival time of each message (by x-seq) and the distinct Authorization values. */
  sink: Sink
  /** The authorization server of every scenario but (e), on real time. */
  as: AuthorizationServer
  /** (e)'s authorization server (client bench-jwt), on `fastClock`. */
  fastAs: AuthorizationServer
  /** The secret of the client_credentials clients (bench-cc and one per GROUP member). */
  secret: string
  /** (e)'s private key; its public JWK is registered for bench-jwt. */
  keyPem: string
  /** Real time, for `as` and the children's token providers. */
  clock: ClockSpec
  /** (e)'s clock, shared by `fastAs` and (e)'s token provider: set going by startFastClock. */
  fastClock: ClockSpec
  /** The bearer (a) and (c) send, as long as the one (b) and (d) get: a real token, fetched once. */
  fixedAuthorization: string
  /** The duration of the last (d) measured, ms (0 before): (e) sets its clock's speed from it. */
  dDurationMs: number
}

/** Starts the sink and the authorization server, registers the clients and fetches the fixed bearer. */
async function startFixtures(settings: Settings): Promise<Bench> {
  // A group of relayed scenarios (groupedScenario) gives each member its own seq range.
  const sink = await startSink(settings.total * GROUP.length)
  const clock: ClockSpec = { base: Date.now(), anchor: Date.now(), speed: 1 }
  const { startAuthorizationServer } = await import('../engine/embedded/authorization-server.ts')
  const as = await startAuthorizationServer({ now: clockNow(clock), tokenLifetimeSec: 300 })
  const fastClock: ClockSpec = { ...clock }
  const fastAs = await startAuthorizationServer({ now: clockNow(fastClock), tokenLifetimeSec: 60 })
  const secret = randomBytes(24).toString('base64url')
  const keyPem = await registerClients(as, fastAs, secret)
  const fixedAuthorization = await fetchFixedAuthorization(as, secret)
  return { settings, sink, as, fastAs, secret, keyPem, clock, fastClock, fixedAuthorization, dDurationMs: 0 }
}

/** Registers bench-cc and bench-<member> for each other GROUP member on `as`, and bench-jwt (60-second tokens) with a new key on `fastAs`; returns that key. */
async function registerClients(as: AuthorizationServer, fastAs: AuthorizationServer, secret: string): Promise<string> {
  as.registerClient({ clientId: 'bench-cc', authMethod: 'client_secret_basic', secret })
  // In a group each member has a client of its own, so the token requests are counted per member.
  for (const m of GROUP) if (m !== 'e') as.registerClient({ clientId: `bench-${m}`, authMethod: 'client_secret_basic', secret })
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const jwk = { ...(await exportJWK(createPublicKey(privateKey))), alg: 'RS384', kid: 'bench-k1', use: 'sig' }
  fastAs.registerClient({ clientId: 'bench-jwt', authMethod: 'private_key_jwt', jwks: { keys: [jwk] }, tokenLifetimeSec: 60 })
  return keyPem
}

/** The client each relayed scenario uses: (e)'s on its own server, one per other group member, bench-cc alone. */
const clientOf = (sc: Relayed, grouped: boolean) => (sc === 'e' ? 'bench-jwt' : grouped ? `bench-${sc}` : 'bench-cc')

/**
 * Sets (e)'s clock going, fast enough that a run as long as (d)'s last measured one (or 30 s) covers
 * about five 60-second token lifetimes, from where it stands (it never goes back); returns a reading
 * of it.
 */
function startFastClock(b: Bench): () => number {
  const { fastClock } = b
  const speed = Math.max(1, (5 * 60_000) / Math.max(1000, b.dDurationMs || 30_000))
  fastClock.base = clockNow(fastClock)()
  fastClock.anchor = Date.now()
  fastClock.speed = speed
  return clockNow(fastClock)
}

/** The Authorization header of (a) and (c): a token bench-cc gets from the authorization server. */
async function fetchFixedAuthorization(as: AuthorizationServer, secret: string): Promise<string> {
  const res = await fetch(as.tokenUrl, {
    method: 'POST', body: new URLSearchParams({ grant_type: 'client_credentials' }),
    headers: { authorization: `Basic ${Buffer.from(`bench-cc:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
  })
  const json = (await res.json()) as { access_token?: string }
  if (!json.access_token) throw new Error(`token endpoint answered ${res.status}`)
  return `Bearer ${json.access_token}`
}

/** The tokens `clientId`'s authorization server has issued to it so far. */
const tokenCount = (b: Bench, clientId: string) => Object.values((clientId === 'bench-jwt' ? b.fastAs : b.as).counts().byClient[clientId] ?? {}).reduce((a, x) => a + x, 0)

/** What the child of `scenario` is told: the fixtures' addresses, the client it uses and the run's size, plus `more`. */
const childInit = (b: Bench, scenario: Scenario, clientId: string, more: Partial<ChildInit> = {}): ChildInit => ({
  scenario, sinkUrl: b.sink.url, tokenUrl: (scenario === 'e' ? b.fastAs : b.as).tokenUrl, clientId, secret: b.secret, clock: scenario === 'e' ? b.fastClock : b.clock, n: b.settings.n, warm: b.settings.warm,
  fixedAuthorization: b.fixedAuthorization, ...more,
})

/**
 * Forks the child process of `init.scenario` (under --cpu-prof if WEIR_BENCH_PROF names it) and
 * returns how to talk to it: `receive` waits for a message of a type, `stop` for its final stats.
 */
function startChild(b: Bench, init: ChildInit) {
  const prof = process.env.WEIR_BENCH_PROF === init.scenario ? ['--cpu-prof', '--cpu-prof-dir', process.env.WEIR_BENCH_PROF_DIR ?? 'bench/results/profiles'] : []
  const cp: ChildProcess = fork(SELF, ['--child'], { execArgv: ['--import', 'tsx', ...prof, ...(process.env.WEIR_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, WEIR_LOG_LEVEL: 'warn' } })
  const inbox: ToParent[] = []
  let wake: (() => void) | undefined
  cp.on('message', (m) => { inbox.push(m as ToParent); wake?.() })
  const receive = async <T extends ToParent['type']>(type: T, timeoutMs = b.settings.maxSeconds * 1000 + 60_000): Promise<Extract<ToParent, { type: T }>> => {
    const end = Date.now() + timeoutMs
    for (;;) {
      const i = inbox.findIndex((m) => m.type === type)
      if (i >= 0) return inbox.splice(i, 1)[0] as Extract<ToParent, { type: T }>
      const exited = cp.exitCode !== null || cp.signalCode !== null
      if (exited || Date.now() > end) throw new Error(`scenario ${init.scenario}: child ${exited ? `exited (${cp.exitCode ?? cp.signalCode})` : 'timed out'} before "${type}"`)
      await new Promise<void>((ok) => { wake = ok; setTimeout(ok, 500) })
    }
  }
  cp.send(init)
  const post = (m: FromParent) => cp.send(m)
  /** The child's CPU time so far (ms, user + system, all threads). */
  const cpu = async () => {
    post({ type: 'cpu' })
    return (await receive('cpu')).ms
  }
  const stop = async () => {
    cp.send({ type: 'stop' })
    const s = await receive('stats', 30_000)
    await new Promise<void>((ok) => (cp.exitCode !== null ? ok() : cp.once('exit', () => ok())))
    return s
  }
  return { receive, post, cpu, stop }
}
type BenchChild = ReturnType<typeof startChild>

/** 64 concurrent POSTs to `url`, each awaiting its answer; at most WINDOW sent but not at the sink. */
const sendHttp = (b: Bench, url: string, from: number, to: number, deadline: number) => generate({ url, from, to, deadline, sink: b.sink, inFlight: IN_FLIGHT, window: WINDOW })

/** (a), (b) or (h) alone: the child warms up and measures its N messages at once. */
async function directScenario(b: Bench, scenario: 'a' | 'b' | 'h'): Promise<Row[]> {
  const { sink, settings: { n } } = b
  sink.reset()
  const tokens0 = tokenCount(b, 'bench-cc')
  const lab = scenario === 'h' ? await (await import('../engine/embedded/mllp-receiver.ts')).startMllpReceiver() : undefined
  const c = startChild(b, childInit(b, scenario, 'bench-cc', lab ? { mllpPort: lab.port } : {}))
  const done = await c.receive('done')
  const stats = await c.stop()
  await lab?.close()
  return [{
    scenario, name: NAMES[scenario], messages: n, msgsPerSec: (n / done.durationMs) * 1000, p50Ms: done.p50, p99Ms: done.p99,
    peakRssMb: stats.maxRssKb / 1024, cpuUsPerMsg: (done.cpuMs * 1000) / n, tokenRequests: tokenCount(b, 'bench-cc') - tokens0, distinctTokensAtSink: sink.authorizations().length,
    ...(sink.duplicates ? { notes: `${sink.duplicates} duplicates` } : {}),
  }]
}

/** Slice `i` of the N measured messages (after the warm-up), of SLICES. */
const sliceOf = ({ warm, n }: Settings, i: number) => ({ from: warm + Math.floor((i * n) / SLICES), to: warm + Math.floor(((i + 1) * n) / SLICES) })

/**
 * (a) and (b) together: both children warm up, then measure in SLICES alternating slices of the N
 * messages (first, second, second, first, …, the first being members[0]), so that the two see the same machine: on this
 * shared 2-core machine a scenario's rate drifts by 30% or more between runs a minute apart,
 * more than the difference b/a measures. Each figure is summed over its own slices.
 */
async function pairedScenario(b: Bench, members: Array<'a' | 'b'>): Promise<Row[]> {
  const { sink, settings: { n } } = b
  sink.reset()
  const tokens0 = tokenCount(b, 'bench-cc')
  const children: Partial<Record<'a' | 'b', BenchChild>> = {}
  for (const sc of members) {
    const c = startChild(b, childInit(b, sc, 'bench-cc', { sliced: true }))
    await c.receive('ready')
    children[sc] = c
  }
  for (let i = 0; i < SLICES; i++) {
    const { from, to } = sliceOf(b.settings, i)
    for (const sc of rotated(members, i)) {
      children[sc]!.post({ type: 'slice', from, to })
      await children[sc]!.receive('sliced')
    }
  }
  const tokenRequests = tokenCount(b, 'bench-cc') - tokens0
  const rows: Row[] = []
  for (const sc of ['a', 'b'] as const) {
    const c = children[sc]!
    c.post({ type: 'figures' })
    const done = await c.receive('done')
    const stats = await c.stop()
    rows.push({
      scenario: sc, name: NAMES[sc], messages: n, msgsPerSec: (n / done.durationMs) * 1000, p50Ms: done.p50, p99Ms: done.p99,
      peakRssMb: stats.maxRssKb / 1024, cpuUsPerMsg: (done.cpuMs * 1000) / n,
      // (a) sends the fixed token; every other token at the sink is (b)'s.
      tokenRequests: sc === 'a' ? 0 : tokenRequests,
      distinctTokensAtSink: sc === 'a' ? 1 : sink.authorizations().filter((x) => x !== b.fixedAuthorization).length,
      notes: `measured in ${SLICES} slices alternating with (${sc === 'a' ? 'b' : 'a'})`,
    })
  }
  return rows
}

/**
 * Starts a relayed scenario's child and warms it up with seqs [base, base + warm); returns it with
 * a sender of seqs to it (over HTTP, or MLLP for (g)) bounded by `deadline`.
 */
async function startRelayed(b: Bench, scenario: Relayed, clientId: string, base: number, deadline: number) {
  const { sink, settings: { warm } } = b
  const child = startChild(b, childInit(b, scenario, clientId, scenario === 'e' ? { keyPem: b.keyPem } : {}))
  const { port } = await child.receive('ready')
  const url = `http://127.0.0.1:${port}${scenario === 'c' ? '/' : '/in'}`
  const send = (from: number, to: number) => scenario === 'g'
    ? generateMllp({ port: port!, from, to, deadline, sink, inFlight: IN_FLIGHT, window: WINDOW })
    : sendHttp(b, url, from, to, deadline)
  await send(base, base + warm)
  const warmMissing = await sink.drained(base, base + warm, deadline)
  if (warmMissing) throw new Error(`scenario ${scenario}: ${warmMissing} warm-up messages never reached the sink`)
  return { child, send }
}

/** What went wrong or was waited for while a relayed scenario delivered its `sent` measured messages (of `n`). */
const deliveryNotes = (n: number, o: { missing: number; refused: number; sent: number; counters: Record<string, number> | undefined }) => [
  o.missing ? `${o.missing} LOST` : '', o.refused ? `${o.refused} refused sends retried` : '', o.sent < n ? `time limit: ${o.sent} of ${n} sent` : '',
  o.counters?.errors ? `${o.counters.errors} messages in error` : '',
  o.counters?.tokenWaits ? `${o.counters.tokenWaits} deliveries waited for a token (${o.counters.tokenWaitMs} ms in all)` : '',
]

/** A member of a group, warmed up, with its seq range and its figures summed over the slices measured so far. */
async function startMember(b: Bench, sc: Member, k: number, deadline: number) {
  const clientId = clientOf(sc, true)
  const tokens0 = tokenCount(b, clientId)
  const base = k * b.settings.total
  // (e)'s clock goes from its start (warm-up included) to the end of the group.
  const simStart = sc === 'e' ? startFastClock(b)() : undefined
  const { child, send } = await startRelayed(b, sc, clientId, base, deadline)
  return { sc, clientId, tokens0, simStart, child, base, send, durationMs: 0, intervals: 0, cpuMs: 0, sent: 0, missing: 0, refused: 0, lat: [] as number[], ack: [] as number[] }
}
type MemberRun = Awaited<ReturnType<typeof startMember>>

/**
 * The members of GROUP present, together: every process warms up, then each sends its N messages
 * in SLICES slices, taking turns (the member that starts rotates with the slice). Each figure sums
 * that member's own slices. The rate is arrivals over the time from a slice's first arrival at the
 * sink to its last, so that a member's latency (the queue of a durable channel: about 120 ms) is
 * not counted once per slice. CPU is its process's over the slice. Member k sends seqs
 * k × total + [0, total).
 */
async function groupedScenario(b: Bench, members: Member[]): Promise<Row[]> {
  b.sink.reset()
  const deadline = Date.now() + b.settings.maxSeconds * 1000 * members.length
  const runs: MemberRun[] = []
  for (const [k, sc] of members.entries()) runs.push(await startMember(b, sc, k, deadline))
  for (let i = 0; i < SLICES; i++) {
    const { from, to } = sliceOf(b.settings, i)
    for (const r of rotated(runs, i)) await measureSlice(b, r, r.base + from, r.base + to, deadline)
  }
  const rows: Row[] = []
  for (const r of runs) rows.push(await stopMember(b, r, runs))
  return rows
}

/** Member `r` sends seqs [from, to) and adds that slice to its figures. */
async function measureSlice(b: Bench, r: MemberRun, from: number, to: number, deadline: number): Promise<void> {
  const { sink } = b
  const cpu0 = await r.child.cpu()
  const t0 = performance.now()
  const g = await r.send(from, to)
  const missing = await sink.drained(from, g.lastSent, deadline + 30_000)
  const { lastArrival, latencies } = endToEnd(sink, from, g.lastSent, g.sent, t0)
  let firstArrival = lastArrival
  for (let seq = from; seq < g.lastSent; seq++) firstArrival = Math.min(firstArrival, sink.arrivedAt(seq) || lastArrival)
  r.durationMs += lastArrival - firstArrival
  r.intervals += g.lastSent - from - missing - 1
  r.cpuMs += (await r.child.cpu()) - cpu0
  r.sent += g.lastSent - from
  r.missing += missing
  r.refused += g.refused
  r.lat.push(...latencies)
  r.ack.push(...ackLatencies(g, g.lastSent - from))
}

/** Stops member `r`'s child and makes its row from the slices it measured. */
async function stopMember(b: Bench, r: MemberRun, runs: MemberRun[]): Promise<Row> {
  const stats = await r.child.stop()
  const delivered = r.sent - r.missing
  if (r.sc === 'd') b.dDurationMs = r.durationMs
  const notes = [
    `measured in ${SLICES} slices taking turns with (${GROUP.filter((m) => m !== r.sc && runs.some((x) => x.sc === m)).join(', ')})`,
    r.simStart !== undefined ? fastClockNote(b, r.simStart, true) : '',
    ...deliveryNotes(b.settings.n, { missing: r.missing, refused: r.refused, sent: r.sent, counters: stats.counters }),
  ].filter(Boolean).join('; ')
  const tokenRequests = tokenCount(b, r.clientId) - r.tokens0
  return {
    scenario: r.sc, name: NAMES[r.sc], messages: delivered, msgsPerSec: (r.intervals / r.durationMs) * 1000, p50Ms: pct(r.lat, 0.5), p99Ms: pct(r.lat, 0.99),
    ackP50Ms: pct(r.ack, 0.5), ackP99Ms: pct(r.ack, 0.99), peakRssMb: stats.maxRssKb / 1024, cpuUsPerMsg: (r.cpuMs * 1000) / delivered,
    // (c) sends the fixed token; the sink's tokens are not told apart by member, so the members' own requests stand in.
    tokenRequests, distinctTokensAtSink: r.sc === 'c' ? 1 : tokenRequests, notes,
  }
}

/** How much simulated time (e)'s clock covered since `simStart`, in 60-second token lifetimes. */
function fastClockNote(b: Bench, simStart: number, grouped: boolean): string {
  const simulated = clockNow(b.fastClock)() - simStart
  return `simulated ${(simulated / 1000).toFixed(0)} s at ×${b.fastClock.speed.toFixed(1)} = ${(simulated / 60_000).toFixed(1)} token lifetimes (whole run incl. warm-up${grouped ? ' and the other members\' turns' : ''})`
}

type RssSample = [number, number, number]

/** Mean RSS (MB) of the first or last fifth of `samples`; NaN under 10 samples. */
const fifthMb = (samples: RssSample[], which: 'first' | 'last') => {
  if (samples.length < 10) return NaN
  const k = Math.max(1, Math.floor(samples.length / 5))
  const part = which === 'first' ? samples.slice(0, k) : samples.slice(-k)
  return part.reduce((a, [, r]) => a + r, 0) / part.length / 2 ** 20
}

/** Mean RSS (MB) of each tenth of `samples`, to tell growth that levels off from growth that goes on; empty under 20 samples. */
const tenthsMb = (samples: RssSample[]) => samples.length < 20 ? [] : Array.from({ length: 10 }, (_, i) => {
  const part = samples.slice(Math.floor((i * samples.length) / 10), Math.floor(((i + 1) * samples.length) / 10))
  return Math.round((part.reduce((a, [, r]) => a + r, 0) / part.length / 2 ** 20) * 10) / 10
})

/** The child's CPU ms at wall time `t`, from the sample nearest it. */
const cpuAt = (samples: RssSample[], t: number) => samples.reduce((best, x) => (Math.abs(x[0] - t) < Math.abs(best[0] - t) ? x : best), samples[0] ?? [t, 0, NaN])[2]

/** (c), (d), (e), (f) or (g) alone: the generator feeds the child its N messages after the warm-up. */
async function relayedScenario(b: Bench, scenario: Relayed): Promise<Row[]> {
  const { sink, settings: { n, warm, total, maxSeconds, rssMode } } = b
  sink.reset()
  const clientId = clientOf(scenario, false)
  const tokens0 = tokenCount(b, clientId)
  const simStart = scenario === 'e' ? startFastClock(b)() : undefined
  const deadline = Date.now() + maxSeconds * 1000
  const { child: c, send } = await startRelayed(b, scenario, clientId, 0, deadline)
  const t0 = performance.now()
  const wallStart = Date.now()
  const g = await send(warm, total)
  const missing = await sink.drained(warm, g.lastSent, deadline + 30_000)
  const sentCount = g.lastSent - warm
  const delivered = sentCount - missing
  const { lastArrival, latencies: lat } = endToEnd(sink, warm, g.lastSent, g.sent, t0)
  const durationMs = lastArrival - t0
  const stats = await c.stop()
  const rssSamples = stats.rss.filter(([t]) => t >= wallStart && t <= wallStart + durationMs)
  // CPU of the process under test over the measured window, from the samples nearest its ends.
  const windowCpuMs = cpuAt(stats.rss, wallStart + durationMs) - cpuAt(stats.rss, wallStart)
  const ackLat = ackLatencies(g, sentCount)
  const notes = [
    sink.duplicates ? `${sink.duplicates} duplicate arrivals` : '',
    simStart !== undefined ? fastClockNote(b, simStart, false) : '',
    ...deliveryNotes(n, { missing, refused: g.refused, sent: sentCount, counters: stats.counters }),
  ].filter(Boolean).join('; ')
  if (scenario === 'd') b.dDurationMs = durationMs
  return [{
    scenario, name: NAMES[scenario], messages: delivered, msgsPerSec: (delivered / durationMs) * 1000, p50Ms: pct(lat, 0.5), p99Ms: pct(lat, 0.99),
    ackP50Ms: pct(ackLat, 0.5), ackP99Ms: pct(ackLat, 0.99),
    peakRssMb: stats.maxRssKb / 1024, cpuUsPerMsg: (windowCpuMs * 1000) / delivered, tokenRequests: tokenCount(b, clientId) - tokens0, distinctTokensAtSink: sink.authorizations().length,
    ...(notes ? { notes } : {}),
    ...(rssMode ? { rssFirstFifthMb: fifthMb(rssSamples, 'first'), rssLastFifthMb: fifthMb(rssSamples, 'last'), rssTenthsMb: tenthsMb(rssSamples) } : {}),
  }]
}

/** Scenario `sc` in a round whose rows so far are `done`: its rows, or its pair's or group's, or none if those ran already. */
async function runScenario(b: Bench, sc: Scenario, done: Row[]): Promise<Row[]> {
  const { only } = b.settings
  // The scenarios measured side by side, of those asked for (the memory check asks for (d) alone).
  const pair = (['a', 'b'] as const).filter((m) => only.includes(m))
  const group = GROUP.filter((m) => only.includes(m))
  // A pair or group runs once per round, when the rotated order reaches its first member, which starts.
  const together: readonly Scenario[] | undefined = [pair, group].find((set) => set.length > 1 && (set as readonly Scenario[]).includes(sc))
  if (together) {
    if (done.some((r) => (together as readonly string[]).includes(r.scenario))) return []
    const members = rotated(together, together.indexOf(sc))
    return together === pair ? pairedScenario(b, members as Array<'a' | 'b'>) : groupedScenario(b, members as Member[])
  }
  if (sc === 'a' || sc === 'b' || sc === 'h') return directScenario(b, sc)
  return relayedScenario(b, sc)
}

/** Every round's rows; each round runs the scenarios asked for in the order of the one before, rotated by one. */
async function runRounds(b: Bench): Promise<Row[][]> {
  const { scenarios, rounds } = b.settings
  const byRound: Row[][] = []
  for (let r = 0; r < rounds; r++) {
    const rows: Row[] = []
    const order = rotated(scenarios, r)
    console.log(`round ${r + 1} of ${rounds}: ${order.join(' ')}`)
    for (const sc of order) rows.push(...(await runScenario(b, sc, rows)))
    byRound.push(rows)
  }
  return byRound
}

const RATIO_PAIRS = { 'b/a': ['b', 'a'], 'd/c': ['d', 'c'], 'e/d': ['e', 'd'], 'f/d': ['f', 'd'], 'g/d': ['g', 'd'] } as const
type RatioName = keyof typeof RATIO_PAIRS
type Ratios = Partial<Record<RatioName, number>>
const TARGETS: Record<RatioName, number> = { 'b/a': 0.9, 'd/c': 0.6, 'e/d': 0.95, 'f/d': 0.8, 'g/d': 0.8 }
const rowOf = (rs: Row[], x: string) => rs.find((row) => row.scenario === x)

/** Each round's ratios of msgs/s, of the pairs both present that round. */
const ratiosOf = (rs: Row[]): Ratios => Object.fromEntries(Object.entries(RATIO_PAIRS).flatMap(([k, [x, y]]) => {
  const rx = rowOf(rs, x)
  const ry = rowOf(rs, y)
  return rx && ry ? [[k, rx.msgsPerSec / ry.msgsPerSec]] : []
}))

/** The rounds' notes: what every round says once, then what each round says of its own (no `|`: the table is Markdown). */
function notesOf(rs: Row[]): string {
  const parts = rs.map((x) => (x.notes ?? '').split('; ').filter(Boolean))
  const common = (parts[0] ?? []).filter((p) => parts.every((ps) => ps.includes(p)))
  const own = parts.map((ps) => ps.filter((p) => !common.includes(p)))
  if (own.every((o) => o.length === 0)) return common.join('; ')
  return [...common, ...own.map((o, i) => `round ${i + 1}: ${o.join('; ') || '–'}`)].join(' / ')
}

/** A scenario's row for the table: the median of each figure over its rounds `rs`. */
function medianRow(rs: Row[]): Row {
  const m = (f: (row: Row) => number | undefined) => median(rs.map((row) => f(row) ?? NaN))
  return {
    ...rs[0]!,
    msgsPerSec: m((x) => x.msgsPerSec), p50Ms: m((x) => x.p50Ms), p99Ms: m((x) => x.p99Ms),
    ...(rs[0]!.ackP50Ms !== undefined ? { ackP50Ms: m((x) => x.ackP50Ms), ackP99Ms: m((x) => x.ackP99Ms) } : {}),
    peakRssMb: m((x) => x.peakRssMb), cpuUsPerMsg: m((x) => x.cpuUsPerMsg),
    tokenRequests: Math.max(...rs.map((x) => x.tokenRequests)), distinctTokensAtSink: Math.max(...rs.map((x) => x.distinctTokensAtSink)),
    notes: notesOf(rs),
  }
}

/** The table (per scenario, the median of each figure over the rounds), the ratios per round and their medians. */
function summarize(byRound: Row[][], scenarios: readonly Scenario[]) {
  const roundRatios = byRound.map(ratiosOf)
  const ratios: Ratios = Object.fromEntries(Object.keys(RATIO_PAIRS).flatMap((k) => {
    const xs = roundRatios.map((rr) => rr[k as RatioName]).filter((x): x is number => x !== undefined)
    return xs.length ? [[k, median(xs)]] : []
  }))
  const rows = scenarios.map((sc) => medianRow(byRound.map((rr) => rowOf(rr, sc)!).filter(Boolean)))
  return { rows, ratios, roundRatios }
}
type Summary = ReturnType<typeof summarize>

const fixed = (x: number | undefined, d = 1) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d))

/** Prints the table, the ratios against their targets, (e)'s tokens and, in the memory mode, the RSS flatness. */
function printReport({ n, warm, rounds, rssMode }: Settings, { rows, ratios, roundRatios }: Summary, elapsedS: number): void {
  console.log(`pipeline benchmark: ${n.toLocaleString('en')} messages of ~1 KB (after ${warm} warm-up), ${IN_FLIGHT} in flight, ${rounds} round(s), median of each figure, ${elapsedS.toFixed(0)} s`)
  console.log('')
  console.log('| | scenario | msgs/s | p50 ms | p99 ms | ack p50/p99 ms | peak RSS MB | CPU µs/msg | token requests | notes |')
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---|')
  for (const r of rows) {
    console.log(`| ${r.scenario} | ${r.name} | ${Math.round(r.msgsPerSec)} | ${fixed(r.p50Ms)} | ${fixed(r.p99Ms)} | ${r.ackP50Ms !== undefined ? `${fixed(r.ackP50Ms)} / ${fixed(r.ackP99Ms)}` : '–'} | ${fixed(r.peakRssMb, 0)} | ${fixed(r.cpuUsPerMsg, 0)} | ${r.tokenRequests} | ${r.notes ?? ''} |`)
  }
  console.log('')
  for (const [k, v] of Object.entries(ratios)) {
    const t = TARGETS[k as RatioName]
    console.log(`ratio ${k} = ${v.toFixed(2)} median of [${roundRatios.map((rr) => fixed(rr[k as RatioName], 2)).join(', ')}] (target ≥ ${t}: ${v >= t ? 'met' : 'NOT met'})`)
  }
  const e = rowOf(rows, 'e')
  if (e) console.log(`(e) token requests ${e.tokenRequests} at most per round, distinct tokens seen by the sink ${e.distinctTokensAtSink}`)
  if (rssMode) {
    const d = rowOf(rows, 'd')!
    const growth = d.rssLastFifthMb! / d.rssFirstFifthMb! - 1
    console.log(`RSS flatness over ${d.messages.toLocaleString('en')} messages: first fifth ${fixed(d.rssFirstFifthMb)} MB, last fifth ${fixed(d.rssLastFifthMb)} MB (${(growth * 100).toFixed(1)}%; target within 10%: ${Math.abs(growth) <= 0.1 ? 'met' : 'NOT met'})`)
    if (d.rssTenthsMb?.length) console.log(`RSS by tenth of the run, MB: ${d.rssTenthsMb.join(', ')}`)
  }
}

/** Writes the run's JSON: a full run to bench/results/pipeline-<date>.json, a partial one to <tmpdir>/weir-bench/. */
function writeResults(s: Settings, { rows, ratios, roundRatios }: Summary, byRound: Row[][], elapsedS: number): void {
  const out = s.partial ? join(tmpdir(), 'weir-bench') : join(fileURLToPath(new URL('.', import.meta.url)), 'results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `pipeline${s.rssMode ? '-rss' : ''}${s.partial ? `-${s.only.join('')}-${s.n}` : ''}-${new Date().toISOString().slice(0, s.partial ? 19 : 10).replace(/:/g, '')}.json`)
  writeFileSync(file, JSON.stringify({
    date: new Date().toISOString(), node: process.version, cpus: cpus().length,
    messages: s.n, warmup: s.warm, inFlight: IN_FLIGHT, window: WINDOW, rounds: s.rounds, elapsedSeconds: elapsedS, rows, ratios, roundRatios, targets: TARGETS, byRound,
  }, null, 2) + '\n')
  console.log(`written ${file}`)
}

/** The parent process: starts the fixtures, runs the rounds, then reports and writes the results. */
async function parent(): Promise<void> {
  const settings = benchSettings()
  if (distProblem() && build() !== 0) throw new Error('npm run build failed: the children run Weir from dist/')
  const b = await startFixtures(settings)
  const started = Date.now()
  const byRound = await runRounds(b)
  const elapsedS = (Date.now() - started) / 1000
  await Promise.all([b.as.close(), b.fastAs.close(), b.sink.close()])
  const summary = summarize(byRound, settings.scenarios)
  printReport(settings, summary, elapsedS)
  writeResults(settings, summary, byRound, elapsedS)
}

if (process.argv.includes('--child')) await child()
else await parent()
