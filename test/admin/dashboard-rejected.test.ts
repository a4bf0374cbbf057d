// Rejected input in a real browser (headless Chromium): the channel list's Rejected column and the
// channel page's count by reason follow requests an http-listener refuses, without a reload.
import { describe, expect, it } from 'vitest'
import { OPERATOR_TOKEN, signIn, useBrowser, useDashboard } from './_dashboard.ts'
import { startListener } from './_listener.ts'

const { b: browser, shot } = useBrowser()

describe('rejected input on the dashboard', () => {
  let post: Awaited<ReturnType<typeof startListener>>['post']
  const fx = useDashboard(browser, async (fx) => {
    const listener = await startListener(fx.rt, 'http-in', fx.admin.observer)
    post = listener.post
    return [listener.handle]
  })

  it('shows the rejected count on the list and by reason on the channel page, live', async () => {
    const { page, url } = fx
    await signIn(page, url, OPERATOR_TOKEN)
    const rejected = page.getByRole('row', { name: /http-in/ }).locator('[data-field="rejected"]')
    expect(await rejected.textContent()).toBe('0')
    await expect.poll(() => page.getAttribute('#channels', 'data-live')).toBe('sse')
    expect(await post('abc', { 'content-type': 'application/octet-stream' })).toBe(415)
    expect(await post('{}', { 'x-api-key': 'wrong' })).toBe(401)
    await expect.poll(() => rejected.textContent(), { timeout: 6000 }).toBe('2')
    await page.getByRole('link', { name: 'http-in' }).click()
    await page.waitForURL(`${url}/channels/http-in`)
    const live = page.locator('#channel-live')
    expect(await live.locator('[data-field="rejected"]').textContent()).toBe('2')
    expect(await live.locator('[data-field="rejectedByReason"]').textContent()).toBe('(unauthorized 1 · unsupported media type 1)')
    expect(await post('{"mrn": ', {})).toBe(400)
    await expect.poll(() => live.locator('[data-field="rejectedByReason"]').textContent(), { timeout: 6000 }).toBe('(malformed 1 · unauthorized 1 · unsupported media type 1)')
    expect(await live.locator('[data-field="rejected"]').textContent()).toBe('3')
    await shot(page, 'channel-rejected')
  }, 30_000)
})
