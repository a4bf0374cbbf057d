import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, beforeEach } from 'vitest'

/**
 * Stands for a user's real service on this machine (a local API, a lookup service) that a
 * `weir test` case must not reach unless the test file keeps its URL (`keepUrls`): it records each
 * request (`METHOD path`) and answers `status` with the JSON `body`. Started once per file, its
 * record emptied before each test.
 */
export function useLocalService(status: number, body: string): { readonly url: string; readonly received: string[] } {
  let server: Server
  const service = { url: '', received: [] as string[] }
  beforeAll(async () => {
    server = createServer((req, res) => { service.received.push(`${req.method} ${req.url}`); req.resume(); res.writeHead(status, { 'content-type': 'application/json' }).end(body) })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    service.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  beforeEach(() => { service.received.length = 0 })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  })
  return service
}
