import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEmbeddedApi, type EmbeddedApi } from '../../engine/embedded/api.ts'
import { createLogger, SENSITIVE_HEADERS } from '../../shared/log/index.ts'
import { Secret } from '../../shared/secret.ts'

let api: EmbeddedApi
beforeAll(async () => { api = await startEmbeddedApi() })
afterAll(() => api.close())

describe('embedded API: recorded requests', () => {
  it('mask every header the logger redacts (keeping only an auth scheme) and any registered secret value', async () => {
    const registered = new Secret('test-material:registered-header-secret', '$env:WEIR_TEST_HEADER_SECRET').reveal()
    const sent: Record<string, string> = {
      'authorization': 'test-material-token-without-scheme',
      'proxy-authorization': 'Basic dGVzdDp0ZXN0LW1hdGVyaWFs',
      'dpop': 'eyJ0eXAiOiJkcG9wK2p3dCJ9.test-material.sig',
      'cookie': 'sid=test-material-session; theme=dark',
      'x-api-key': 'test-material-api-key',
      'x-vendor-key': registered,
      'x-trace': `trace ${registered} end`,
      'x-plain': 'kept as is',
    }
    const res = await fetch(`${api.url}/anything`, { headers: sent })
    await res.arrayBuffer()
    const rec = api.requests.at(-1)!
    expect(rec.headers).toMatchObject({
      'authorization': '[REDACTED]',
      'proxy-authorization': 'Basic [REDACTED]',
      'dpop': '[REDACTED]',
      'cookie': '[REDACTED]',
      'x-api-key': '[REDACTED]',
      'x-vendor-key': '[REDACTED]',
      'x-trace': 'trace [REDACTED] end',
      'x-plain': 'kept as is',
    })
    const recorded = JSON.stringify(api.requests)
    for (const [k, v] of Object.entries(sent)) if (k !== 'x-plain') expect(recorded).not.toContain(k === 'x-trace' ? registered : v.split(' ').at(-1))
  })

  it('the shared list is what the logger redacts', () => {
    const lines: string[] = []
    const log = createLogger({ pretty: false, destination: new Writable({ write(c, _e, cb) { lines.push(String(c)); cb() } }) })
    log.info({ req: { headers: Object.fromEntries(SENSITIVE_HEADERS.map((h) => [h, `test-material-${h}`])) } }, 'request')
    expect(SENSITIVE_HEADERS).toEqual(expect.arrayContaining(['authorization', 'proxy-authorization', 'dpop', 'cookie', 'x-api-key']))
    for (const h of SENSITIVE_HEADERS) expect(lines.join('')).not.toContain(`test-material-${h}`)
  })
})
