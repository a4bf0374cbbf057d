import { join } from 'node:path'
import { builtinComponents } from '../../components/index.ts'
import { startChannel, type ChannelHandle, type RuntimeObserver } from '../../engine/runtime/index.ts'
import { loadChannelObject } from '../../shared/config/load.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import { silentLogger } from '../../shared/log/index.ts'
import type { RuntimeFixture } from '../runtime/_helpers.ts'

export const LISTENER_KEY = 'admin-listener-key-4c8e19b7'

/**
 * An http-listener channel `name` (port 0, an API key, a file destination) in the runtime fixture,
 * and `post(body, headers)` sending it a request (JSON with the right key unless `headers` say
 * otherwise) and giving the status.
 */
export async function startListener(rt: RuntimeFixture, name: string, observer: RuntimeObserver) {
  const raw = { name, source: { type: 'http-listener', config: { port: 0, apiKey: { value: { $env: 'LISTENER_KEY' } } } }, destinations: [{ name: 'out', type: 'file', config: { directory: join(rt.dir.path, 'out') } }] }
  const loaded = await loadChannelObject(raw, { file: join(rt.dir.path, `${name}.json`), env: { LISTENER_KEY }, registry: createRegistry(builtinComponents) })
  const handle: ChannelHandle = await startChannel(loaded, { store: rt.store, log: silentLogger, dataDir: rt.dir.path, observer })
  rt.handles.push(handle)
  const url = `http://127.0.0.1:${handle.source.address!()!.port}/`
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-api-key': LISTENER_KEY, ...headers } }).then((r) => r.status)
  return { handle, post }
}
