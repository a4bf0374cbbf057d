// `npm start`: the demo. Starts the embedded authorization server and a FHIR-like API on loopback,
// writes a demo channel (MLLP listener → match → hl7v2 → map → HTTP destination with private_key_jwt
// RS384; the filters are those of channels/adt-mllp-to-fhir.json), runs it with `weir run`'s own code,
// sends it HL7 v2 ADT messages over MLLP as an EHR's interface engine would, and ends with a summary.
import { isWeirError } from '../shared/errors.ts'
import { mkdir, writeFile, chmod, readFile } from 'node:fs/promises'
import { relative, resolve } from 'node:path'
import { readAck } from '../shared/hl7v2/index.ts'
import { connectMllp } from '../shared/mllp/client.ts'
import { dataDirOf, processIO } from './cli-io.ts'
import { run } from './commands/run.ts'
import { generateKeys } from './commands/keys.ts'
import { startAuthorizationServer } from './embedded/authorization-server.ts'
import { startEmbeddedApi, verifiedBy } from './embedded/api.ts'
import type { ChannelHandle } from './runtime/index.ts'

const MESSAGES = 120
const CONCURRENCY = 4
const CHANNEL = 'demo-adt-to-fhir'

const io = processIO()
process.env.WEIR_LOG_LEVEL ??= 'warn'
const say = (s = '') => io.out(s)
const t0 = Date.now()

const dataDir = dataDirOf(undefined, io)
const demoDir = resolve(dataDir, 'demo')
// Created owner-only, as `weir run` requires of a data directory (it holds patient data).
await mkdir(demoDir, { recursive: true, mode: 0o700 })

say('Weir demo: a channel that receives HL7 v2 ADT messages over MLLP, turns them into FHIR Patients and POSTs them to an OAuth-protected API.')
say('Everything runs on this machine (127.0.0.1): an embedded authorization server, an embedded API, the durable store.')
say()

const as = await startAuthorizationServer({ tokenLifetimeSec: 300 })
// The API is briefly "down" (503) at first, to show retries with backoff; then it accepts.
const api = await startEmbeddedApi({
  routes: [{ method: 'POST', path: '/fhir/R4/Patient', answers: [{ status: 503, headers: { 'retry-after': '1' } }, { status: 503 }, { status: 201, json: { resourceType: 'Patient' } }] }],
  verifyToken: verifiedBy(as),
})

// A fresh signing key, registered with the authorization server the way you would register its JWKS with Epic.
const { kid, privatePem, jwks } = await generateKeys('RS384', 'weir-demo')
await writeFile(resolve(demoDir, 'demo-key.pem'), privatePem, { mode: 0o600 })
await chmod(resolve(demoDir, 'demo-key.pem'), 0o600)
as.registerClient({ clientId: 'weir-demo', authMethod: 'private_key_jwt', jwks, allowedAlgs: ['RS384', 'ES384'], scopes: ['system/Patient.c'] })

const example = JSON.parse(await readFile(resolve(import.meta.dirname, '../channels/adt-mllp-to-fhir.json'), 'utf8')) as { filters: Array<{ name: string }> }
const channelFile = resolve(demoDir, 'demo-channel.json')
const channel = {
  $schema: relative(demoDir, resolve('schema/channel.schema.json')),
  name: CHANNEL,
  description: 'Demo: HL7 v2 ADT over MLLP → FHIR Patient → OAuth-protected API (SMART Backend Services style).',
  credentials: {
    api: {
      tokenUrl: as.tokenUrl, clientId: 'weir-demo', scope: 'system/Patient.c',
      clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid, privateKey: { $file: 'demo-key.pem' } },
    },
  },
  source: { type: 'mllp-listener', config: { port: 0, dedupeByControlId: true } },
  filters: example.filters,
  destinations: [{ name: 'fhir-api', type: 'http', config: { url: `${api.url}/fhir/R4/Patient`, credential: 'api' }, retry: { maxAttempts: 8, initialDelayMs: 200, maxDelayMs: 2000 } }],
  options: { concurrency: CONCURRENCY },
}
await writeFile(channelFile, JSON.stringify(channel, null, 2) + '\n')

const FIRST = ['ADA', 'ALAN', 'GRACE', 'EDSGER', 'BARBARA', 'DONALD', 'FRANCES', 'TONY']
const LAST = ['LOVELACE', 'TURING', 'HOPPER', 'DIJKSTRA', 'LISKOV', 'KNUTH', 'ALLEN', 'HOARE']
const EVENTS = ['A01', 'A04', 'A08', 'A01', 'A03', 'A01', 'A08', 'A04', 'A01', 'A01']

// Control ids (MSH-10) unique to this run: the channel drops a repeated control id as a duplicate,
// and a second `npm start` in the same data directory must not meet the first run's messages.
const RUN = Date.now().toString(36).toUpperCase()

