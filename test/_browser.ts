// A real headless browser for the tests of web pages: Debian's chromium (installed by .ci/run when
// missing) driven by playwright-core. Loopback pages only.
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/** Where the browser is: $WEIR_CHROMIUM, else Debian's /usr/bin/chromium. */
export const CHROMIUM = process.env.WEIR_CHROMIUM ?? '/usr/bin/chromium'

/** Launches headless Chromium (without its sandbox: tests run as root in CI). Throws with the fix when it is missing. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium (as .ci/run does), or set WEIR_CHROMIUM`)
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
}
