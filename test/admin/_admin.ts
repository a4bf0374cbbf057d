import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { afterEach, beforeEach } from 'vitest'
import { parseAdminConfig, OPEN_CONFIG, type AdminConfig } from '../../engine/admin/config.ts'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import type { Logger } from '../../shared/log/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { destination, feedSource, useRuntimeFixture } from '../runtime/_helpers.ts'

export interface Answer {
  status: number
  headers: IncomingHttpHeaders
  text: string
  json: any
}

/**
 * One request to a loopback server through node:http (so that `Host`, `Origin` and `Cookie` are
 * exactly what the test says); `from` is the client's own address (another 127.0.0.x: another client).
 */
export function call(base: string, path: string, o: { method?: string; headers?: Record<string, string>; body?: string; from?: string } = {}): Promise<Answer> {
  const url = new URL(path, base)
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: o.method ?? 'GET', headers: o.headers ?? {}, ...(o.from ? { localAddress: o.from } : {}) }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (text += d))
      res.on('end', () => {
        let json: unknown
        try { json = JSON.parse(text) } catch { json = undefined }
        resolve({ status: res.statusCode!, headers: res.headers, text, json })
      })
    })
    req.on('error', reject)
    req.end(o.body)
  })
}

/** The Authorization header of an admin token or OIDC access token. */
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** The `weir_session` cookie a response sets, as a Cookie header value. */
export const sessionCookie = (a: Answer): string => String(a.headers['set-cookie']?.[0] ?? '').split(';')[0]!

/** An admin config from an object, with `$env` tokens resolved from `env`. */
export const adminConfig = (raw: unknown, env: NodeJS.ProcessEnv = {}): AdminConfig => parseAdminConfig(raw, '/tmp/admin.json', env).config

/**
 * Per test: a runtime fixture with one channel ("orders": a feed source, destinations "api" and
 * "audit" posting to the loopback API) and an admin server on 127.0.0.1:0 attached to it.
 */
export function useAdminFixture(config: () => AdminConfig = () => OPEN_CONFIG, log: () => Logger = () => silentLogger) {
  const rt = useRuntimeFixture()
  const fx = { rt, feed: feedSource(), admin: undefined as unknown as AdminServer, url: '' }
  beforeEach(async () => {
    fx.feed = feedSource()
    fx.admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: config(), log: log() })
    fx.url = fx.admin.url
    const h = await rt.start({ name: 'orders', source: fx.feed.definition, destinations: [destination('api', rt.api.url), destination('audit', rt.api.url)] }, { observer: fx.admin.observer })
    fx.admin.attach({ store: rt.store, handles: [h] })
  })
  afterEach(async () => {
    await fx.admin.close()
  })
  return fx
}

/** The value of one sample in Prometheus text (`name{a="x",b="y"} value`), or undefined when absent. Labels must match exactly. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const have = (m[2] ?? '').split(/,(?=[a-zA-Z_]\w*=")/).filter(Boolean).sort().join(',')
    if (have === want) return Number(m[3])
  }
  return undefined
}
