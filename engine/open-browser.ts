import { spawn } from 'node:child_process'

/**
 * The program that shows a URL in the user's browser on this platform, or undefined where no
 * browser can be shown (Linux without a display, CI).
 */
export function browserCommand(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): { command: string; args: string[] } | undefined {
  if (env.CI) return undefined
  if (platform === 'darwin') return { command: 'open', args: [] }
  // rundll32 passes the URL on untouched; `cmd /c start` would split it at every `&`.
  if (platform === 'win32') return { command: 'rundll32', args: ['url.dll,FileProtocolHandler'] }
  return env.DISPLAY || env.WAYLAND_DISPLAY ? { command: 'xdg-open', args: [] } : undefined
}

/** Asks the browser to open `url`, in the background; a missing or failing program is ignored (the URL is printed anyway). */
export function openBrowser(browser: { command: string; args: string[] }, url: string): void {
  try {
    const child = spawn(browser.command, [...browser.args, url], { stdio: 'ignore', detached: true })
    child.on('error', () => undefined)
    child.unref()
  } catch {
    // spawn itself can throw (EACCES on some systems); the printed URL is enough.
  }
}
