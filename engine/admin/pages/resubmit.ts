import { Refusal } from '../../../shared/inbound/refusal.ts'
import type { MessageStore, ResubmitPreview } from '../../../shared/store/index.ts'
import { auditTarget, describeFilter, oneAtATime, previewSentence, RESUBMIT_SET_LIMIT, resubmitInBatches, resubmitSet, unlessChanged, type SetFilter } from '../../resubmit-set.ts'
import { auditAction, type ApiSources } from '../api.ts'
import type { Auth } from '../auth.ts'
import { sendJson } from '../http.ts'
import { requireRole, type RouteContext, type Router } from '../router.ts'
import { html, layout, pageUser, sendHtml, type PageUser, type Raw } from './html.ts'
import { checkedLogFilter, filterQuery, knownChannel, storeOf } from './messages.ts'

/** The set's filter from a query or a form: the log's filter without paging, times as given (the preview pins them as ISO dates). */
async function setFilter(src: ApiSources, channel: string, params: URLSearchParams): Promise<SetFilter> {
  const { limit: _limit, after: _after, ...filter } = await checkedLogFilter(src, channel, params)
  return filter
}

/** The filter pinned as hidden form fields: absolute times, so "2h" means the same at the confirmation as at the preview. */
function pinned(f: SetFilter): Record<string, string> {
  return {
    ...(f.status ? { status: f.status } : {}),
    ...(f.since !== undefined ? { since: new Date(f.since).toISOString() } : {}),
    ...(f.until !== undefined ? { until: new Date(f.until).toISOString() } : {}),
    ...(f.key ? { key: `${f.key.name}=${f.key.value}` } : {}),
  }
}

interface Previewed {
  filter: SetFilter
  ids: string[]
  maxSeq: number
  more: boolean
  /** The set's digest (`setDigest` of engine/resubmit-set.ts). */
  digest: string
  preview: ResubmitPreview
}

async function previewOf(store: MessageStore, filter: SetFilter): Promise<Previewed> {
  const set = await resubmitSet(store, filter)
  return { filter, ...set, preview: set.more || set.ids.length === 0 ? { messages: set.ids.length, destinations: {}, undelivered: 0 } : await store.resubmitPreview(set.ids) }
}

/**
 * Resubmits the set the operator confirmed: the same filter, no message newer than the preview's,
 * exactly as many messages as the preview showed (typed in `confirm`) and exactly those messages
 * (`digest`, the preview's `setDigest`, which a resubmit changes: a confirmation is good for
 * one resubmit); otherwise nothing is done and the refusal says why (409 when the set changed
 * meanwhile, or the confirmation was used already: preview again). One channel's confirmations run
 * one at a time, so a double click's second request finds the set resubmitted by the first; the
 * store's resubmit of the set as previewed refuses the second of two from different processes or
 * engines that both passed the check.
 */
async function resubmitConfirmed(src: ApiSources, ctx: RouteContext, channel: string): Promise<{ resubmitted: number; filter: SetFilter }> {
  const filter = await setFilter(src, channel, ctx.form)
  const maxSeq = Number(ctx.form.get('maxSeq'))
  const count = Number(ctx.form.get('count'))
  const digest = ctx.form.get('digest') ?? ''
  if (!Number.isSafeInteger(maxSeq) || maxSeq < 1 || !Number.isSafeInteger(count) || count < 1 || !/^[0-9a-f]{64}$/.test(digest)) throw new Refusal(400, 'a resubmit of a set needs maxSeq, count and digest from its preview')
  if (ctx.form.get('confirm')?.replace(/[,\s]/g, '') !== String(count)) throw new Refusal(400, `type the number of messages (${count}) to confirm the resubmit`)
  await knownChannel(src, channel)
  const resubmitted = await oneAtATime(`admin-resubmit:${channel}`, async () => {
    const store = storeOf(src)
    const set = await resubmitSet(store, filter, { maxSeq })
    if (set.more || set.ids.length !== count) throw new Refusal(409, `the set changed since its preview: it now holds ${set.more ? `more than ${RESUBMIT_SET_LIMIT}` : set.ids.length} finished message(s), not ${count}; nothing was resubmitted, preview it again`)
    const notAsPreviewed = new Refusal(409, `the set changed since its preview: it still holds ${count} finished message(s), but not as previewed (this confirmation was used already, or some were resubmitted, purged or finished meanwhile); nothing was resubmitted, preview it again`)
    if (set.digest !== digest) throw notAsPreviewed
    // Checked again by the store as it resubmits: another process or engine may have resubmitted the set since.
    const done = await unlessChanged(resubmitInBatches(store, set.messages))
    if (done === undefined) throw notAsPreviewed
    await auditAction(src, ctx, 'resubmit', auditTarget(channel, filter, set.ids), done)
    return done
  })
  src.handles().find((h) => h.name === channel)?.wake()
  return { resubmitted, filter }
}

