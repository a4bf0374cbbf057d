import type { Router } from '../router.ts'
import { html, layout, sendHtml } from './html.ts'

/** GET /login: the login form (a token; POST /login starts the session). */
export function loginPage(router: Router): void {
  router.public('GET', '/login', (ctx) => {
    const failed = ctx.url.searchParams.get('failed') === '1'
    const body = html`<h1>Sign in</h1>${failed ? html`<p class="error" role="alert">Unknown token.</p>` : ''}
<form method="post" action="/login" class="login"><label>Admin token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button></form>`
    sendHtml(ctx.res, 200, layout('Sign in', undefined, body))
  })
}