/** ADT message `i` as an EHR's interface engine sends it: ER7, segments ended by CR. */
function adtMessage(i: number): string {
  const event = EVENTS[i % EVENTS.length]!
  const at = `202603011${String(Math.floor(i / 60) % 10)}${String(i % 60).padStart(2, '0')}00`
  return [
    `MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|${at}||ADT^${event}^${event === 'A03' ? 'ADT_A03' : 'ADT_A01'}|D${RUN}${String(i).padStart(4, '0')}|P|2.5.1`,
    `EVN|${event}|${at}`,
    `PID|1||${100000 + i}^^^GENHOSP^MR||${LAST[(i * 3) % LAST.length]}^${FIRST[i % FIRST.length]}||19${String(40 + (i % 60)).padStart(2, '0')}0${1 + (i % 9)}15|${i % 2 ? 'M' : 'F'}`,
    `PV1|1|${event === 'A04' ? 'O' : 'I'}|4B^${400 + (i % 20)}^1^GENHOSP`,
  ].join('\r')
}

const acks: Record<string, number> = {}
let handle: ChannelHandle | undefined
const stop = new AbortController()

async function feed(h: ChannelHandle): Promise<void> {
  handle = h
  const port = h.source.address?.()?.port
  say(`Channel "${CHANNEL}" listening for MLLP on 127.0.0.1:${port}; sending ${MESSAGES} HL7 v2 ADT messages over 4 connections (${EVENTS.filter((e) => e === 'A03').length * (MESSAGES / EVENTS.length)} are A03 discharges, which the channel acknowledges and filters out).`)
  say()
  let next = 0
  const worker = async () => {
    const c = await connectMllp({ host: '127.0.0.1', port: port! })
    while (next < MESSAGES) {
      const ack = readAck(await c.request(adtMessage(next++), 10_000))
      acks[ack.code] = (acks[ack.code] ?? 0) + 1
      await new Promise((r) => setTimeout(r, 25)) // paced, so the live counters have something to show
    }
    await c.end()
  }
  await Promise.all(Array.from({ length: 4 }, worker))
  await h.whenIdle({ timeoutMs: 30_000 })
  stop.abort()
}

// `npm start -- --allow-open-data-dir` passes the one `weir run` flag the demo takes on.
const passed = process.argv.includes('--allow-open-data-dir') ? ['--allow-open-data-dir'] : []
const code = await run([channelFile, '--data-dir', dataDir, ...passed], io, { signal: stop.signal, refreshMs: 200, onStarted: (hs) => void feed(hs[0]!).catch((e) => { io.err(`demo feeder failed: ${(e as Error).message}`); stop.abort() }) })
  .catch(async (e: unknown) => {
    // A user's error (a data directory others may read, a port in use) is a message, not a stack trace.
    if (!isWeirError(e) || !e.userError) throw e
    io.err(`weir demo: ${e.message}`)
    await api.close()
    await as.close()
    process.exit(1)
  })

const c = handle?.counters()
const retried = api.requests.filter((r) => r.status === 503).length
await api.close()
await as.close()

say()
say(`Done in ${((Date.now() - t0) / 1000).toFixed(1)} s.`)
const accepted = acks.AA ?? 0
say(`  ${MESSAGES} HL7 v2 messages sent over MLLP: ${Object.entries(acks).map(([code, n]) => `${n} ACK ${code}`).join(', ')} (AA only after each was durably stored)`)
say(`  ${c?.delivered ?? 0} delivered to the API as FHIR Patients, ${c?.filtered ?? 0} filtered (discharges), ${c?.errors ?? 0} in error`)
if (c?.duplicates) say(`  ${c.duplicates} acknowledged but dropped as duplicates: their control id (MSH-10) was in the message log already`)
say(`  ${retried} attempts met a 503 from the API and were retried with backoff; nothing was lost`)
say(`  ${c?.tokensFetched ?? 0} access token fetched with private_key_jwt (RS384), then reused from the cache for every call`)
say()
say(`Message log: ${relative(process.cwd(), dataDir) || '.'}/weir.db (SQLite). Inspect it with:`)
say(`  npx weir messages list --channel ${CHANNEL} --limit 5`)
say(`  npx weir messages show <id>        (body, per-destination history; credentials redacted)`)
say(`The channel that ran: ${relative(process.cwd(), channelFile)} (validate it with: npx weir validate ${relative(process.cwd(), channelFile)})`)
process.exitCode = code === 0 && c && c.duplicates === 0 && c.delivered + c.filtered === accepted && accepted === MESSAGES ? 0 : 1
setTimeout(() => process.exit(process.exitCode), 2000).unref()
