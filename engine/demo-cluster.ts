// `npm run demo:cluster`: three engines on one PostgreSQL. Starts an embedded PostgreSQL, the embedded
// authorization server and API, three `weir run` processes sharing the database (each with its own
// listener, as behind a load balancer), streams ADT messages over the three listeners, kills one
// engine with SIGKILL mid-stream, and ends with what happened: every acknowledged message delivered,
// the duplicates, the takeover time and the token requests.
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { dataDirOf, processIO } from './cli-io.ts'
import { generateKeys } from './commands/keys.ts'
import { startAuthorizationServer } from './embedded/authorization-server.ts'
import { startEmbeddedApi, verifiedBy } from './embedded/api.ts'
import { freePort, startEmbeddedPostgres } from './embedded/postgres.ts'
import { openDb } from '../shared/store/postgres/db.ts'

const MESSAGES = Number(process.env.WEIR_DEMO_N ?? 3000)
const ENGINES = 3
const LEASE_MS = 5000
const ROOT = resolve(import.meta.dirname, '..')

const io = processIO()
const say = (s = '') => io.out(s)
const t0 = Date.now()
const dir = resolve(dataDirOf(undefined, io), 'demo-cluster')
await rm(dir, { recursive: true, force: true })
// Owner-only (the directories it creates, ./data too on a fresh clone), as `weir run` requires of a data directory.
await mkdir(dir, { recursive: true, mode: 0o700 })

say(`Weir cluster demo: ${ENGINES} engines share one PostgreSQL; one is killed with SIGKILL mid-stream. All on 127.0.0.1.`)
const pg = await startEmbeddedPostgres()
const url = await pg.createDatabase('weir')
const db = openDb(url, { max: 1 })
const as = await startAuthorizationServer({ tokenLifetimeSec: 300 })
const api = await startEmbeddedApi({ routes: [{ method: 'POST', path: '/fhir/R4/Patient', answers: [{ status: 201, json: { resourceType: 'Patient' } }] }], verifyToken: verifiedBy(as) })
const { kid, privatePem, jwks } = await generateKeys('RS384', 'weir-cluster-demo')
await writeFile(join(dir, 'key.pem'), privatePem, { mode: 0o600 })
await chmod(join(dir, 'key.pem'), 0o600)
as.registerClient({ clientId: 'weir-cluster-demo', authMethod: 'private_key_jwt', jwks, allowedAlgs: ['RS384'], scopes: ['system/Patient.c'] })

const channel = (port: number) => ({
  name: 'cluster-adt-to-fhir',
  credentials: { api: { tokenUrl: as.tokenUrl, clientId: 'weir-cluster-demo', scope: 'system/Patient.c', clientAuth: { method: 'private_key_jwt', alg: 'RS384', kid, privateKey: { $file: 'key.pem' } } } },
  source: { type: 'http-listener', config: { port, path: '/adt' } },
  filters: [{ type: 'map', config: { jsonata: "{ 'resourceType': 'Patient', 'identifier': [{ 'value': mrn }], 'name': [{ 'family': lastName }] }", contentType: 'application/fhir+json' } }],
  destinations: [{ name: 'fhir-api', type: 'http', config: { url: `${api.url}/fhir/R4/Patient`, credential: 'api' } }],
  options: { concurrency: 8, orderBy: 'mrn', queueLimit: 100_000 },
})

const engines: Array<{ port: number; child: ChildProcess; alive: boolean }> = []
// Every engine of a cluster needs the same WEIR_SECRET_KEY: the shared OAuth tokens are encrypted with it.
const secretKey = process.env.WEIR_SECRET_KEY ?? 'the demo cluster passphrase, shared by its three engines'
for (let i = 0; i < ENGINES; i++) {
  const port = await freePort()
  const file = join(dir, `engine-${i}.json`)
  await writeFile(file, JSON.stringify(channel(port), null, 2))
  const child = spawn(process.execPath, [join(ROOT, 'bin/weir.js'), 'run', file, '--data-dir', join(dir, `engine-${i}`), '--store', url, '--lease-ms', String(LEASE_MS)], {
    cwd: ROOT, env: { ...process.env, WEIR_SECRET_KEY: secretKey, WEIR_LOG_LEVEL: 'error', CI: '1' }, stdio: ['ignore', 'ignore', 'inherit'],
  })
  engines.push({ port, child, alive: true })
}
const up = async (port: number) => fetch(`http://127.0.0.1:${port}/adt`, { method: 'OPTIONS' }).then(() => true, () => false)
for (const e of engines) {
  while (!(await up(e.port))) {
    // An engine that exits before it listens said why on stderr: stop here rather than wait for it.
    if (e.child.exitCode !== null) {
      for (const other of engines) other.child.kill('SIGTERM')
      await db.end()
      await Promise.all([api.close(), as.close()])
      await pg.stop()
      io.err(`an engine exited (status ${e.child.exitCode}) before it listened on port ${e.port}; the demo stops`)
      process.exit(1)
    }
    await new Promise((r) => setTimeout(r, 200))
  }
}
say(`Engines listening on ports ${engines.map((e) => e.port).join(', ')}; sending ${MESSAGES} messages round robin, 8 at a time.`)

