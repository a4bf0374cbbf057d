import { escapeControl } from '../../../shared/http/excerpt.ts'
import { checkCredential, credentialViews, type ApiSources, type CredentialView } from '../api.ts'
import type { Auth } from '../auth.ts'
import { requireRole, type Router } from '../router.ts'
import { actionForm, age, html, layout, pageUser, sendHtml, type PageUser, type Raw } from './html.ts'

const secondsSince = (iso: string | null, now: number) => (iso === null ? null : Math.max(0, (now - Date.parse(iso)) / 1000))

/** The RFC 6749 error code and the reason of a failure, as `invalid_client: token endpoint … answered 401 …`. */
const reasonOf = (f: { error: string | null; message: string }) => escapeControl(f.error ? `${f.error}: ${f.message}` : f.message)

function failFast(v: CredentialView, now: number): Raw {
  if (v.failingFastUntil === null) return html`<span class="status s-running">no</span>`
  return html`<span class="status s-failing" title="${v.failingFastUntil}">until ${v.failingFastUntil.slice(11, 19)} UTC (${age(Math.max(0, (Date.parse(v.failingFastUntil) - now) / 1000))})</span>`
}

function credentialRow(v: CredentialView, user: PageUser, now: number): Raw {
  const check = user.role === 'operator' ? actionForm(user, `/credentials/${encodeURIComponent(v.name)}/check`, 'Fetch a token now', { channel: v.channels[0]! }) : ''
  const fetched = secondsSince(v.fetchedAt, now)
  return html`<tr data-credential="${v.name}">
<td>${v.name}</td><td>${v.channels.map((c, i) => html`${i ? ', ' : ''}<a href="/channels/${encodeURIComponent(c)}">${c}</a>`)}</td>
<td>${v.grant ?? '–'}</td><td class="mono">${v.endpoint ?? '–'}</td>
<td data-field="fetched" title="${v.fetchedAt ?? ''}">${fetched === null ? 'never' : `${age(fetched)} ago`}</td>
<td class="num" data-field="expires">${v.expiresInSec === null ? '–' : age(v.expiresInSec)}</td>
<td class="num" data-field="requests">${v.requests.sent} / ${v.requests.failed}</td>
<td data-field="failure">${v.lastFailure ? html`<span title="${v.lastFailure.at}">${reasonOf(v.lastFailure)}</span>` : '–'}</td>
<td data-field="failfast">${failFast(v, now)}</td><td>${check}</td></tr>`
}

/** The outcome of the check the page was redirected from, as the credential's status tells it now. */
function checkOutcome(views: CredentialView[], params: URLSearchParams): Raw {
  const v = views.find((x) => x.name === params.get('checked') && x.channels.includes(params.get('channel') ?? ''))
  if (!v) return html``
  const failed = v.lastFailure !== null && (v.fetchedAt === null || v.lastFailure.at >= v.fetchedAt)
  if (failed) return html`<p class="error" role="alert">Token request for ${v.name} failed: ${reasonOf(v.lastFailure!)}</p>`
  return html`<p class="notice" role="status">Token fetched for ${v.name}: expires in ${v.expiresInSec === null ? 'never' : `${v.expiresInSec} s`}${v.scope ? `, scope ${v.scope}` : ''}.</p>`
}

/**
 * GET /credentials: every credential the channels use, with its last token fetch, expiry, request
 * counts, last failure and fail-fast state; POST /credentials/:name/check (operator): "fetch a
 * token now", then back to the page, which tells the outcome.
 */
export function credentialsPage(router: Router, src: ApiSources, auth: Auth): void {
  router.get('/credentials', (ctx) => {
    const user = pageUser(ctx, auth)
    const now = Date.now()
    const views = credentialViews(src.handles(), now)
    const body = html`<h1>Credentials</h1>${checkOutcome(views, ctx.url.searchParams)}
<table id="credentials" class="grid"><thead><tr><th>Credential</th><th>Channels</th><th>Grant</th><th>Token endpoint</th><th>Last fetch</th><th>Expires in</th><th>Requests / failed</th><th>Last failure</th><th>Failing fast</th><th></th></tr></thead>
<tbody>${views.map((v) => credentialRow(v, user, now))}</tbody></table>
${views.length === 0 ? html`<p class="empty">No channel uses a credential (yet: a credential shows once a component asked for it).</p>` : ''}`
    sendHtml(ctx.res, 200, layout('Credentials', user, body))
  })
  router.post('/credentials/:name/check', requireRole('operator'), async (ctx) => {
    const done = await checkCredential(src, ctx)
    ctx.res.writeHead(303, { location: `/credentials?${new URLSearchParams({ checked: done.credential, channel: done.channel })}` }).end()
  })
}
