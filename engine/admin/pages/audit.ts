import { Refusal } from '../../../shared/inbound/refusal.ts'
import { escapeControl } from '../../../shared/http/excerpt.ts'
import type { AuditEntry, MessageStore } from '../../../shared/store/index.ts'
import { iso } from '../../message-view.ts'
import type { ApiSources } from '../api.ts'
import type { Auth } from '../auth.ts'
import { sendJson } from '../http.ts'
import type { Router } from '../router.ts'
import { html, layout, pageUser, sendHtml } from './html.ts'
import { storeOf } from './messages.ts'

const PAGE = 100

/** Where a page of the audit log starts: before `before` (epoch ms), skipping the first `skip` entries of that instant already shown. */
function cursorOf(params: URLSearchParams): { before?: number; skip: number } {
  const before = params.get('before')
  const skip = params.get('skip') ?? '0'
  if ((before !== null && !/^\d{1,15}$/.test(before)) || !/^\d{1,4}$/.test(skip)) throw new Refusal(400, 'before and skip must be the numbers of the "older" link')
  return { ...(before !== null ? { before: Number(before) } : {}), skip: Number(skip) }
}

/**
 * A page of the audit log, newest first, and the cursor of the next one. Entries of one millisecond
 * may straddle two pages: the cursor names the instant and how many of its entries were shown.
 */
export async function auditPage(store: MessageStore, cursor: { before?: number; skip: number }, size = PAGE): Promise<{ entries: AuditEntry[]; next?: { before: number; skip: number } }> {
  const rows = await store.auditLog({ limit: size + cursor.skip + 1, ...(cursor.before !== undefined ? { before: cursor.before } : {}) })
  const entries = rows.slice(cursor.skip, cursor.skip + size)
  if (rows.length <= cursor.skip + size) return { entries }
  const last = entries.at(-1)!.at
  const sameInstant = rows.slice(0, cursor.skip + size).filter((e) => e.at === last).length
  return { entries, next: { before: last + 1, skip: sameInstant } }
}

/** GET /audit (the dashboard's page) and GET /api/audit: who did what, when, to how many messages. */
export function auditRoutes(router: Router, src: ApiSources, auth: Auth): void {
  router.get('/audit', async (ctx) => {
    const user = pageUser(ctx, auth)
    const { entries, next } = await auditPage(storeOf(src), cursorOf(ctx.url.searchParams))
    const body = html`<h1>Audit log</h1><p class="pager">Operator actions, newest first: from the dashboard, the API and the command line (<code>cli:&lt;user&gt;</code>).${ctx.url.searchParams.has('before') ? html` <a id="newest" href="/audit">← newest</a>` : ''}${next ? html` <a rel="next" id="older" href="/audit?${new URLSearchParams({ before: String(next.before), skip: String(next.skip) })}">older →</a>` : ''}</p>
<table class="grid" id="audit"><thead><tr><th>When</th><th>Who</th><th>Action</th><th>On what</th><th>Messages</th></tr></thead><tbody>
${entries.map((e) => html`<tr><td>${iso(e.at)}</td><td>${escapeControl(e.actor)}</td><td>${escapeControl(e.action)}</td><td>${escapeControl(e.target)}</td><td class="num">${e.count}</td></tr>`)}
</tbody></table>${entries.length === 0 ? html`<p class="empty">No action recorded yet.</p>` : ''}`
    sendHtml(ctx.res, 200, layout('Audit log', user, body))
  })
  router.get('/api/audit', async (ctx) => {
    const { entries, next } = await auditPage(storeOf(src), cursorOf(ctx.url.searchParams))
    sendJson(ctx.res, 200, { entries: entries.map((e) => ({ ...e, at: new Date(e.at).toISOString() })), ...(next ? { next } : {}) })
  })
}
