// The dashboard's browser tests share this: one headless Chromium per file, screenshots (into
// docs/screenshots with WEIR_SCREENSHOTS=1, else a temporary directory so a run leaves the tree
// clean), an admin server with an operator and a viewer token, and a page per test.
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest'
import { startAdminServer, type AdminServer, type AdminServerOptions } from '../../engine/admin/index.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { launchBrowser } from '../_browser.ts'
import { feedSource, useRuntimeFixture, type RuntimeFixture } from '../runtime/_helpers.ts'
import { adminConfig } from './_admin.ts'

export const OPERATOR_TOKEN = 'op-5d2e8a1c7f3b49e0b6a4'
export const VIEWER_TOKEN = 'vw-1b7c3e9d5f2a48c6e0d8'
const config = () => adminConfig({ tokens: [{ name: 'olivia', role: 'operator', token: { $env: 'OP' } }, { name: 'victor', role: 'viewer', token: { $env: 'VW' } }] }, { OP: OPERATOR_TOKEN, VW: VIEWER_TOKEN })

/** The file's browser, and `shot(page, name)` saving a full-page screenshot. */
export function useBrowser() {
  const b = { browser: undefined as unknown as Browser, dir: '' }
  beforeAll(async () => {
    b.browser = await launchBrowser()
    if (process.env.WEIR_SCREENSHOTS === '1') await mkdir(b.dir = resolve(import.meta.dirname, '../../docs/screenshots'), { recursive: true })
    else b.dir = await mkdtemp(join(tmpdir(), 'weir-screenshots-'))
  }, 60_000)
  afterAll(async () => {
    await b.browser?.close()
    if (process.env.WEIR_SCREENSHOTS !== '1') await rm(b.dir, { recursive: true, force: true })
  })
  return { b, shot: (page: Page, name: string) => page.screenshot({ path: resolve(b.dir, `${name}.png`), fullPage: true }) }
}

export interface DashboardFixture {
  rt: RuntimeFixture
  feed: ReturnType<typeof feedSource>
  admin: AdminServer
  url: string
  /** The channel `feed` emits into (the first `start` returns). */
  handle: ChannelHandle
  page: Page
}

/**
 * Per test: the runtime fixture, an admin server on 127.0.0.1:0 attached to the channels `start`
 * returns (the first one fed by `fx.feed`), and a fresh browser page.
 */
export function useDashboard(browser: { browser: Browser }, start: (fx: DashboardFixture) => Promise<ChannelHandle[]>, admin: Partial<AdminServerOptions> = {}): DashboardFixture {
  const rt = useRuntimeFixture()
  const fx = { rt } as DashboardFixture
  beforeEach(async () => {
    fx.feed = feedSource()
    fx.admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: config(), log: silentLogger, ...admin })
    fx.url = fx.admin.url
    const handles = await start(fx)
    fx.handle = handles[0]!
    fx.admin.attach({ store: rt.store, handles })
    fx.page = await browser.browser.newPage({ viewport: { width: 1200, height: 760 } })
  })
  afterEach(async () => {
    await fx.page.close()
    await fx.admin.close()
  })
  return fx
}

export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/login`)
  await page.fill('input[name="token"]', token)
  await Promise.all([page.waitForURL(`${url}/`), page.click('form.login button')])
}

/** Sends messages through the fed channel and waits until it is idle. */
export async function feed(fx: DashboardFixture, bodies: unknown[]): Promise<string[]> {
  const ids: string[] = []
  for (const b of bodies) ids.push((await fx.feed.emit(b)).id)
  await fx.handle.whenIdle({ timeoutMs: 10_000 })
  return ids
}
