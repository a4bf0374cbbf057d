import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseAdminConfig } from '../../engine/admin/config.ts'
import { main } from '../../engine/cli.ts'
import { commandIO } from '../alerts/_alerts.ts'
import { tempDir } from '../runtime/_helpers.ts'

// Finding: `--admin-config` with `{"tokens": []}` started an open admin server ("auth: open
// (loopback)", everyone an operator), without a word. A config file that configures no way to
// authenticate is a mistake: refused at its JSON pointer.

const problemsOf = (raw: unknown) => {
  try {
    parseAdminConfig(raw, '/etc/weir/admin.json', {})
    return []
  } catch (e) {
    expect((e as { code: string }).code).toBe('ERR_CONFIG_INVALID')
    return (e as { problems: Array<{ pointer: string; message: string }> }).problems.map((p) => `${p.pointer}: ${p.message}`)
  }
}

const NO_AUTH = '/tokens: must have at least 1 item (or configure "jwt"): an admin config without tokens or jwt would leave the admin server open; to run it open on loopback, start without --admin-config'

describe('an admin config that configures no authentication', () => {
  it.each([
    ['empty tokens', { tokens: [] }],
    ['an empty object', {}],
    ['hosts alone', { hosts: ['weir-1.internal.example'] }],
    ['a session lifetime alone', { tokens: [], sessionTtlSec: 600 }],
  ])('%s is refused at /tokens', (_what, raw) => {
    expect(problemsOf(raw)).toEqual([NO_AUTH])
  })

  it('tokens or jwt, either alone, are accepted', () => {
    expect(problemsOf({ tokens: [{ name: 'ops', role: 'operator', token: 'x' }] })).toEqual([])
    expect(problemsOf({ tokens: [], jwt: { issuer: 'https://idp.example', audience: 'weir-admin' } })).toEqual([])
  })
})

describe('weir run --admin-config with no authentication', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  beforeEach(async () => { dir = await tempDir('weir-admin-noauth-') })
  afterEach(() => dir.remove())

  it('exits 1 naming admin.json#/tokens; the engine does not start', async () => {
    await writeFile(join(dir.path, 'ch.json'), JSON.stringify({
      name: 'ch', source: { type: 'http-listener', config: { host: '127.0.0.1', port: 0 } },
      destinations: [{ name: 'sink', type: 'http', config: { url: 'http://127.0.0.1:9/' } }],
    }))
    await writeFile(join(dir.path, 'admin.json'), JSON.stringify({ tokens: [] }))
    const t = commandIO(dir.path)
    const deadline = setTimeout(() => process.emit('SIGTERM', 'SIGTERM'), 10_000)
    const status = await main(['run', 'ch.json', '--admin', '127.0.0.1:0', '--admin-config', 'admin.json', '--data-dir', 'data'], t.io).finally(() => clearTimeout(deadline))
    expect(status).toBe(1)
    expect(t.err.join('\n')).toContain(`${join(dir.path, 'admin.json')}#${NO_AUTH}`)
    expect(t.out.join('\n') + t.err.join('\n')).not.toContain('open (loopback)')
  })
})
