/**
 * Peer benchmark: Weir's durable channel against Node-RED 4.1 with node-red-contrib-oauth2, and both against
 * a raw relay, in one run. `npm run bench:peers` (installs bench/peers/ on first use, then runs this file).
 *
 * This process holds the loopback sink API, the embedded authorization server and the load generator; each
 * system under test runs in its own child process, started the way its users start it, and its CPU time
 * (over the measured window) and peak RSS (VmHWM) are read from /proc, so they are its alone:
 *   (c) raw relay  bench/lib/relay.ts: node:http → undici with a fixed bearer (the baseline)
 *   (d) Weir       `node bin/weir.js run bench.json --data-dir …`: http-listener → SQLite store (WAL,
 *                  synchronous=FULL) → map (JSONata) → http destination with a client_credentials credential;
 *                  answers 202 after the durable write, delivers afterwards
 *   (n) Node-RED   bench/peers/node-red.mjs embeds Node-RED; flow: http in → oauth2 (client_credentials,
 *                  token reused until it expires) → function (bearer and x-seq headers) → http request
 *                  (keep-alive) → http response 202 after the delivery
 * Every variant gets the same generator (64 in flight, ~1 KB JSON, at most 512 messages sent but not yet at the
 * sink), a warm-up, then N measured messages; its run ends when the sink has every message. Each round runs
 * every variant, the order rotated from round to round; the table shows the median of the rounds.
 *
 * Environment: WEIR_PEERS_N (default 50000), WEIR_PEERS_ROUNDS (default 3), WEIR_PEERS_WARM (default N/10,
 * 200 … 2000), WEIR_PEERS_ONLY=c,d,n, WEIR_PEERS_MAX_S (per variant and round, default 300). A run with the
 * defaults writes bench/results/peers-<date>.json; any other run writes its JSON to <tmpdir>/weir-bench/.
 * Linux only (/proc).
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { startAuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { generate } from '../lib/generator.ts'
import { processUsage } from '../lib/process-usage.ts'
import { endToEnd, startSink, type Sink } from '../lib/sink.ts'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '..', '..')
const VARIANTS = ['c', 'd', 'n'] as const
type Variant = (typeof VARIANTS)[number]

const NAMES: Record<Variant, string> = {
  c: 'raw relay: node:http → undici (baseline)',
  d: 'Weir `weir run`: http-listener → store (FULL) → map → http',
  n: 'Node-RED: http in → oauth2 → function → http request → 202',
}
const CLIENT_IDS: Record<Variant, string> = { c: 'bench-relay', d: 'bench-weir', n: 'bench-node-red' }

/** One variant in one round. */
interface Measurement {
  variant: Variant
  round: number
  messages: number
  msgsPerSec: number
  /** CPU time (user + system, all threads) of the process under test over the measured window, per message. */
  cpuUsPerMsg: number
  /** Peak RSS of the process under test over its whole life (VmHWM). */
  peakRssMb: number
  /** Token requests the authorization server answered for this variant's client, warm-up included. */
  tokenRequests: number
  distinctTokensAtSink: number
  /** End to end: generator send → arrival at the sink. */
  p50Ms: number
  p99Ms: number
  notes?: string
}

interface Context {
  sink: Sink
  tokenUrl: string
  secret: string
  fixedAuthorization: string
  n: number
  warm: number
  maxSeconds: number
  tokenCount(clientId: string): number
  /** How many of these Authorization values the authorization server does not accept (now). */
  invalidTokens(authorizations: string[]): Promise<number>
}

const pct = (xs: number[], p: number) => {
  const a = Float64Array.from(xs).sort()
  return a.length ? a[Math.min(a.length - 1, Math.floor(p * a.length))]! : NaN
}
const median = (xs: number[]) => {
  const a = Float64Array.from(xs).sort()
  const mid = a.length >> 1
  return a.length % 2 ? a[mid]! : (a[mid - 1]! + a[mid]!) / 2
}

// ───────────────────────────── the systems under test ─────────────────────────────

interface System { pid: number; url: string; stderrLines(): number; stop(): Promise<void> }

/**
 * Spawns a system under test and waits (at most 60 s) until `ready` finds its URL in a JSON line of its
 * stdout. Its output keeps being read so the child never blocks on a full pipe; the last 2,000 characters
 * of stderr and of non-JSON stdout go into the error when it fails to start.
 */
