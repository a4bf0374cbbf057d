import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadAlerts } from '../../engine/alerts/index.ts'
import { alertsFileDefinitions } from '../../engine/definition-fingerprint.ts'
import { outlineDifferences } from '../../shared/store/postgres/engines.ts'
import { spawnWeirRun, startWeirRun, tempDir } from '../runtime/_helpers.ts'
import { testChannel, useClusterResources } from './_cluster.ts'
import { useEmbeddedPostgres } from '../_postgres.ts'

const NOWHERE = 'http://127.0.0.1:9/none'

/** An alerts file with webhooks `pager` (with a client-credentials credential) and `chat`, and one rule for each. */
function alertsFile(o: { pagerUrl?: string; pagerSecret?: string; chatRuleAge?: number } = {}) {
  return {
    credentials: { hooks: { tokenUrl: 'http://127.0.0.1:9/token', clientId: 'weir', clientAuth: { method: 'client_secret_post', secret: o.pagerSecret ?? 'literal-secret-one' } } },
    webhooks: { pager: { url: o.pagerUrl ?? 'http://127.0.0.1:9/pager', credential: 'hooks' }, chat: { url: 'http://127.0.0.1:9/chat' } },
    alerts: [
      { name: 'old-pager', condition: 'queue-age', maxAgeSeconds: 60, webhook: 'pager' },
      { name: 'old-chat', condition: 'queue-age', maxAgeSeconds: o.chatRuleAge ?? 60, webhook: 'chat' },
    ],
  }
}

describe('the definitions of an alerts file\'s webhook channels', () => {
  const dirs: Array<{ remove(): Promise<void> }> = []
  const definitionsOf = async (content: unknown) => {
    const d = await tempDir('weir-alerts-def-')
    dirs.push(d)
    await writeFile(join(d.path, 'alerts.json'), JSON.stringify(content))
    return alertsFileDefinitions(await loadAlerts(join(d.path, 'alerts.json'), { env: {} }))
  }

  it('cover each webhook and its credential; not the rules (engines running different channels load different ones), nor a literal secret\'s value', async () => {
    try {
      const base = await definitionsOf(alertsFile())
      expect(Object.keys(base.fingerprints).sort()).toEqual(['weir-alerts.chat', 'weir-alerts.pager'])
      const moved = await definitionsOf(alertsFile({ pagerUrl: 'http://127.0.0.1:9/elsewhere' }))
      expect(moved.fingerprints['weir-alerts.pager']).not.toBe(base.fingerprints['weir-alerts.pager'])
      expect(moved.fingerprints['weir-alerts.chat']).toBe(base.fingerprints['weir-alerts.chat'])
      expect(outlineDifferences(moved.outlines['weir-alerts.pager']!, base.outlines['weir-alerts.pager']!).map((d) => d.pointer)).toEqual(['/webhooks/pager/url'])
      const rule = await definitionsOf(alertsFile({ chatRuleAge: 300 }))
      expect(rule).toEqual(base)
      const credential = await definitionsOf({ ...alertsFile(), credentials: { hooks: { ...alertsFile().credentials.hooks, clientId: 'other' } } })
      expect(outlineDifferences(credential.outlines['weir-alerts.pager']!, base.outlines['weir-alerts.pager']!).map((d) => d.pointer)).toEqual(['/credentials/hooks/clientId'])
      expect(credential.fingerprints['weir-alerts.chat']).toBe(base.fingerprints['weir-alerts.chat'])
      // A literal secret is the marker in both: another value is the same definition, and no digest of it is kept.
      const secret = await definitionsOf(alertsFile({ pagerSecret: 'literal-secret-two' }))
      expect(secret.fingerprints).toEqual(base.fingerprints)
      expect(secret.outlines).toEqual(base.outlines)
      expect(base.outlines['weir-alerts.pager']!['/credentials/hooks/clientAuth/secret']).toMatch(/^[0-9a-f]{12}$/)
    } finally {
      await Promise.all(dirs.splice(0).map((d) => d.remove()))
    }
  })
})

const pg = useEmbeddedPostgres()
const { children, dirs, database } = useClusterResources(() => pg.server, 'alerts_definitions')

describe('weir run in a cluster, with an alerts file', () => {
  it('an engine whose alerts file sends a webhook elsewhere is refused, naming its internal channel and the pointer; the same file joins', async () => {
    const { url, db } = await database()
    const d = await tempDir('weir-alerts-def-')
    dirs.push(d)
    for (const e of ['a', 'b', 'c']) await writeFile(join(d.path, `${e}.json`), JSON.stringify(testChannel(NOWHERE, {}, `${e}.port`)))
    await writeFile(join(d.path, 'alerts.json'), JSON.stringify(alertsFile()))
    await writeFile(join(d.path, 'moved.json'), JSON.stringify(alertsFile({ pagerUrl: 'http://127.0.0.1:9/elsewhere' })))
    const args = (file: string) => ['--store', url, '--admin', 'off', '--alerts', join(d.path, file)]
    const a = await startWeirRun(join(d.path, 'a.json'), join(d.path, 'a'), '../a.port', children, args('alerts.json'))
    await startWeirRun(join(d.path, 'b.json'), join(d.path, 'b'), '../b.port', children, args('alerts.json'))
    const rows = await db.query<{ channels: Record<string, string> }>('SELECT channels FROM weir_engines ORDER BY started_at')
    expect(Object.keys(rows[0]!.channels).sort()).toEqual(['clustered', 'weir-alerts.chat', 'weir-alerts.pager'])
    expect(rows[1]!.channels).toEqual(rows[0]!.channels)
    const c = spawnWeirRun(join(d.path, 'c.json'), join(d.path, 'c', 'data'), children, args('moved.json'))
    expect((await c.exited).code).toBe(1)
    expect(c.output()).toContain(`weir run: this engine's definition of channel "weir-alerts.pager" differs from that of the live engine`)
    expect(c.output()).toContain(`pid ${a.child.pid}) at /webhooks/pager/url: every engine`)
  }, 90_000)
})
