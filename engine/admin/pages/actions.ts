import { pauseOrResume, type ApiSources } from '../api.ts'
import { requireRole, type Router } from '../router.ts'
import { backTo } from './html.ts'

/** POST /channels/:name/pause and /resume from the dashboard's forms (`destination` for one destination): acts, then back to the page. */
export function actionRoutes(router: Router, src: ApiSources): void {
  for (const action of ['pause', 'resume'] as const) {
    router.post(`/channels/:name/${action}`, requireRole('operator'), async (ctx) => {
      const { handle } = await pauseOrResume(src, ctx, action)
      ctx.res.writeHead(303, { location: backTo(ctx.form.get('back'), `/channels/${encodeURIComponent(handle.name)}`) }).end()
    })
  }
}
