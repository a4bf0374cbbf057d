// A channel refusing input in a real browser (headless Chromium): the channel list shows
// "refusing input: queue full (queueLimit) since …" beside the status as the queue fills, without a
// reload, and clears it once the channel accepts a message again.
import { describe, expect, it } from 'vitest'
import { destination } from '../runtime/_helpers.ts'
import { OPERATOR_TOKEN, signIn, useBrowser, useDashboard } from './_dashboard.ts'

const { b: browser, shot } = useBrowser()

describe('a channel refusing input on the dashboard', () => {
  const fx = useDashboard(browser, async (fx) => [
    await fx.rt.start({ name: 'adt', source: fx.feed.definition, destinations: [destination('api', fx.rt.api.url)], options: { queueLimit: 1 } }, { observer: fx.admin.observer }),
  ])

  it('shows the limit and since when beside the status, live, and clears it after an accepted message', async () => {
    const { page, url, handle, feed } = fx
    await signIn(page, url, OPERATOR_TOKEN)
    const refusing = page.locator('tr[data-channel="adt"] [data-field="refusing"]')
    expect(await refusing.textContent()).toBe('')
    await expect.poll(() => page.getAttribute('#channels', 'data-live')).toBe('sse')
    await handle.pause()
    await feed.emit({ n: 1 })
    await expect(feed.emit({ n: 2 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE' })
    const since = new Date(handle.refusing()!.since).toISOString().slice(11, 19)
    await expect.poll(() => refusing.textContent(), { timeout: 6000 }).toBe(`refusing input: queue full (queueLimit) since ${since} UTC`)
    expect(await refusing.isVisible()).toBe(true)
    await shot(page, 'channel-refusing')
    await handle.resume()
    await handle.whenIdle()
    await feed.emit({ n: 3 })
    await expect.poll(() => refusing.textContent(), { timeout: 6000 }).toBe('')
  }, 30_000)
})