function destinationRows(p: ResubmitPreview): Raw {
  return html`<table class="grid" id="preview-destinations"><thead><tr><th>Destination</th><th>Messages sent again</th></tr></thead><tbody>
${Object.entries(p.destinations).map(([d, n]) => html`<tr><td>${d}</td><td class="num">${n.toLocaleString('en-US')}</td></tr>`)}
${p.undelivered ? html`<tr><td><em>every destination</em> (stopped before any destination)</td><td class="num">${p.undelivered.toLocaleString('en-US')}</td></tr>` : ''}</tbody></table>`
}

function confirmBody(channel: string, p: Previewed, user: PageUser, back: string): Raw {
  const head = html`<h1>Resubmit messages of ${channel}?</h1><p>Filter: <strong id="preview-filter">${describeFilter(p.filter)}</strong>.</p>`
  if (p.more) return html`${head}<p class="error" role="alert">The filter matches more than ${RESUBMIT_SET_LIMIT.toLocaleString('en-US')} finished messages. Narrow it (status, time, key) and resubmit in several steps.</p><a class="button" href="${back}">Back</a>`
  if (p.ids.length === 0) return html`${head}<p class="notice" role="status">No finished (delivered, filtered or error) message matches: nothing to resubmit.</p><a class="button" href="${back}">Back</a>`
  const n = p.ids.length
  const fields = { ...pinned(p.filter), maxSeq: String(p.maxSeq), count: String(n), digest: p.digest }
  return html`${head}<p class="confirm" id="preview-sentence">This ${previewSentence(p.preview)}. Destinations that already got a message are skipped unless none is left; queued and in-flight messages are left alone; messages received after this preview are not included.</p>
${destinationRows(p.preview)}
<form method="post" action="/channels/${encodeURIComponent(channel)}/resubmit" class="confirm-set"><input type="hidden" name="_csrf" value="${user.csrf}">${Object.entries(fields).map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}
<label>Type <strong>${n}</strong> to confirm <input name="confirm" id="confirm-count" autocomplete="off" required pattern="${String(n)}"></label>
<button type="submit" class="danger">Resubmit ${n.toLocaleString('en-US')} message${n === 1 ? '' : 's'}</button></form>
<p><a class="button" href="${back}">Cancel</a></p>`
}

/**
 * Resubmitting a filtered set of a channel's messages: GET /channels/:name/resubmit previews it
 * ("resubmits 1,204 messages to 2 destinations") and asks the operator to type the count; its POST
 * resubmits exactly that set. The JSON API does the same: GET /api/channels/:name/resubmit (the
 * preview, with `maxSeq`, `count` and `digest`), then POST with them and `confirm`.
 */
export function resubmitSetRoutes(router: Router, src: ApiSources, auth: Auth): void {
  router.get('/channels/:name/resubmit', requireRole('operator'), async (ctx) => {
    const channel = ctx.params.name!
    await knownChannel(src, channel)
    const p = await previewOf(storeOf(src), await setFilter(src, channel, ctx.url.searchParams))
    const back = `/channels/${encodeURIComponent(channel)}?${filterQuery(ctx.url.searchParams)}`
    const user = pageUser(ctx, auth)
    sendHtml(ctx.res, 200, layout('Resubmit messages', user, confirmBody(channel, p, user, back)))
  })
  router.post('/channels/:name/resubmit', requireRole('operator'), async (ctx) => {
    const { resubmitted, filter } = await resubmitConfirmed(src, ctx, ctx.params.name!)
    const query = new URLSearchParams({ ...pinned(filter), resubmitted: String(resubmitted) })
    ctx.res.writeHead(303, { location: `/channels/${encodeURIComponent(ctx.params.name!)}?${query}` }).end()
  })
  router.get('/api/channels/:name/resubmit', requireRole('operator'), async (ctx) => {
    await knownChannel(src, ctx.params.name!)
    const p = await previewOf(storeOf(src), await setFilter(src, ctx.params.name!, ctx.url.searchParams))
    sendJson(ctx.res, 200, { filter: describeFilter(p.filter), count: p.ids.length, more: p.more, maxSeq: p.maxSeq, digest: p.digest, ...p.preview, sentence: previewSentence(p.preview) })
  })
  router.post('/api/channels/:name/resubmit', requireRole('operator'), async (ctx) => {
    const { resubmitted } = await resubmitConfirmed(src, ctx, ctx.params.name!)
    sendJson(ctx.res, 200, { resubmitted, by: ctx.principal!.name })
  })
}
