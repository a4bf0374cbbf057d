// `npm run trial`: what a cluster trial needs on one machine, all on 127.0.0.1, until Ctrl-C: an
// embedded PostgreSQL, the embedded authorization server with a client, a partner API that checks
// its tokens (and can be told to fail, to try alerts and outages), and a channel file for the
// engines to run. Prints the commands that start two engines on it; stops and removes it all on exit.
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { rmSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { dataDirOf, processIO } from './cli-io.ts'
import { startAuthorizationServer } from './embedded/authorization-server.ts'
import { startEmbeddedApi, verifiedBy, type ApiRoute } from './embedded/api.ts'
import { freePort, startEmbeddedPostgres } from './embedded/postgres.ts'

/** What `startTrial` set up, and how to take it down. */
export interface Trial {
  /** The PostgreSQL store's URL for `weir run --store` (its password included: a throwaway server). */
  storeUrl: string
  /** The channel file of each engine (an HTTP listener on `ports[i]` to the partner API, with a client-credentials credential): the same channel but for the listener's port. */
  channelFiles: string[]
  ports: number[]
  /** The partner API's base URL, and its control: POST <controlUrl>/fail/503 (any status) and POST <controlUrl>/ok. */
  apiUrl: string
  controlUrl: string
  /** The requests the partner API received. */
  received(): number
  close(): Promise<void>
}

/** The partner API's routes: everything under /partner/ answers 201 once its token checks, or `status` while failing. */
const partnerRoutes = (status?: number): ApiRoute[] => [{ method: 'POST', path: '/partner/*', answers: [status === undefined ? { status: 201, json: { ok: true } } : { status }] }]

/**
 * Starts the trial's servers and writes, for each of `engines` engines, `<dir>/orders-<i>.json` (the
 * channel, with a free listener port of its own: the source is not part of a channel's definition)
 * and `<dir>/client-secret` (the client's secret, read by the channels with `$file`, owner-only).
 */
export async function startTrial(dir: string, engines = 2): Promise<Trial> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const pg = await startEmbeddedPostgres()
  const closing: Array<() => Promise<unknown>> = [() => pg.stop()]
  const close = async () => { for (const c of closing.splice(0).reverse()) await c().catch(() => {}) }
  try {
    const storeUrl = await pg.createDatabase('weir')
    const as = await startAuthorizationServer({ tokenLifetimeSec: 300 })
    closing.push(() => as.close())
    const api = await startEmbeddedApi({ routes: partnerRoutes(), verifyToken: verifiedBy(as) })
    closing.push(() => api.close())
    const control = await controlServer((status) => api.setRoutes(partnerRoutes(status)))
    closing.push(() => new Promise((ok) => control.close(ok)))
    const secret = randomBytes(24).toString('base64url')
    as.registerClient({ clientId: 'weir-trial', authMethod: 'client_secret_basic', secret, scopes: ['orders.write'] })
    await writeFile(join(dir, 'client-secret'), secret, { mode: 0o600 })
    await chmod(join(dir, 'client-secret'), 0o600)
    const channelFiles: string[] = []
    const ports: number[] = []
    for (let i = 1; i <= engines; i++) {
      const port = await freePort()
      const file = join(dir, `orders-${i}.json`)
      await writeFile(file, JSON.stringify({
        name: 'orders',
        credentials: { partner: { tokenUrl: as.tokenUrl, clientId: 'weir-trial', scope: 'orders.write', clientAuth: { method: 'client_secret_basic', secret: { $file: 'client-secret' } } } },
        source: { type: 'http-listener', config: { port, path: '/orders' } },
        destinations: [{ name: 'partner', type: 'http', config: { url: `${api.url}/partner/orders`, credential: 'partner' } }],
        options: { concurrency: 8 },
      }, null, 2))
      channelFiles.push(file)
      ports.push(port)
    }
    const controlUrl = `http://127.0.0.1:${(control.address() as AddressInfo).port}`
    return { storeUrl, channelFiles, ports, apiUrl: api.url, controlUrl, received: () => api.requests.length, close }
  } catch (e) {
    await close()
    throw e
  }
}

/** POST /fail/<status>: the partner API answers that status from now on; POST /ok: it takes messages again. */
async function controlServer(set: (status?: number) => void): Promise<Server> {
  const server = createServer((req, res) => {
    const fail = /^\/fail\/([1-5]\d\d)$/.exec(req.url ?? '')
    if (req.method === 'POST' && fail) set(Number(fail[1]))
    else if (req.method === 'POST' && req.url === '/ok') set(undefined)
    else return void res.writeHead(404).end('POST /fail/<status> or POST /ok\n')
    res.writeHead(204).end()
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok))
  return server
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const io = processIO()
  const dir = resolve(dataDirOf(undefined, io), 'trial')
  await rm(dir, { recursive: true, force: true })
  // The PostgreSQL package stops its server on Ctrl-C and exits at once, before the trial's own close
  // removes the server's directory: the server is made under a directory of the trial's own (the
  // package reads TMPDIR), reachable by the `postgres` user when run as root, which an 'exit' handler
  // removes synchronously as the process exits (Ctrl-C, SIGTERM or a normal end; a SIGKILL leaves it behind).
  const pgParent = await mkdtemp(join(tmpdir(), 'weir-trial-'))
  await chmod(pgParent, 0o711)
  process.on('exit', () => {
    rmSync(pgParent, { recursive: true, force: true })
    rmSync(dir, { recursive: true, force: true })
  })
  const tmp = process.env.TMPDIR
  process.env.TMPDIR = pgParent
  const trial = await startTrial(dir).finally(() => { if (tmp === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = tmp })
  const engine = (i: number) => `WEIR_SECRET_KEY='trial passphrase' npx weir run ${trial.channelFiles[i]} --data-dir ${join(dir, `engine-${i + 1}`)} --store '${trial.storeUrl}' --admin 127.0.0.1:${9091 + i}`
  io.out([
    'Weir trial: an embedded PostgreSQL, authorization server and partner API on 127.0.0.1, until Ctrl-C (then removed).',
    '',
    `Channel files: ${trial.channelFiles.join(', ')} (the same channel, each engine its own listener port)`,
    'Start two engines of a cluster, each in its own terminal (dashboard and /metrics on the --admin address):',
    `  ${engine(0)}`,
    `  ${engine(1)}`,
    'Send a message to either:',
    ...trial.ports.map((p) => `  curl -s -H 'content-type: application/json' -d '{"id":1}' http://127.0.0.1:${p}/orders`),
    'Break the partner API, and mend it:',
    `  curl -X POST ${trial.controlUrl}/fail/503     curl -X POST ${trial.controlUrl}/ok`,
    `The cluster's state: npx weir cluster status --store '${trial.storeUrl}'`,
  ].join('\n'))
  let stopping = false
  // Ctrl-C reaches npm and this process both, and npm may send SIGTERM after: one stop, whatever comes.
  const stop = () => {
    if (stopping) return
    stopping = true
    io.out(`\nstopping: the partner API received ${trial.received()} request(s)`)
    // The PostgreSQL package stops its server and exits on the same signal, maybe before the close
    // below ends: the 'exit' handler above removes what is left.
    void trial.close().then(() => process.exit(0))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
