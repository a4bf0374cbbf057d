import { readFileSync } from 'node:fs'
import type { Router } from '../router.ts'

const ASSETS = [
  { path: '/assets/dashboard.js', file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  { path: '/assets/dashboard.css', file: 'dashboard.css', type: 'text/css; charset=utf-8' },
]

/** GET /assets/*: the dashboard's script and stylesheet (files beside this one: the CSP allows no inline script or style). */
export function assetRoutes(router: Router): void {
  for (const a of ASSETS) {
    const content = readFileSync(new URL(`./${a.file}`, import.meta.url))
    router.public('GET', a.path, ({ res }) => {
      res.writeHead(200, { 'content-type': a.type, 'content-length': content.length }).end(res.req.method === 'HEAD' ? undefined : content)
    })
  }
}
