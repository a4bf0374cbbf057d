/**
 * The benchmarks' baseline relay, run as its own process: a bare node:http server that forwards each
 * POST body to the sink through an undici Pool (16 connections) with a fixed Authorization, and answers
 * 202 once the sink answered 200 (502 otherwise). No store, no token logic: what a relay costs at least.
 *
 *   WEIR_RELAY_SINK_URL=http://127.0.0.1:…/fhir/Encounter WEIR_RELAY_AUTHORIZATION='Bearer …' node --import tsx bench/lib/relay.ts
 *
 * Listens on 127.0.0.1 (port 0), prints `{"msg":"ready","url":"http://127.0.0.1:<port>/"}` on stdout,
 * and stops on SIGTERM or SIGINT.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'

const sink = new URL(process.env.WEIR_RELAY_SINK_URL ?? '')
const authorization = process.env.WEIR_RELAY_AUTHORIZATION ?? ''
const pool = new Pool(sink.origin, { connections: 16 })
const server = createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    pool.request({
      method: 'POST', path: sink.pathname, body: Buffer.concat(chunks),
      headers: { authorization, 'content-type': 'application/json', 'x-seq': String(req.headers['x-seq']) },
    }).then(async (r) => {
      await r.body.text()
      res.writeHead(r.statusCode === 200 ? 202 : 502, { 'content-type': 'application/json' }).end('{}')
    }, () => res.writeHead(502).end())
  })
})
await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
process.stdout.write(JSON.stringify({ msg: 'ready', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` }) + '\n')

const stop = () => {
  server.closeAllConnections()
  server.close()
  void pool.close().finally(() => process.exit(0))
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