async function launch(variant: Variant, args: string[], env: Record<string, string>, cwd: string, ready: (line: Record<string, unknown>) => string | undefined): Promise<System> {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let tail = ''
  let stderrLines = 0
  child.stderr.setEncoding('utf8').on('data', (s: string) => { tail = (tail + s).slice(-2000); stderrLines += s.split('\n').length - 1 })
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()))
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`(${variant}) not ready within 60 s; output: ${tail}`)), 60_000)
    createInterface({ input: child.stdout }).on('line', (text) => {
      let line: Record<string, unknown>
      try { line = JSON.parse(text) as Record<string, unknown> } catch { tail = (tail + text + '\n').slice(-2000); return }
      const u = line && typeof line === 'object' ? ready(line) : undefined
      if (u) { clearTimeout(timer); ok(u) }
    })
    void exited.then(() => { clearTimeout(timer); fail(new Error(`(${variant}) exited with ${child.exitCode} before it was ready; output: ${tail}`)) })
  })
  return {
    pid: child.pid!, url, stderrLines: () => stderrLines,
    async stop() {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      await exited
      clearTimeout(killer)
    },
  }
}

/** The channel file of (d), as a user would write it; the client secret comes from the environment. */
function weirChannel(ctx: Pick<Context, 'tokenUrl'>, sinkUrl: string): object {
  return {
    name: 'peers-bench',
    credentials: { api: { tokenUrl: ctx.tokenUrl, clientId: CLIENT_IDS.d, clientAuth: { method: 'client_secret_basic', secret: { $env: 'BENCH_SECRET' } } } },
    source: { type: 'http-listener', config: { port: 0, path: '/in' } },
    filters: [{ type: 'map', config: { jsonata: "{ 'resourceType': 'Encounter', 'seq': seq, 'subject': { 'identifier': mrn, 'display': name }, 'class': event, 'location': ward, 'note': payload }" } }],
    destinations: [{ name: 'sink', type: 'http', config: { url: sinkUrl, credential: 'api', headers: { 'x-seq': '{body.seq}' } } }],
    options: { concurrency: 64, queueLimit: 50_000 },
  }
}

/** Node-RED's settings: editor, admin API, telemetry, update checks and palette installs off; logging at warn. */
const nodeRedSettings = {
  flowFile: 'flows.json', credentialSecret: false, httpAdminRoot: false, httpNodeRoot: '/', uiHost: '127.0.0.1',
  logging: { console: { level: 'warn', metrics: false, audit: false } },
  telemetry: { enabled: false, updateNotification: false },
  externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
  functionExternalModules: false,
}

/** The flow of (n), as the Node-RED editor exports it. */
function nodeRedFlow(ctx: Pick<Context, 'tokenUrl' | 'secret'>, sinkUrl: string): object[] {
  const z = 'bench-tab'
  return [
    { id: z, type: 'tab', label: 'weir peers benchmark' },
    { id: 'bench-in', type: 'http in', z, name: 'in', url: '/in', method: 'post', upload: false, swaggerDoc: '', wires: [['bench-token']] },
    {
      id: 'bench-token', type: 'oauth2', z, name: 'token', container: 'oauth2Response', grant_type: 'client_credentials',
      access_token_url: ctx.tokenUrl, authorization_endpoint: '', redirect_uri: '', open_authentication: '', username: '', password: '',
      client_id: CLIENT_IDS.n, client_secret: ctx.secret, scope: '', resource: '', state: '', proxy: '',
      debug: false, force: false, senderr: false, client_credentials_in_body: false, rejectUnauthorized: true, headers: {},
      wires: [['bench-headers']],
    },
    {
      id: 'bench-headers', type: 'function', z, name: 'bearer + x-seq', outputs: 1, noerr: 0, initialize: '', finalize: '', libs: [],
      func: "msg.headers = { authorization: 'Bearer ' + msg.oauth2Response.access_token, 'x-seq': msg.req.headers['x-seq'] };\nreturn msg;",
      wires: [['bench-deliver']],
    },
    {
      id: 'bench-deliver', type: 'http request', z, name: 'sink', method: 'POST', ret: 'txt', paytoqs: 'ignore', url: sinkUrl,
      tls: '', persist: true, proxy: '', insecureHTTPParser: false, authType: '', senderr: false, headers: [],
      wires: [['bench-answer']],
    },
    { id: 'bench-answer', type: 'http response', z, name: '202', statusCode: '202', headers: {}, wires: [] },
  ]
}

