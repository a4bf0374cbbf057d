import { hostname } from 'node:os'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { startAdminServer } from '../../engine/admin/index.ts'
import { createMetrics } from '../../engine/admin/metrics.ts'
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../engine/embedded/postgres.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { openPostgresStore, openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { tempDir } from '../runtime/_helpers.ts'
import { call } from './_admin.ts'
import { useBrowser } from './_dashboard.ts'

const { b, shot } = useBrowser()
let server: EmbeddedPostgresServer
beforeAll(async () => { server = await startEmbeddedPostgres({ volatile: true }) }, 120_000)
afterAll(async () => { await server?.stop() })

/** An open admin server attached to `store` (no channel), a browser page, and their clean-up. */
async function dashboardOn(store: MessageStore, use: (page: Page, url: string) => Promise<void>): Promise<void> {
  const admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: OPEN_CONFIG, log: silentLogger })
  admin.attach({ store, handles: [] })
  const page = await b.browser.newPage({ viewport: { width: 1200, height: 420 } })
  try {
    await use(page, admin.url)
  } finally {
    await page.close()
    await admin.close()
  }
}

describe('cluster page', () => {
  it('with the PostgreSQL store: the nav links it and it lists both engines as weir cluster status does, this one marked', async () => {
    const url = await server.createDatabase('admin_cluster')
    const a = await openPostgresStore({ url, leaseMs: 60_000, version: '1.5.0' })
    const b = await openPostgresStore({ url, leaseMs: 60_000, version: '1.4.2' })
    try {
      expect(await b.leadership!.lead('poll/sftp-in')).toBe(true)
      await dashboardOn(a, async (page, base) => {
        await page.goto(`${base}/`)
        await page.click('header nav a[href="/cluster"]')
        expect(await page.textContent('h1')).toBe('Cluster')
        expect(await page.locator('#engines thead th').allTextContents()).toEqual(['Engine', 'Host', 'Pid', 'Version', 'Heartbeat', 'State', 'Claimed', 'Leads'])
        const rows = page.locator('#engines tbody tr')
        expect(await rows.count()).toBe(2)
        const self = page.locator(`tr[data-engine="${a.engineId}"]`)
        expect(await self.locator('td').first().textContent()).toBe(`${a.engineId} (this engine)`)
        expect(await self.locator('td').nth(3).textContent()).toBe('1.5.0')
        expect(await self.locator('[data-field="state"]').textContent()).toBe('live')
        const other = page.locator(`tr[data-engine="${b.engineId}"]`)
        expect(await other.locator('td').first().textContent()).toBe(b.engineId)
        expect(await other.locator('td').nth(2).textContent()).toBe(String(process.pid))
        expect(await other.locator('td').nth(4).textContent()).toMatch(/^\d+\.\d+s ago$/)
        expect(await other.locator('td').last().textContent()).toBe('poll/sftp-in')
        await shot(page, 'cluster')
        const api = await call(base, '/api/cluster')
        expect(api.json).toMatchObject({ clustered: true, self: a.engineId, engines: [{ id: a.engineId, version: '1.5.0', expired: false }, { id: b.engineId, version: '1.4.2', leads: ['poll/sftp-in'] }] })
      })
    } finally {
      await b.close()
      await a.close()
    }
  })

  it('shows each channel\'s definition on the live engines, a disagreement as an alert with where it differs, and engines that record none', async () => {
    const url = await server.createDatabase('admin_cluster_definitions')
    const fp = (c: string) => `sha256:${c.repeat(64)}`
    const orders = (urlDigest: string) => ({ '/name': 'n1', '/destinations/0/config/url': urlDigest, '/destinations/0/type': 't1' })
    const a = await openPostgresStore({ url, leaseMs: 60_000, definitions: { orders: fp('a'), billing: fp('b') }, outlines: { orders: orders('u1'), billing: { '/name': 'b1' } } })
    const b = await openPostgresStore({ url, leaseMs: 60_000, definitions: { orders: fp('a') }, outlines: { orders: orders('u1') } })
    const older = await openPostgresStore({ url, leaseMs: 60_000 })
    try {
      await dashboardOn(a, async (page, base) => {
        await page.goto(`${base}/cluster`)
        expect(await page.locator('#definitions thead th').allTextContents()).toEqual(['Channel', 'Engines', 'Definition'])
        expect(await page.locator('#definitions tbody tr').allTextContents()).toEqual([
          `billing1one engine (sha256:${'b'.repeat(16)})`, `orders2same on every engine (sha256:${'a'.repeat(16)})`,
        ])
        expect(await page.locator('[role="alert"]').count()).toBe(0)
        expect(await page.locator('[data-field="unknown"]').allTextContents()).toEqual([
          `unknown: ${older.engineId} (host ${(await older.cluster()).find((e) => e.id === older.engineId)!.host}, pid ${process.pid}) records no channel definitions (an older weir): whether it runs the same ones cannot be told`,
        ])
        // Engines that joined before another changed its file (as a race or an older weir could leave them): its destination sends elsewhere.
        await b.pool.query('UPDATE weir_engines SET channels = $1, outlines = $2 WHERE id = $3', [{ orders: fp('c') }, { orders: orders('u2') }, b.engineId])
        await page.reload()
        expect(await page.textContent('[role="alert"]')).toMatch(/^1 channel\(s\) run with different definitions on live engines/)
        expect(await page.locator('tr[data-channel="orders"] [data-field="definition"] .s-failing').textContent())
          .toBe(`DIFFERENT: sha256:${'a'.repeat(16)} on ${a.engineId}; sha256:${'c'.repeat(16)} on ${b.engineId}, differing at /destinations/0/config/url`)
        await shot(page, 'cluster-definitions')
        const api = await call(base, '/api/cluster')
        const { channels, engines } = api.json as { channels: unknown; engines: Array<Record<string, unknown>> }
        const at = [{ pointer: '/destinations/0/config/url', change: 'changed' }]
        expect(channels).toEqual([
          { channel: 'billing', engines: 1, fingerprints: [{ fingerprint: fp('b'), engines: [a.engineId] }] },
          { channel: 'orders', engines: 2, fingerprints: [{ fingerprint: fp('a'), engines: [a.engineId] }, { fingerprint: fp('c'), engines: [b.engineId], differences: at }] },
        ])
        expect(engines.map((e) => [e.id, e.conflicts, 'outlines' in e])).toEqual([
          [a.engineId, [], false], [b.engineId, [{ channel: 'orders', id: a.engineId, host: hostname(), pid: process.pid, differences: at }], false], [older.engineId, [], false],
        ])
      })
    } finally {
      await older.close()
      await b.close()
      await a.close()
    }
  })

  it('/metrics gives the engines by state and the channels whose definitions differ; with the embedded store no engines and no conflict', async () => {
    const url = await server.createDatabase('admin_cluster_metrics')
    const fp = (c: string) => `sha256:${c.repeat(64)}`
    const a = await openPostgresStore({ url, leaseMs: 60_000, definitions: { orders: fp('a') } })
    const b = await openPostgresStore({ url, leaseMs: 60_000, definitions: { orders: fp('a') } })
    const dir = await tempDir('weir-admin-cluster-metrics-')
    const alone = openSqliteStore({ dataDir: dir.path })
    const scrape = async (store: MessageStore) => (await createMetrics({ handles: () => [], store: () => store }).registry.metrics()).split('\n').filter((l) => l.startsWith('weir_cluster_'))
    try {
      expect(await scrape(a)).toEqual(['weir_cluster_engines{state="live"} 2', 'weir_cluster_engines{state="expired"} 0', 'weir_cluster_definition_conflicts 0'])
      // b stops heartbeating (its lease run out, not swept yet): expired, and its definition no longer counts.
      await a.pool.query('UPDATE weir_engines SET channels = $1, lease_until = clock_timestamp() - interval \'1 second\' WHERE id = $2', [{ orders: fp('c') }, b.engineId])
      expect(await scrape(a)).toEqual(['weir_cluster_engines{state="live"} 1', 'weir_cluster_engines{state="expired"} 1', 'weir_cluster_definition_conflicts 0'])
      // Live again with another definition (as a race or an older weir could leave it): a conflict.
      await a.pool.query('UPDATE weir_engines SET lease_until = clock_timestamp() + interval \'60 seconds\' WHERE id = $1', [b.engineId])
      expect(await scrape(a)).toEqual(['weir_cluster_engines{state="live"} 2', 'weir_cluster_engines{state="expired"} 0', 'weir_cluster_definition_conflicts 1'])
      expect(await scrape(alone)).toEqual(['weir_cluster_definition_conflicts 0'])
      // The engines table out of reach: the cluster gauges are left out, the scrape still answers.
      const unreachable = Object.assign(Object.create(alone) as MessageStore, { cluster: () => Promise.reject(new Error('ECONNREFUSED')) })
      expect(await scrape(unreachable)).toEqual(['weir_cluster_definition_conflicts 0'])
    } finally {
      await alone.close()
      await dir.remove()
      await b.close()
      await a.close()
    }
  })

  it('with the embedded SQLite store: the page says the engine runs alone', async () => {
    const dir = await tempDir('weir-admin-cluster-')
    const store = openSqliteStore({ dataDir: dir.path })
    try {
      await dashboardOn(store, async (page, base) => {
        await page.goto(`${base}/`)
        expect(await page.locator('header nav a').allTextContents()).toEqual(['Channels', 'Audit log', 'Credentials', 'Cluster'])
        await page.goto(`${base}/cluster`)
        expect(await page.textContent('[role="status"]')).toMatch(/^This engine runs alone: a single engine with the embedded \(SQLite\) store\./)
        expect(await page.locator('#engines').count()).toBe(0)
        expect((await call(base, '/api/cluster')).json).toEqual({ clustered: false, engines: [] })
      })
    } finally {
      await store.close()
      await dir.remove()
    }
  })
})
