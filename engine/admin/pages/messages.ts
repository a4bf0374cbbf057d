import { Refusal } from '../../../shared/inbound/refusal.ts'
import { escapeControl } from '../../../shared/http/excerpt.ts'
import { SEARCH_KEY_NAME } from '../../../shared/key-expression.ts'
import { MESSAGE_STATUSES, type ListFilter, type MessageStatus, type MessageStore, type StoredMessage } from '../../../shared/store/index.ts'
import { isWeirError } from '../../../shared/errors.ts'
import { parseSince } from '../../commands/messages.ts'
import { iso, shownErrors, shownMessage } from '../../message-view.ts'
import { listedReason } from '../../error-brief.ts'
import { auditAction, refusingOf, sinceStart, type ApiSources } from '../api.ts'
import type { Auth } from '../auth.ts'
import { requireRole, type RouteContext, type Router } from '../router.ts'
import { isFinished, oneAtATime, setDigest, unknownChannel, unknownSearchKey, unlessChanged } from '../../resubmit-set.ts'
import { canToggle, refusingText, rejectedByReason } from './channels.ts'
import { actionForm, html, layout, pageUser, sendHtml, type PageUser, type Raw } from './html.ts'

const LIMITS = [50, 100, 500]

/**
 * The channel a page or a resubmit names, refused (404, "did you mean") when the engine runs no
 * channel of that name and the log holds no message of it: a typo, not an empty message log.
 */
export async function knownChannel(src: ApiSources, channel: string): Promise<void> {
  const unknown = await unknownChannel(storeOf(src), channel, src.handles().map((h) => h.name))
  if (unknown) throw new Refusal(404, `no channel "${channel}": ${unknown}`)
}

export function storeOf(src: ApiSources): MessageStore {
  const store = src.store()
  if (!store) throw new Refusal(503, 'the engine is not running yet')
  return store
}

/** A time of the log's filter: an ISO date or a duration ago (10m, 2h, 7d); a bad one is the request's fault (400). */
function timeParam(params: URLSearchParams, name: 'since' | 'until'): number | undefined {
  const value = params.get(name)?.trim() || undefined
  try {
    return value === undefined ? undefined : parseSince(value, Date.now(), name)
  } catch (e) {
    if (isWeirError(e)) throw new Refusal(400, e.message)
    throw e
  }
}

/**
 * The message log's filter from the page's query: status, since and until (ISO date or 10m, 2h,
 * 7d ago), key (NAME=VALUE), limit, and `after` (the last `seq` of the previous page).
 */