/** Starts variant `v` in its own process; `cleanup` removes its temporary files after it stopped. */
async function start(v: Variant, ctx: Context): Promise<System & { cleanup(): void }> {
  if (v === 'c') {
    const env = { WEIR_RELAY_SINK_URL: ctx.sink.url, WEIR_RELAY_AUTHORIZATION: ctx.fixedAuthorization }
    const s = await launch(v, ['--import', 'tsx', join(ROOT, 'bench', 'lib', 'relay.ts')], env, ROOT, (l) => (l.msg === 'ready' ? String(l.url) : undefined))
    return { ...s, cleanup: () => {} }
  }
  const dir = mkdtempSync(join(tmpdir(), `weir-peers-${v}-`))
  const cleanup = () => rmSync(dir, { recursive: true, force: true })
  try {
    if (v === 'd') {
      writeFileSync(join(dir, 'bench.json'), JSON.stringify(weirChannel(ctx, ctx.sink.url), null, 2))
      let listening: string | undefined
      const s = await launch(v, [join(ROOT, 'bin', 'weir.js'), 'run', 'bench.json', '--data-dir', join(dir, 'data')], { BENCH_SECRET: ctx.secret, WEIR_LOG_LEVEL: 'info' }, dir, (l) => {
        if (l.msg === 'listening') listening = String(l.url)
        return l.msg === 'weir running' ? listening : undefined
      })
      return { ...s, cleanup }
    }
    writeFileSync(join(dir, 'flows.json'), JSON.stringify(nodeRedFlow(ctx, ctx.sink.url), null, 2))
    writeFileSync(join(dir, 'settings.json'), JSON.stringify(nodeRedSettings, null, 2))
    const s = await launch(v, [join(HERE, 'node-red.mjs')], { WEIR_PEERS_NODE_RED_DIR: dir }, HERE, (l) => (l.msg === 'ready' ? String(l.url) : undefined))
    return { ...s, cleanup }
  } catch (e) {
    cleanup()
    throw e
  }
}

// ───────────────────────────── one measurement ─────────────────────────────

/** Runs variant `v` once: warm-up, then N messages, until the sink has every one of them. */
async function measure(v: Variant, round: number, ctx: Context): Promise<Measurement> {
  const { sink, n, warm } = ctx
  const total = warm + n
  sink.reset()
  const tokens0 = ctx.tokenCount(CLIENT_IDS[v])
  const sys = await start(v, ctx)
  try {
    const deadline = Date.now() + ctx.maxSeconds * 1000
    await generate({ url: sys.url, from: 0, to: warm, deadline, sink })
    const warmMissing = await sink.drained(0, warm, deadline)
    if (warmMissing) throw new Error(`(${v}) ${warmMissing} warm-up messages never reached the sink`)
    const u0 = processUsage(sys.pid)
    const t0 = performance.now()
    const g = await generate({ url: sys.url, from: warm, to: total, deadline, sink })
    const missing = await sink.drained(warm, g.lastSent, deadline + 30_000)
    const u1 = processUsage(sys.pid)
    const { lastArrival: last, latencies: lat } = endToEnd(sink, warm, g.lastSent, g.sent, t0)
    const sent = g.lastSent - warm
    const delivered = sent - missing
    const authorizations = sink.authorizations()
    // (c)'s fixed bearer was fetched once for the whole run and may have expired since: checked for (d) and (n).
    const invalid = v === 'c' ? 0 : await ctx.invalidTokens(authorizations)
    const notes = [
      invalid ? `${invalid} of ${authorizations.length} distinct tokens at the sink NOT valid` : '',
      missing ? `${missing} LOST` : '', sink.duplicates ? `${sink.duplicates} duplicate arrivals` : '',
      g.refused ? `${g.refused} refused sends retried` : '', sent < n ? `time limit: ${sent} of ${n} sent` : '',
      sys.stderrLines() ? `${sys.stderrLines()} lines on stderr` : '',
    ].filter(Boolean).join('; ')
    return {
      variant: v, round, messages: delivered, msgsPerSec: (delivered / (last - t0)) * 1000,
      cpuUsPerMsg: ((u1.cpuMs - u0.cpuMs) * 1000) / delivered, peakRssMb: u1.peakRssKb / 1024,
      tokenRequests: ctx.tokenCount(CLIENT_IDS[v]) - tokens0, distinctTokensAtSink: authorizations.length,
      p50Ms: pct(lat, 0.5), p99Ms: pct(lat, 0.99), ...(notes ? { notes } : {}),
    }
  } finally {
    await sys.stop()
    sys.cleanup()
  }
}

