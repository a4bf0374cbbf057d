import type { ApiSources } from '../api.ts'
import type { Auth } from '../auth.ts'
import type { Router } from '../router.ts'
import { actionRoutes } from './actions.ts'
import { assetRoutes } from './assets.ts'
import { auditRoutes } from './audit.ts'
import { channelListPage } from './channels.ts'
import { loginPage } from './login.ts'
import { messageLogPage, messagePages } from './messages.ts'
import { resubmitSetRoutes } from './resubmit.ts'

/** The dashboard's pages (server-rendered HTML), its actions (forms with the session's CSRF token) and its two static files. */
export function dashboardRoutes(router: Router, src: ApiSources, auth: Auth): void {
  assetRoutes(router)
  loginPage(router)
  channelListPage(router, src, auth)
  messageLogPage(router, src, auth)
  messagePages(router, src, auth)
  resubmitSetRoutes(router, src, auth)
  auditRoutes(router, src, auth)
  actionRoutes(router, src)
}
