import { credentialRoutes, type ApiSources } from '../api.ts'
import type { Auth } from '../auth.ts'
import type { Router } from '../router.ts'
import { actionRoutes } from './actions.ts'
import { assetRoutes } from './assets.ts'
import { auditRoutes } from './audit.ts'
import { channelListPage } from './channels.ts'
import { clusterPage } from './cluster.ts'
import { credentialsPage } from './credentials.ts'
import { loginPage } from './login.ts'
import { messageLogPage, messagePages } from './messages.ts'
import { resubmitSetRoutes } from './resubmit.ts'

/** The dashboard's pages (server-rendered HTML), its actions (forms with the session's CSRF token), its two static files, and the JSON of the credentials and cluster pages. */
export function dashboardRoutes(router: Router, src: ApiSources, auth: Auth): void {
  assetRoutes(router)
  loginPage(router)
  channelListPage(router, src, auth)
  messageLogPage(router, src, auth)
  messagePages(router, src, auth)
  resubmitSetRoutes(router, src, auth)
  auditRoutes(router, src, auth)
  actionRoutes(router, src)
  credentialsPage(router, src, auth)
  credentialRoutes(router, src)
  clusterPage(router, src, auth)
}
