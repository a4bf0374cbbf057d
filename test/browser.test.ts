import { afterAll, beforeAll, expect, it } from 'vitest'
import { createServer, type Server } from 'node:http'
import type { Browser } from 'playwright-core'
import { launchBrowser } from './_browser.ts'

let browser: Browser
let server: Server
let url = ''
beforeAll(async () => {
  browser = await launchBrowser()
  server = createServer((req, res) => {
    if (req.url === '/app.js') return res.writeHead(200, { 'content-type': 'text/javascript' }).end("document.querySelector('#out').textContent = 'script ran'")
    res.writeHead(200, { 'content-type': 'text/html', 'content-security-policy': "default-src 'none'; script-src 'self'" })
      .end('<!doctype html><title>t</title><p id="out">no script</p><script src="/app.js"></script><script>document.title = "inline ran"</script>')
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()))
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`
}, 60_000)
afterAll(async () => {
  await browser?.close()
  server?.close()
})

it('the test browser runs a page\'s own scripts and enforces its Content-Security-Policy', async () => {
  const page = await browser.newPage()
  await page.goto(url)
  await expect.poll(() => page.textContent('#out')).toBe('script ran')
  expect(await page.title()).toBe('t') // the inline script was refused by the CSP
  await page.close()
})
