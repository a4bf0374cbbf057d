import { afterEach, describe, expect, it } from 'vitest'
import { subjectsOf } from '../../engine/alerts/conditions.ts'
import { RuntimeWatch } from '../../engine/alerts/index.ts'
import type { AlertRule } from '../../engine/alerts/index.ts'
import { until } from '../_setup.ts'
import { startApi } from '../runtime/_helpers.ts'
import { alertsFile, bed, fastWebhook, webhookReceiver } from './_alerts.ts'

// Finding (on call): `api-down` said "circuit breaker open (opened 1 times)" and nothing of why:
// the summary now ends with the last failed attempt's status and error code, never free text.

const rule = { name: 'api-down', condition: 'destination-failing', channels: '*', minIntervalMs: 0, clearAfterMs: 0 } as unknown as AlertRule

/** The summary of `api-down` for a destination whose breaker is `breaker`, after `attempts` reported to the watch. */
function summaryAfter(attempts: Array<Parameters<NonNullable<RuntimeWatch['observer']['attempt']>>>, breaker = 'open', extra: Partial<AlertRule> = {}) {
  const watch = new RuntimeWatch(Date.now, 0)
  for (const a of attempts) (watch.observer.attempt as (...args: unknown[]) => void)(...a)
  const handle = { name: 'adt', destinations: () => [{ name: 'api', type: 'http', paused: false, breaker, openings: 1 }] }
  const [s] = subjectsOf({ ...rule, ...extra }, { handles: [handle as never], oldest: {}, watch, now: Date.now() })
  return s!.summary
}

const failed = (status: number | undefined, code: string | undefined) => ['adt', 'api', 'retryable', 5, { status, code }] as never

describe('destination-failing summary: the last failure', () => {
  it.each([
    ['a status and its code', failed(503, 'ERR_HTTP_STATUS'), 'last failure: HTTP 503 (ERR_HTTP_STATUS)'],
    ['a timeout (a code, no status)', failed(undefined, 'ERR_HTTP_TIMEOUT'), 'last failure: ERR_HTTP_TIMEOUT'],
    ['a status without a code', failed(502, undefined), 'last failure: HTTP 502'],
  ])('%s', (_what, attempt, reason) => {
    expect(summaryAfter([failed(500, 'ERR_HTTP_STATUS'), attempt])).toBe(`destination api of channel adt is failing: circuit breaker open (opened 1 time), ${reason}`)
  })

  it('says only what is shaped like a status or an error code: a component\'s free text never reaches the webhook', () => {
    const summary = summaryAfter([failed(Number.NaN, 'patient Jane Doe token=abc123')])
    expect(summary).toBe('destination api of channel adt is failing: circuit breaker open (opened 1 time)')
  })

  it('gives the reason with consecutiveFailures too; a delivered attempt keeps the last failure out of "delivers again"', () => {
    expect(summaryAfter([failed(503, 'ERR_HTTP_STATUS'), failed(429, 'ERR_HTTP_STATUS')], 'closed', { consecutiveFailures: 2 }))
      .toBe('destination api of channel adt is failing: 2 failed attempts in a row, last failure: HTTP 429 (ERR_HTTP_STATUS)')
    expect(summaryAfter([failed(503, 'ERR_HTTP_STATUS'), ['adt', 'api', 'delivered', 5] as never], 'closed'))
      .toMatch(/^destination api of channel adt delivers again \(a delivered attempt at [\d\-T:.]+Z\)$/)
  })
})

const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c()
})

// Needs the runtime to tell observers the failed attempt's status and code (RuntimeObserver.attempt's fifth argument).
describe('destination-failing summary on a running channel', () => {
  it.each([
    ['an API answering 503 (its body echoing the message)', { status: 503, body: 'maintenance: {"patient":"Jane Doe"}' }, {}, 'HTTP 503 (ERR_HTTP_STATUS)'],
    ['an API that does not answer within timeoutMs', { status: 200, hang: true }, { timeoutMs: 100 }, 'ERR_HTTP_TIMEOUT'],
  ])('%s', async (_what, answer, config, reason) => {
    const b = await bed()
    const hook = await webhookReceiver()
    const api = await startApi(() => answer)
    closing.push(hook.close, api.close, b.close)
    const channel = await b.channel({
      name: 'adt',
      destinations: [{ name: 'api', type: 'http', config: { url: api.url, ...config }, retry: { maxAttempts: 1000, initialDelayMs: 10, maxDelayMs: 50 }, circuitBreaker: { failureThreshold: 2, resetAfterMs: 60_000 } }],
    })
    await b.start([channel], await alertsFile(b.dir, { checkIntervalMs: 20, webhooks: { ops: fastWebhook(hook.url) }, alerts: [{ name: 'api-down', condition: 'destination-failing', webhook: 'ops' }] }))
    await b.feed.emit({ patient: 'Jane Doe' })
    await until(() => hook.accepted.length === 1, 10_000, 'firing')
    expect(hook.accepted[0]!.summary).toBe(`destination api of channel adt is failing: circuit breaker open (opened 1 time), last failure: ${reason}`)
    expect(JSON.stringify(hook.requests.map((r) => r.body)) + b.lines.filter((l) => l.includes('"alert firing"')).join('')).not.toContain('Jane Doe')
  })
})