// ───────────────────────────── the run ─────────────────────────────

interface Summary { variant: Variant; name: string; rounds: number; msgsPerSec: number; cpuUsPerMsg: number; peakRssMb: number; tokenRequests: number[] }

/** Medians per variant over the rounds, and the ratios the issue sets targets for. */
function summarise(all: Measurement[], only: Variant[]) {
  const rows: Summary[] = only.map((v) => {
    const ms = all.filter((m) => m.variant === v)
    return {
      variant: v, name: NAMES[v], rounds: ms.length,
      msgsPerSec: median(ms.map((m) => m.msgsPerSec)), cpuUsPerMsg: median(ms.map((m) => m.cpuUsPerMsg)),
      peakRssMb: median(ms.map((m) => m.peakRssMb)), tokenRequests: ms.map((m) => m.tokenRequests),
    }
  })
  const by = (v: Variant) => rows.find((r) => r.variant === v)
  // The median of the per-round ratios, as bench/pipeline.ts gives it: each round's variants ran in
  // the same minutes of the machine, so a round's ratio is steadier than the ratio of two medians.
  const ratio = (x: Variant, y: Variant) => { const r = perRound(x, y); return r.length ? median(r) : undefined }
  const perRound = (x: Variant, y: Variant) => [...new Set(all.map((m) => m.round))].flatMap((r) => {
    const a = all.find((m) => m.round === r && m.variant === x)
    const b = all.find((m) => m.round === r && m.variant === y)
    return a && b ? [a.msgsPerSec / b.msgsPerSec] : []
  })
  const d = by('d')
  const nr = by('n')
  return {
    rows,
    ratios: { 'd/n': ratio('d', 'n'), 'd/c': ratio('d', 'c') },
    perRoundRatios: { 'd/n': perRound('d', 'n'), 'd/c': perRound('d', 'c') },
    targets: {
      'd/n ≥ 5': d && nr ? ratio('d', 'n')! >= 5 : undefined,
      'CPU per message d < n': d && nr ? d.cpuUsPerMsg < nr.cpuUsPerMsg : undefined,
      'peak RSS d < n': d && nr ? d.peakRssMb < nr.peakRssMb : undefined,
    },
  }
}

function print(s: ReturnType<typeof summarise>, all: Measurement[], header: string): void {
  const f = (x: number | undefined, d = 0) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d))
  const tokens = (t: number[]) => (new Set(t).size === 1 ? String(t[0]) : t.join(', '))
  console.log(header)
  console.log('')
  console.log('| | system under test | msgs/s | CPU µs/msg | peak RSS MB | token requests |')
  console.log('|---|---|---:|---:|---:|---:|')
  for (const r of s.rows) console.log(`| ${r.variant} | ${r.name} | ${f(r.msgsPerSec)} | ${f(r.cpuUsPerMsg)} | ${f(r.peakRssMb)} | ${tokens(r.tokenRequests)} |`)
  console.log('')
  for (const [k, v] of Object.entries(s.ratios)) {
    if (v === undefined) continue
    const spread = s.perRoundRatios[k as keyof typeof s.perRoundRatios].map((x) => x.toFixed(2)).join(', ')
    console.log(`ratio ${k} = ${v.toFixed(2)}, the median of the rounds' (${spread})`)
  }
  for (const [k, v] of Object.entries(s.targets)) if (v !== undefined) console.log(`target ${k}: ${v ? 'met' : 'NOT met'}`)
  const notes = all.filter((m) => m.notes)
  if (notes.length) console.log(['', ...notes.map((m) => `round ${m.round + 1} (${m.variant}): ${m.notes}`)].join('\n'))
}

