import { REJECT_REASONS, type RejectReason } from '../../../shared/component.ts'
import { Refusal } from '../../../shared/inbound/refusal.ts'
import type { ChannelHandle } from '../../runtime/index.ts'
import { channelView, sinceStart, type ApiSources } from '../api.ts'
import type { Auth } from '../auth.ts'
import type { Router } from '../router.ts'
import { actionForm, age, html, layout, pageUser, sendHtml, type PageUser, type Raw } from './html.ts'

export const CHANNEL_STATUSES = ['running', 'paused', 'failing', 'stopping', 'stopped'] as const
const PAGE_SIZES = [25, 50, 100, 200]

/** The channel list's query: name filter, status filter, page (from 1) and page size. */
export function listQuery(params: URLSearchParams) {
  const q = (params.get('q') ?? '').trim()
  const wanted = params.get('status') || undefined
  const status = CHANNEL_STATUSES.find((s) => s === wanted)
  if (wanted !== undefined && !status) throw new Refusal(400, `status must be one of ${CHANNEL_STATUSES.join(', ')}`)
  const size = PAGE_SIZES.find((n) => String(n) === params.get('size')) ?? 50
  const page = Math.max(1, Math.floor(Number(params.get('page')) || 1))
  return { q, status, size, page }
}

type View = Awaited<ReturnType<typeof channelView>>

/** Whether Pause / Resume can act on a channel in `status`: not on one stopping or stopped (it runs no more until the engine restarts). */
export const canToggle = (status: string) => status !== 'stopped' && status !== 'stopping'

/** "destinations paused: api, audit" for a channel not paused itself whose destinations some are: the list shows it beside the status. */
export function pausedDestinations(v: Pick<View, 'status' | 'destinations'>): string {
  const paused = v.status === 'paused' ? [] : v.destinations.filter((d) => d.paused).map((d) => d.name)
  return paused.length ? `destinations paused: ${paused.join(', ')}` : ''
}

/** "refusing input: queue full (queueLimit) since 14:02:11 UTC" while the channel refuses its source's input; empty while it accepts. */
export function refusingText(v: Pick<View, 'refusing'>): string {
  if (!v.refusing) return ''
  return `refusing input: ${v.refusing.limit === 'queueLimit' ? 'queue' : 'store'} full (${v.refusing.limit}) since ${v.refusing.since.slice(11, 19)} UTC`
}

/** "(unauthorized 2 · unsupported media type 1)": the reasons input was rejected for, those counted only; empty when none. */
export function rejectedByReason(by: Readonly<Record<RejectReason, number>>): string {
  const shown = REJECT_REASONS.filter((r) => by[r] > 0).map((r) => `${r.replaceAll('_', ' ')} ${by[r]}`)
  return shown.length ? `(${shown.join(' · ')})` : ''
}

function channelRow(v: View & { inError: number | undefined }, user: PageUser, back: string): Raw {
  const paused = v.status === 'paused'
  const action = user.role === 'operator' && canToggle(v.status) ? actionForm(user, `/channels/${encodeURIComponent(v.name)}/${paused ? 'resume' : 'pause'}`, paused ? 'Resume' : 'Pause', { back }) : ''
  return html`<tr data-channel="${v.name}">
<td><a href="/channels/${encodeURIComponent(v.name)}">${v.name}</a></td>
<td><span class="status s-${v.status}" data-field="status">${v.status}</span> <small data-field="pausedDestinations">${pausedDestinations(v)}</small> <small data-field="refusing" class="refusing">${refusingText(v)}</small></td>
<td class="num" data-field="received">${v.counters.received}</td><td class="num" data-field="delivered">${v.counters.delivered}</td>
<td class="num" data-field="errors">${v.counters.errors}</td><td class="num" data-field="rejected">${v.counters.rejected}</td><td class="num" data-field="inError">${v.inError ?? '–'}</td><td class="num" data-field="queueDepth">${v.queueDepth ?? '–'}</td>
<td class="num" data-field="oldest">${age(v.oldestQueuedAgeSec)}</td><td>${action}</td></tr>`
}

function filterForm(query: ReturnType<typeof listQuery>): Raw {
  return html`<form method="get" action="/" class="filters">
<label>Name <input type="search" name="q" value="${query.q}" placeholder="contains…"></label>
<label>Status <select name="status"><option value="">any</option>${CHANNEL_STATUSES.map((s) => html`<option${query.status === s ? html` selected` : ''}>${s}</option>`)}</select></label>
<label>Per page <select name="size">${PAGE_SIZES.map((n) => html`<option${query.size === n ? html` selected` : ''}>${n}</option>`)}</select></label>
<button type="submit">Filter</button></form>`
}

function pager(query: ReturnType<typeof listQuery>, total: number): Raw {
  const pages = Math.max(1, Math.ceil(total / query.size))
  const link = (page: number) => `/?${new URLSearchParams({ ...(query.q ? { q: query.q } : {}), ...(query.status ? { status: query.status } : {}), size: String(query.size), page: String(page) })}`
  return html`<p class="pager">${total} channel(s) · page ${Math.min(query.page, pages)} of ${pages}
${query.page > 1 ? html` <a rel="prev" href="${link(query.page - 1)}">← previous</a>` : ''}${query.page < pages ? html` <a rel="next" href="${link(query.page + 1)}">next →</a>` : ''}</p>`
}

/** The handles matching the query, and the page of them to show. */
export function pageOf(handles: readonly ChannelHandle[], query: ReturnType<typeof listQuery>) {
  const needle = query.q.toLowerCase()
  const matching = handles.filter((h) => (!needle || h.name.toLowerCase().includes(needle)) && (!query.status || h.status() === query.status))
  return { total: matching.length, shown: matching.slice((query.page - 1) * query.size, query.page * query.size) }
}

/** GET /: the channel list (server-rendered; dashboard.js keeps the rows shown live from the /api/events stream, or by polling /api/channels). */
export function channelListPage(router: Router, src: ApiSources, auth: Auth): void {
  router.get('/', async (ctx) => {
    const user = pageUser(ctx, auth)
    const query = listQuery(ctx.url.searchParams)
    const { total, shown } = pageOf(src.handles(), query)
    const store = src.store()
    const oldest = store ? await store.oldestPending() : {}
    const views = await Promise.all(shown.map(async (h) => ({ ...(await channelView(h, store, oldest)), inError: store ? (await store.stats(h.name)).error : undefined })))
    const since = html`<br><small>${sinceStart(src)}</small>`
    const body = html`<h1>Channels</h1>${filterForm(query)}${pager(query, total)}
<table id="channels" class="grid" data-stream="/api/events?channels=${shown.map((h) => h.name).join(',')}" data-poll="/api/channels"><thead><tr><th>Channel</th><th>Status</th><th>Received${since}</th><th>Delivered${since}</th><th>Errors${since}</th><th title="Input the source refused before it became a message (malformed, too large, unauthorized…): it is not in the message log; the channel's page gives the reasons">Rejected${since}</th><th title="Messages in error in the message log now (as the page loaded): they stay after a restart until resubmitted or purged">In error<br><small>in the log</small></th><th>Queue</th><th>Oldest queued</th><th></th></tr></thead>
<tbody>${views.map((v) => channelRow(v, user, `/${ctx.url.search}`))}</tbody></table>
${total === 0 ? html`<p class="empty">No channel matches.</p>` : ''}`
    sendHtml(ctx.res, 200, layout('Channels', user, body))
  })
}
