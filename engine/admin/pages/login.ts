import type { Router } from '../router.ts'
import { backTo, html, layout, sendHtml } from './html.ts'

/** GET /login: the login form (a token; POST /login starts the session, then goes to `next`, a local path, or the channel list). */
export function loginPage(router: Router): void {
  router.public('GET', '/login', (ctx) => {
    const failed = ctx.url.searchParams.get('failed') === '1'
    const next = backTo(ctx.url.searchParams.get('next'), '/')
    const body = html`<h1>Sign in</h1>${failed ? html`<p class="error" role="alert">Unknown token.</p>` : ''}
<form method="post" action="/login" class="login"><input type="hidden" name="next" value="${next}"><label>Admin token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button></form>`
    sendHtml(ctx.res, 200, layout('Sign in', undefined, body))
  })
  // Browsers ask for it on every page: an empty answer instead of a 404 in their console.
  router.public('GET', '/favicon.ico', ({ res }) => void res.writeHead(204).end())
}
