// Node-RED embedded as a module, in its own process, for bench/peers/peers.ts. Plain JavaScript so that
// Node-RED runs on bare `node`, as its users run it (no TypeScript loader in the process under test).
//
//   WEIR_PEERS_NODE_RED_DIR=<userDir with flows.json and settings.json> node bench/peers/node-red.mjs
//
// Follows Node-RED's embedding guide (RED.init(server, settings), RED.start()); the server hands every
// request to RED.httpNode (httpNodeRoot "/"). Prints {"msg":"ready","url":…} once the flow runs and
// stops on SIGTERM or SIGINT.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { join } from 'node:path'

const userDir = process.env.WEIR_PEERS_NODE_RED_DIR
if (!userDir) throw new Error('WEIR_PEERS_NODE_RED_DIR is not set')
const settings = { ...JSON.parse(readFileSync(join(userDir, 'settings.json'), 'utf8')), userDir }
const RED = createRequire(import.meta.url)('node-red')
const server = createServer((req, res) => RED.httpNode(req, res))
RED.init(server, settings)
// start() resolves before the flows run (and the http in route exists): wait for them too.
const flowsStarted = new Promise((ok) => RED.events.once('flows:started', ok))
await RED.start()
await flowsStarted
await new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(undefined)))
const { port } = /** @type {import('node:net').AddressInfo} */ (server.address())
process.stdout.write(JSON.stringify({ msg: 'ready', url: `http://127.0.0.1:${port}/in` }) + '\n')

const stop = async () => {
  setTimeout(() => process.exit(1), 5000).unref()
  server.closeAllConnections()
  server.close()
  await RED.stop()
  process.exit(0)
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