export function logFilter(channel: string, params: URLSearchParams): ListFilter & { limit: number } {
  const status = params.get('status') || undefined
  if (status !== undefined && !MESSAGE_STATUSES.includes(status as MessageStatus)) throw new Refusal(400, `status must be one of ${MESSAGE_STATUSES.join(', ')}`)
  const since = timeParam(params, 'since')
  const until = timeParam(params, 'until')
  const key = params.get('key')?.trim() || undefined
  const eq = key?.indexOf('=') ?? -1
  if (key !== undefined && (eq < 1 || !new RegExp(SEARCH_KEY_NAME).test(key.slice(0, eq)) || eq === key.length - 1)) throw new Refusal(400, 'key must be NAME=VALUE with NAME a search key of the channel (options.searchKeys), e.g. mrn=203713')
  const limit = LIMITS.find((n) => String(n) === params.get('limit')) ?? 100
  const after = params.get('after')
  if (after !== null && !/^\d{1,15}$/.test(after)) throw new Refusal(400, 'after must be a message sequence number (from the "older" link)')
  return {
    channel, limit,
    ...(status !== undefined ? { status: status as MessageStatus } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
    ...(key !== undefined ? { key: { name: key.slice(0, eq), value: key.slice(eq + 1) } } : {}),
    ...(after !== null ? { after: Number(after) } : {}),
  }
}

/**
 * The log's filter (see logFilter), refused (400) when its key names a search key that neither the
 * channel's `options.searchKeys` nor any message in the log has: a typo finds nothing, silently.
 */
export async function checkedLogFilter(src: ApiSources, channel: string, params: URLSearchParams): Promise<ListFilter & { limit: number }> {
  const filter = logFilter(channel, params)
  if (filter.key) {
    const unknown = await unknownSearchKey(storeOf(src), filter.key.name, src.handles().find((h) => h.name === channel)?.searchKeys ?? [])
    if (unknown) throw new Refusal(400, `key ${filter.key.name}: ${unknown}`)
  }
  return filter
}

function destinationsTable(src: ApiSources, channel: string, user: PageUser, back: string): Raw {
  const handle = src.handles().find((h) => h.name === channel)
  if (!handle) return html``
  const status = handle.status()
  const path = `/channels/${encodeURIComponent(channel)}`
  const toggle = (paused: boolean, fields: Record<string, string>) => user.role === 'operator' && canToggle(status) ? actionForm(user, `${path}/${paused ? 'resume' : 'pause'}`, paused ? 'Resume' : 'Pause', { ...fields, back }) : ''
  const c = handle.counters()
  const live = `/api/events?channels=${encodeURIComponent(channel)}`
  return html`<section id="channel-live" data-channel="${channel}" data-stream="${live}" data-poll="/api/channels">
<p>Channel status <span class="status s-${status}" id="channel-status" data-field="status">${status}</span> <small data-field="refusing" class="refusing">${refusingText({ refusing: refusingOf(handle) })}</small> ${toggle(status === 'paused', {})}
· ${sinceStart(src)}: received <strong data-field="received">${c.received}</strong> · delivered <strong data-field="delivered">${c.delivered}</strong> · errors <strong data-field="errors">${c.errors}</strong>
· rejected <strong data-field="rejected">${c.rejected}</strong> <span data-field="rejectedByReason">${rejectedByReason(handle.rejections())}</span></p>
<table class="grid" id="destinations"><thead><tr><th>Destination</th><th>Type</th><th>Paused</th><th>Breaker</th><th></th></tr></thead><tbody>
${handle.destinations().map((d) => html`<tr data-destination="${d.name}"><td>${d.name}</td><td>${d.type}</td><td data-field="paused">${d.paused ? 'paused' : 'no'}</td><td data-field="breaker">${d.breaker}</td><td>${toggle(d.paused, { destination: d.name })}</td></tr>`)}
</tbody></table></section>`
}

function logFilterForm(channel: string, params: URLSearchParams, limit: number | undefined): Raw {
  const status = params.get('status') ?? ''
  return html`<form method="get" action="/channels/${encodeURIComponent(channel)}" class="filters">
<label>Status <select name="status"><option value="">any</option>${MESSAGE_STATUSES.map((s) => html`<option${status === s ? html` selected` : ''}>${s}</option>`)}</select></label>
<label>Since <input name="since" value="${params.get('since') ?? ''}" placeholder="10m, 2h, 7d, 2026-11-30 or 2026-11-30T08:00Z"></label>
<label>Until <input name="until" value="${params.get('until') ?? ''}" placeholder="10m, 2h, 7d, 2026-11-30 or 2026-11-30T08:00Z"></label>
<label>Key <input type="search" name="key" value="${params.get('key') ?? ''}" placeholder="mrn=203713"></label>
<label>Show <select name="limit">${LIMITS.map((n) => html`<option${limit === n ? html` selected` : ''}>${n}</option>`)}</select></label>
<button type="submit">Search</button></form>`
}

/** The log filter's query (without paging), for the links that keep it. */
export function filterQuery(params: URLSearchParams, extra: Record<string, string> = {}): string {
  const kept = new URLSearchParams()
  for (const name of ['status', 'since', 'until', 'key', 'limit']) {
    const v = params.get(name)?.trim()
    if (v) kept.set(name, v)
  }
  for (const [k, v] of Object.entries(extra)) kept.set(k, v)
  return kept.toString()
}

function logPager(channel: string, params: URLSearchParams, list: readonly StoredMessage[], limit: number): Raw {
  const base = `/channels/${encodeURIComponent(channel)}?`
  const paged = params.has('after')
  const older = list.length === limit ? html` <a rel="next" id="older" href="${base}${filterQuery(params, { after: String(list.at(-1)!.seq) })}">older →</a>` : ''
  const count = list.length === limit ? `showing ${limit}, newest first;` : `${list.length} message(s), newest first`
  return html`<p class="pager">${count}${paged ? ' (an older page)' : ''}${paged ? html` <a id="newest" href="${base}${filterQuery(params)}">← newest</a>` : ''}${older}</p>`
}

/** This page as Pause / Resume return to it: its filters and paging, without the notice of an earlier resubmit. */
function pageAfterAction(url: URL): string {
  const query = new URLSearchParams(url.searchParams)
  query.delete('resubmitted')
  return `${url.pathname}${query.size ? `?${query}` : ''}`
}

/** GET /channels/:name: the channel's destinations (pause, resume) and its message log, newest first, filtered. */
export function messageLogPage(router: Router, src: ApiSources, auth: Auth): void {
  router.get('/channels/:name', async (ctx) => {
    const user = pageUser(ctx, auth)
    const channel = ctx.params.name!
    await knownChannel(src, channel)
    const filter = await checkedLogFilter(src, channel, ctx.url.searchParams)
    const list = await storeOf(src).list(filter)
    const errors = await shownErrors(storeOf(src), list)
    const resubmitted = ctx.url.searchParams.get('resubmitted')
    const notice = resubmitted && /^\d+$/.test(resubmitted) ? html`<p class="notice" role="status" id="resubmitted">Resubmitted ${Number(resubmitted).toLocaleString('en-US')} message(s): they are queued again.</p>` : ''
    const body = html`<h1>Channel ${channel}</h1>${notice}${destinationsTable(src, channel, user, pageAfterAction(ctx.url))}
<h2>Message log</h2>${logFilterForm(channel, ctx.url.searchParams, filter.limit)}
${logPager(channel, ctx.url.searchParams, list, filter.limit)}${user.role === 'operator' ? html`<p><a class="button" id="resubmit-set" href="/channels/${encodeURIComponent(channel)}/resubmit?${filterQuery(ctx.url.searchParams)}">Resubmit the messages this filter matches…</a></p>` : ''}
<table class="grid" id="messages"><thead><tr><th>Message</th><th>Status</th><th>Received</th><th>Updated</th><th>Reason</th></tr></thead><tbody>
${list.map((m) => html`<tr><td><a class="mono" href="/messages/${encodeURIComponent(m.id)}">${escapeControl(m.id)}</a></td><td><span class="status s-${m.status}">${m.status}</span></td><td>${iso(m.receivedAt)}</td><td>${iso(m.updatedAt)}</td><td>${listedReason(m, errors.get(m), 120)}</td></tr>`)}
</tbody></table>`
    sendHtml(ctx.res, 200, layout(`Channel ${channel}`, user, body))
  })
}

/**
 * The body as text, controls escaped as `weir messages show` escapes them: JSON pretty-printed (its
 * strings may hold DEL, C1 controls, bidi overrides that JSON.stringify leaves raw), other text with
 * HL7 v2 segments (CR) one a line. A U+202E in an MRN shows as `\u202e`, not as reversed text.
 */
export function bodyText(body: unknown): string {
  return escapeControl(typeof body === 'string' ? body : JSON.stringify(body, null, 2) ?? '', { lines: true })
}

type Shown = ReturnType<typeof shownMessage>
const cell = (v: unknown) => v === undefined || v === null ? '–' : escapeControl(String(v))

function messageBody(s: Shown, user: PageUser, notice: string | undefined): Raw {
  const url = `/messages/${encodeURIComponent(s.id)}`
  const deliveries = s.deliveries as Array<Record<string, unknown>>
  const attempts = s.attempts as Array<Record<string, unknown>>
  return html`<h1>Message <span class="mono">${escapeControl(s.id)}</span></h1>${notice ? html`<p class="notice" role="status">${notice}</p>` : ''}
<dl class="meta"><dt>Channel</dt><dd><a href="/channels/${encodeURIComponent(s.channel)}">${s.channel}</a></dd><dt>Status</dt><dd><span class="status s-${s.status}" id="message-status">${s.status}</span></dd>
<dt>Received</dt><dd>${s.receivedAt}</dd><dt>Updated</dt><dd>${s.updatedAt}</dd><dt>Type</dt><dd>${cell(s.contentType)}</dd>${s.error ? html`<dt>Error</dt><dd>${cell(s.error)}</dd>` : ''}${s.filteredBy ? html`<dt>Filtered by</dt><dd id="filtered-by">${cell(s.filteredBy)}</dd>` : ''}${s.filterRetry ? html`<dt>Filters retrying</dt><dd id="filter-retry">retry budget spent: ${cell(s.filterRetry.budgetSpent.attempts)} attempt(s), ${cell(s.filterRetry.budgetSpent.elapsedMs)} ms; next attempt due ${cell(s.filterRetry.nextAttemptAt)}</dd>` : ''}
<dt>Attributes</dt><dd class="mono">${escapeControl(JSON.stringify(s.attributes) ?? '')}</dd></dl>
${user.role === 'operator' ? html`<p><a class="button" href="${url}/resubmit">Resubmit…</a></p>` : ''}
<h2>Body</h2><pre id="body">${bodyText(s.body)}</pre>
<h2>Destinations</h2><table class="grid" id="deliveries"><thead><tr><th>Destination</th><th>Part</th><th>Status</th><th>Attempts</th><th>Last attempt</th><th>Response</th><th>Excerpt</th><th>Last error</th></tr></thead><tbody>
${deliveries.map((d) => html`<tr><td>${cell(d.destination)}</td><td>${cell(d.part)}</td><td><span class="status s-${String(d.status)}">${cell(d.status)}</span></td><td>${cell(d.attempts)}</td><td>${cell(d.lastAttemptAt)}</td><td>${cell(d.responseStatus)}</td><td class="mono">${cell(d.responseExcerpt)}</td><td>${cell(d.lastError)}</td></tr>`)}
</tbody></table>
<h2>Attempts</h2><table class="grid" id="attempts"><thead><tr><th>Started</th><th>Destination</th><th>Attempt</th><th>Outcome</th><th>Response</th><th>Error</th><th>Excerpt</th></tr></thead><tbody>
${attempts.map((a) => html`<tr><td>${cell(a.startedAt)}</td><td>${cell(a.destination)}${a.part ? `#${String(a.part)}` : ''}</td><td>${cell(a.attempt)}</td><td>${cell(a.outcome)}</td><td>${cell(a.responseStatus)}</td><td>${cell(a.error)}</td><td class="mono">${cell(a.excerpt)}</td></tr>`)}
</tbody></table>`
}

async function detailOf(src: ApiSources, id: string) {
  const d = await storeOf(src).get(id)
  if (!d) throw new Refusal(404, `no message ${id}`)
  return d
}

/**
 * Resubmits the message its confirmation page showed: `digest` is the `setDigest` of that one-message
 * set (its id and when it last changed), which a resubmit changes, so a confirmation resubmits once;
 * used again (browser Back, a double click) it is refused, 409, as a set's confirmation is, also
 * when another process or engine resubmitted it since the check (the store's resubmit as previewed).
 */
async function resubmitConfirmedOne(src: ApiSources, ctx: RouteContext): Promise<StoredMessage> {
  const digest = ctx.form.get('digest') ?? ''
  if (ctx.form.get('confirm') !== 'yes' || !/^[0-9a-f]{64}$/.test(digest)) throw new Refusal(400, 'resubmit needs the confirmation of its page (confirm=yes and digest)')
  return oneAtATime(`admin-resubmit-message:${ctx.params.id!}`, async () => {
    const m = (await detailOf(src, ctx.params.id!)).message
    const changed = new Refusal(409, `message ${escapeControl(m.id)} changed since its confirmation page (this confirmation was used already, or it was resubmitted or finished meanwhile); nothing was resubmitted, confirm again`)
    if (setDigest([m]) !== digest) throw changed
    if (!isFinished(m)) throw new Refusal(409, `message ${escapeControl(m.id)} is ${m.status}: only delivered, filtered or error messages can be resubmitted`)
    // As confirmed, checked by the store as it resubmits: another process or engine may have resubmitted it since.
    const done = await unlessChanged(storeOf(src).resubmit({ asPreviewed: [{ id: m.id, updatedAt: m.updatedAt }] }))
    if (done === undefined) throw changed
    await auditAction(src, ctx, 'resubmit', m.id, done.length)
    return m
  })
}

/**
 * GET /messages/:id: one message, redacted as `weir messages show` redacts it; GET /messages/:id/resubmit
 * asks the operator to confirm, and its form's POST queues the message again.
 */
export function messagePages(router: Router, src: ApiSources, auth: Auth): void {
  router.get('/messages/:id', async (ctx) => {
    const user = pageUser(ctx, auth)
    const shown = shownMessage(await detailOf(src, ctx.params.id!))
    const notice = ctx.url.searchParams.get('resubmitted') === '1' ? 'Resubmitted: the message is queued again.' : undefined
    sendHtml(ctx.res, 200, layout(`Message ${shown.id}`, user, messageBody(shown, user, notice)))
  })
  router.get('/messages/:id/resubmit', requireRole('operator'), async (ctx) => {
    const user = pageUser(ctx, auth)
    const m = (await detailOf(src, ctx.params.id!)).message
    const url = `/messages/${encodeURIComponent(m.id)}`
    const body = html`<h1>Resubmit message <span class="mono">${escapeControl(m.id)}</span>?</h1>
<p class="confirm">The message (now <strong>${m.status}</strong>, channel ${m.channel}) is queued again; destinations that already got it are skipped unless none is left.</p>
<form method="post" action="${url}/resubmit" class="inline"><input type="hidden" name="_csrf" value="${user.csrf}"><input type="hidden" name="confirm" value="yes"><input type="hidden" name="digest" value="${setDigest([m])}"><button type="submit" class="danger">Yes, resubmit</button></form>
<a class="button" href="${url}">Cancel</a>`
    sendHtml(ctx.res, 200, layout('Resubmit', user, body))
  })
  router.post('/messages/:id/resubmit', requireRole('operator'), async (ctx) => {
    const m = await resubmitConfirmedOne(src, ctx)
    src.handles().find((h) => h.name === m.channel)?.wake()
    ctx.res.writeHead(303, { location: `/messages/${encodeURIComponent(m.id)}?resubmitted=1` }).end()
  })
}