let acked = 0
let resent = 0
let next = 0
let killedAt = 0
/** Milliseconds from the kill until a surviving engine swept the victim out (its claims back in the queue), watched while the sending goes on. */
let takenOver: Promise<number> = Promise.resolve(0)
const victimGone = async (): Promise<number> => {
  while ((await db.sql`SELECT 1 FROM weir_engines WHERE id = ${victimId}`).length > 0) await new Promise((r) => setTimeout(r, 100))
  return Date.now() - killedAt
}
const victim = engines[1]!
const victimId = (await db.sql`SELECT id FROM weir_engines WHERE pid = ${victim.child.pid!}`)[0]?.id as string
/** Sends one message, moving to the next engine when one does not answer; the Idempotency-Key makes a resend a duplicate, not a second message. */
const send = async (i: number) => {
  const body = JSON.stringify({ mrn: `MRN${String(i % 300).padStart(5, '0')}`, lastName: `Patient${i}`, n: i })
  for (let attempt = 0; ; attempt++) {
    const e = engines[(i + attempt) % ENGINES]!
    try {
      const res = await fetch(`http://127.0.0.1:${e.port}/adt`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': `msg-${i}` }, body })
      await res.arrayBuffer()
      if (res.status === 202) return void acked++
    } catch { /* that engine is gone: the next one */ }
    resent++
    await new Promise((r) => setTimeout(r, 50))
  }
}
await Promise.all(Array.from({ length: 8 }, async () => {
  while (next < MESSAGES) {
    const i = next++
    if (i === Math.floor(MESSAGES * 0.4) && victim.alive) {
      victim.child.kill('SIGKILL')
      victim.alive = false
      killedAt = Date.now()
      takenOver = victimGone()
      say(`Killed engine ${victimId} (SIGKILL) after ${acked} acknowledgements.`)
    }
    await send(i)
  }
}))
const takeoverMs = await takenOver
const distinct = () => new Set(api.requests.filter((r) => r.status === 201).map((r) => (r.json as { name: Array<{ family: string }> }).name[0]!.family))
for (let i = 0; i < 600 && distinct().size < acked; i++) await new Promise((r) => setTimeout(r, 100))
const delivered = distinct().size
// The API has every message; the engines' last completions commit right after.
for (let i = 0; i < 100 && (await db.sql`SELECT 1 FROM weir_messages WHERE status <> 'delivered' LIMIT 1`).length > 0; i++) await new Promise((r) => setTimeout(r, 100))
const posts = api.requests.filter((r) => r.status === 201).length
const statuses = await db.sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM weir_messages GROUP BY status ORDER BY status`

for (const e of engines) if (e.alive) e.child.kill('SIGTERM')
await Promise.all(engines.filter((e) => e.alive).map((e) => new Promise((r) => e.child.once('exit', r))))
await db.end()
await api.close()
await as.close()
await pg.stop()

say()
say(`Done in ${((Date.now() - t0) / 1000).toFixed(1)} s.`)
say(`  ${acked} messages acknowledged (202 only after the shared database committed them); ${resent} sends retried on another engine`)
say(`  ${delivered} delivered to the API, ${posts - delivered} duplicates (the killed engine's messages in flight, delivered again by the others)`)
say(`  the killed engine's claims taken over ${(takeoverMs / 1000).toFixed(1)} s after the kill (lease ${LEASE_MS / 1000} s)`)
say(`  ${as.requests.length} access token requests for ${ENGINES} engines`)
say(`  messages in the database: ${statuses.map((s) => `${s.n} ${s.status}`).join(', ')}`)
process.exitCode = delivered === acked && acked === MESSAGES ? 0 : 1
