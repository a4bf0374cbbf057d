import type { IncomingMessage, ServerResponse } from 'node:http'
import { escapeControl } from '../../../shared/http/excerpt.ts'
import type { Refusal } from '../../../shared/inbound/refusal.ts'
import { html, layout, sendHtml, signInPath } from './html.ts'

/** Whether a browser navigated here (a page or a form), as opposed to a client of the JSON API. */
export const isPageRequest = (req: IncomingMessage, path: string) => !path.startsWith('/api/') && String(req.headers.accept ?? '').includes('text/html')

/**
 * Answers a refusal of a page request as a browser needs it: to the login form when not signed in
 * (or when the login form's token was wrong), an HTML page otherwise. False for API requests.
 */
export function refusalPage(req: IncomingMessage, res: ServerResponse, e: Refusal): boolean {
  const url = new URL(req.url ?? '/', 'http://admin.invalid')
  const path = url.pathname
  if (!isPageRequest(req, path)) return false
  if (e.status === 401) {
    res.writeHead(303, { location: path === '/login' ? signInPath(undefined, true) : signInPath(req.method === 'GET' ? path + url.search : undefined) }).end()
    return true
  }
  const body = html`<h1>${e.status === 403 ? 'Not allowed' : 'Cannot do that'}</h1><p class="error" role="alert">${escapeControl(e.publicReason)}</p><p><a href="/">Back to the channels</a></p>`
  sendHtml(res, e.status, layout(`Error ${e.status}`, undefined, body), e.headers)
  return true
}
