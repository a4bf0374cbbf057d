import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { METRIC_NAMES } from '../../engine/admin/metrics.ts'
import { until } from '../runtime/_helpers.ts'
import { call, sample, useAdminFixture } from './_admin.ts'

const fx = useAdminFixture()
const scrape = async () => {
  const a = await call(fx.url, '/metrics')
  expect(a.status).toBe(200)
  expect(a.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
  return a.text
}

describe('/metrics', () => {
  it('shows every channel at 0 before its first message, and the process metrics', async () => {
    const text = await scrape()
    expect(sample(text, 'weir_messages_received_total', { channel: 'orders' })).toBe(0)
    expect(sample(text, 'weir_messages_finished_total', { channel: 'orders', status: 'delivered' })).toBe(0)
    expect(sample(text, 'weir_queue_depth', { channel: 'orders' })).toBe(0)
    expect(sample(text, 'weir_channel_status', { channel: 'orders', status: 'running' })).toBe(1)
    expect(sample(text, 'weir_circuit_breaker_state', { channel: 'orders', destination: 'api' })).toBe(0)
    expect(sample(text, 'weir_store_size_bytes')).toBeGreaterThan(0)
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0)
    for (const name of METRIC_NAMES.filter((n) => !n.startsWith('weir_token') && n !== 'weir_credential_failing_fast')) expect(text, name).toContain(`# TYPE ${name} `)
  })

  it('counts received, finished, attempts, retries, latency and queue as the channel works', async () => {
    fx.rt.api.behaviour = ({ body }) => ((body as { n: number }).n % 10 === 0 && fx.rt.api.received.filter((r) => (r.body as { n: number }).n === (body as { n: number }).n).length === 1 ? { status: 503 } : undefined)
    for (let n = 0; n < 50; n++) await fx.feed.emit({ n })
    await fx.feed.emit({ n: 1 }, { dedupeKey: 'k' })
    await fx.feed.emit({ n: 1 }, { dedupeKey: 'k' })
    await fx.rt.handles[0]!.whenIdle({ timeoutMs: 20_000 })
    const text = await scrape()
    const orders = { channel: 'orders' }
    expect(sample(text, 'weir_messages_received_total', orders)).toBe(51)
    expect(sample(text, 'weir_messages_duplicate_total', orders)).toBe(1)
    expect(sample(text, 'weir_messages_finished_total', { ...orders, status: 'delivered' })).toBe(51)
    // 5 first attempts at each destination (n = 0, 10, … 40) answered 503 once.
    for (const destination of ['api', 'audit']) {
      expect(sample(text, 'weir_delivery_attempts_total', { ...orders, destination, outcome: 'delivered' })).toBe(51)
      const retried = sample(text, 'weir_delivery_attempts_total', { ...orders, destination, outcome: 'retryable' }) ?? 0
      const count = sample(text, 'weir_delivery_duration_seconds_count', { ...orders, destination })
      expect(count).toBe(51 + retried)
    }
    const retries = ['api', 'audit'].map((destination) => sample(text, 'weir_delivery_attempts_total', { ...orders, destination, outcome: 'retryable' }) ?? 0)
    expect(retries[0]! + retries[1]!).toBe(5)
    expect(sample(text, 'weir_store_write_duration_seconds_count', orders)).toBe(52)
    expect(sample(text, 'weir_queue_depth', orders)).toBe(0)
    expect(sample(text, 'weir_queue_oldest_age_seconds', orders)).toBe(0)
    const stats = await fx.rt.store.stats('orders')
    expect(stats.delivered).toBe(sample(text, 'weir_messages_finished_total', { ...orders, status: 'delivered' }))
  })

  it('shows the queue and its oldest message while a destination hangs, and an operator pause', async () => {
    fx.rt.api.behaviour = () => ({ status: 200, hang: true })
    await fx.feed.emit({ n: 1 })
    await fx.feed.emit({ n: 2 })
    await until(() => fx.rt.api.received.length >= 1)
    await new Promise((ok) => setTimeout(ok, 20))
    await fx.rt.handles[0]!.pause('audit')
    const text = await scrape()
    expect(sample(text, 'weir_queue_depth', { channel: 'orders' })).toBe(2)
    expect(sample(text, 'weir_queue_oldest_age_seconds', { channel: 'orders' })).toBeGreaterThan(0)
    expect(sample(text, 'weir_destination_paused', { channel: 'orders', destination: 'audit' })).toBe(1)
    expect(sample(text, 'weir_destination_paused', { channel: 'orders', destination: 'api' })).toBe(0)
    fx.rt.api.releaseHanging()
  })

  it('is documented: every metric name is in the README table', () => {
    const readme = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8')
    const section = readme.slice(readme.indexOf('## Admin server and metrics'))
    expect(METRIC_NAMES.filter((n) => !section.includes(`\`${n}\``))).toEqual([])
  })
})
