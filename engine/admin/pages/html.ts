import type { ServerResponse } from 'node:http'
import type { Auth } from '../auth.ts'
import { escapeHtml } from '../http.ts'
import type { RouteContext } from '../router.ts'

/** Markup already escaped (or written by us): `html` inserts it as is. */
export class Raw {
  constructor(readonly text: string) {}
  toString(): string { return this.text }
}

const part = (v: unknown): string => v instanceof Raw ? v.text : Array.isArray(v) ? v.map(part).join('') : v === undefined || v === null || v === false ? '' : escapeHtml(String(v))

/** A template of markup: every interpolated value is escaped unless it is `Raw` (arrays are joined). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Raw {
  return new Raw(strings.reduce((out, s, i) => out + s + (i < values.length ? part(values[i]) : ''), ''))
}

/** What every page needs to know about the request: who asks and the session's CSRF token for its forms. */
export interface PageUser {
  name: string
  role: 'viewer' | 'operator'
  csrf: string
}

/** The page's user; on an open server a browser without a session gets one (and its cookie), so that its forms carry a CSRF token. */
export function pageUser(ctx: RouteContext, auth: Auth): PageUser {
  let session = ctx.session
  if (!session && auth.open) {
    session = auth.openSession()
    ctx.res.setHeader('set-cookie', auth.cookie(session))
  }
  return { name: ctx.principal!.name, role: ctx.principal!.role, csrf: session?.csrfToken ?? '' }
}

/** A form posting one action with the session's CSRF token. */
export function actionForm(user: PageUser, action: string, label: string, fields: Record<string, string> = {}, cls = ''): Raw {
  return html`<form method="post" action="${action}" class="inline"><input type="hidden" name="_csrf" value="${user.csrf}">${Object.entries(fields).map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}<button type="submit" class="${cls}">${label}</button></form>`
}

/** The page frame: header with navigation and the user, the stylesheet and the page script (no inline script or style: the CSP refuses them). */
export function layout(title: string, user: PageUser | undefined, body: Raw): string {
  const who = user ? html`<span class="who">${user.name} (${user.role})</span>${user.csrf ? actionForm(user, '/logout', 'Log out', {}, 'link') : ''}` : ''
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title} · Weir</title>
<link rel="stylesheet" href="/assets/dashboard.css"><script src="/assets/dashboard.js" defer></script></head>
<body><header><a class="brand" href="/">Weir</a><nav><a href="/">Channels</a> <a href="/audit">Audit log</a> <a href="/credentials">Credentials</a> <a href="/cluster">Cluster</a></nav><div class="user">${who}</div></header>
<main>${body}</main></body></html>`.text
}

export function sendHtml(res: ServerResponse, status: number, page: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(page), ...headers })
  res.end(res.req.method === 'HEAD' ? undefined : page)
}

/**
 * A local path to go back to after an action or sign-in (never another site): one slash then no
 * second one or backslash, and no control character or space (a browser drops a tab or newline,
 * which would turn `/<TAB>/evil.example` into `//evil.example`).
 */
export function backTo(value: string | null | undefined, fallback: string): string {
  return value && /^\/(?![/\\])[^\x00-\x20\x7f\\]*$/.test(value) ? value : fallback
}

/** The sign-in form, returning to `next` (a local path) after it, and saying the last token was wrong when `failed`. */
export function signInPath(next: string | null | undefined, failed = false): string {
  const back = backTo(next, '/')
  const query = new URLSearchParams({ ...(failed ? { failed: '1' } : {}), ...(back !== '/' ? { next: back } : {}) }).toString()
  return query ? `/login?${query}` : '/login'
}

/** Seconds as a short age: 42 s, 3 min, 2 h, 5 d. */
export function age(sec: number | null): string {
  if (sec === null) return '–'
  if (sec < 60) return `${Math.round(sec)} s`
  if (sec < 3600) return `${Math.round(sec / 60)} min`
  if (sec < 86_400) return `${Math.round(sec / 3600)} h`
  return `${Math.round(sec / 86_400)} d`
}