const versionOf = (pkg: string) => {
  try { return (JSON.parse(readFileSync(join(HERE, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version } catch { return undefined }
}

async function main(): Promise<void> {
  const n = Number(process.env.WEIR_PEERS_N ?? 50_000)
  const rounds = Number(process.env.WEIR_PEERS_ROUNDS ?? 3)
  const warm = Number(process.env.WEIR_PEERS_WARM ?? Math.min(2000, Math.max(200, Math.floor(n / 10))))
  const maxSeconds = Number(process.env.WEIR_PEERS_MAX_S ?? 300)
  const only = (process.env.WEIR_PEERS_ONLY ?? VARIANTS.join(',')).split(',').filter((v): v is Variant => (VARIANTS as readonly string[]).includes(v))
  if (only.includes('n') && !versionOf('node-red')) throw new Error('bench/peers is not installed: run `npm run bench:peers` (it runs `npm --prefix bench/peers ci` first)')
  if (!existsSync('/proc/self/stat')) throw new Error('the peer benchmark reads CPU and RSS from /proc: it runs on Linux only')

  const sink = await startSink(warm + n)
  const as = await startAuthorizationServer({ tokenLifetimeSec: 300 })
  const secret = randomBytes(24).toString('base64url')
  for (const clientId of Object.values(CLIENT_IDS)) as.registerClient({ clientId, authMethod: 'client_secret_basic', secret })
  // (c) sends a fixed bearer as long as the ones (d) and (n) get: a real token, fetched once here.
  const res = await fetch(as.tokenUrl, {
    method: 'POST', body: new URLSearchParams({ grant_type: 'client_credentials' }),
    headers: { authorization: `Basic ${Buffer.from(`${CLIENT_IDS.c}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
  })
  const token = ((await res.json()) as { access_token?: string }).access_token
  if (!token) throw new Error(`token endpoint answered ${res.status}`)
  const tokenCount = (clientId: string) => Object.values(as.counts().byClient[clientId] ?? {}).reduce((a, b) => a + b, 0)
  const invalidTokens = async (authorizations: string[]) => {
    const outcomes = await Promise.all(authorizations.map((a) => as.verifyAccessToken(a).then(() => 0, () => 1)))
    return outcomes.reduce<number>((x, y) => x + y, 0)
  }
  const ctx: Context = { sink, tokenUrl: as.tokenUrl, secret, fixedAuthorization: `Bearer ${token}`, n, warm, maxSeconds, tokenCount, invalidTokens }

  const started = Date.now()
  const all: Measurement[] = []
  try {
    for (let round = 0; round < rounds; round++) {
      const order = only.map((_, i) => only[(i + round) % only.length]!)
      for (const v of order) {
        const m = await measure(v, round, ctx)
        console.error(`round ${round + 1}/${rounds} (${v}): ${Math.round(m.msgsPerSec)} msgs/s, ${Math.round(m.cpuUsPerMsg)} µs CPU/msg, ${Math.round(m.peakRssMb)} MB peak RSS, ${m.tokenRequests} token requests`)
        all.push(m)
      }
    }
  } finally {
    await as.close()
    await sink.close()
  }
  const elapsedS = (Date.now() - started) / 1000
  const summary = summarise(all, only)
  const versions = { node: process.version, 'node-red': versionOf('node-red'), 'node-red-contrib-oauth2': versionOf('node-red-contrib-oauth2'), axios: versionOf('axios') }
  print(summary, all, `peer benchmark: ${n.toLocaleString('en')} messages of ~1 KB per variant (after ${warm} warm-up), 64 in flight, median of ${rounds} round(s), ${elapsedS.toFixed(0)} s; ${cpus().length} cores; Node-RED ${versions['node-red']}, node-red-contrib-oauth2 ${versions['node-red-contrib-oauth2']}`)

  const partial = ['WEIR_PEERS_N', 'WEIR_PEERS_ROUNDS', 'WEIR_PEERS_ONLY', 'WEIR_PEERS_WARM'].some((k) => process.env[k] !== undefined)
  const out = partial ? join(tmpdir(), 'weir-bench') : join(ROOT, 'bench', 'results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `peers${partial ? `-${only.join('')}-${n}x${rounds}` : ''}-${new Date().toISOString().slice(0, partial ? 19 : 10).replace(/:/g, '')}.json`)
  const shown = { tokenUrl: 'http://127.0.0.1:<port>/token', secret: '<secret>' }
  writeFileSync(file, JSON.stringify({
    date: new Date().toISOString(), versions, cpus: cpus().length, messages: n, warmup: warm, inFlight: 64, window: 512, rounds, elapsedSeconds: elapsedS,
    ...summary, measurements: all,
    setup: { weirChannel: weirChannel(shown, 'http://127.0.0.1:<port>/fhir/Encounter'), nodeRedSettings, nodeRedFlow: nodeRedFlow(shown, 'http://127.0.0.1:<port>/fhir/Encounter') },
  }, null, 2) + '\n')
  console.log(`written ${file}`)
}

await main()
