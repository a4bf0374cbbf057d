import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { REJECT_REASONS } from '../../shared/component.ts'
import { ALERTS_CHANNEL_PREFIX } from '../alerts/load.ts'
import type { ChannelHandle } from '../runtime/index.ts'
import type { RuntimeObserver } from '../runtime/index.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import type { EngineStatus } from '../../shared/store/postgres/engines.ts'
import { channelAgreement } from '../commands/cluster.ts'
import { clusterStoreOf } from './pages/cluster.ts'

/** What the scrape-time gauges read: the running channels and the open store (absent while starting or in standby). */
export interface MetricsSources {
  handles(): readonly ChannelHandle[]
  store(): MessageStore | undefined
}

/** Circuit-breaker states as numbers, so that alerts can compare (`> 0`: not closed). */
export const BREAKER_VALUES: Record<string, number> = { closed: 0, 'half-open': 1, open: 2 }

const STATUSES = ['running', 'paused', 'failing', 'stopping', 'stopped'] as const
const REFUSAL_LIMITS = ['queueLimit', 'maxStoreBytes'] as const
/** Seconds; delivery attempts reach from a loopback millisecond to a slow API's 30 s timeout. */
const DELIVERY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
/** Seconds; a durable write is a group commit (fsync) of a few milliseconds. */
const WRITE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** Every metric the admin server exports beyond the process metrics; the README table lists the same names. */
export const METRIC_NAMES = [
  'weir_messages_received_total', 'weir_messages_duplicate_total', 'weir_messages_refused_total', 'weir_messages_rejected_total', 'weir_messages_finished_total',
  'weir_delivery_attempts_total', 'weir_delivery_duration_seconds', 'weir_store_write_duration_seconds',
  'weir_queue_depth', 'weir_queue_oldest_age_seconds', 'weir_channel_status', 'weir_channel_refusing', 'weir_destination_paused',
  'weir_circuit_breaker_state', 'weir_circuit_breaker_openings_total',
  'weir_token_requests_total', 'weir_tokens_fetched_total', 'weir_token_requests_failed_total', 'weir_token_fetch_failures_total', 'weir_token_expires_in_seconds', 'weir_credential_failing_fast',
  'weir_store_size_bytes', 'weir_alert_notifications_total', 'weir_cluster_engines', 'weir_cluster_definition_conflicts',
] as const

/** Counters fed by the runtime's observer (events of this process since it started). */
function eventMetrics(registers: Registry[]) {
  const byChannel = ['channel'] as const
  return {
    received: new Counter({ name: 'weir_messages_received_total', help: 'Messages stored from the sources (duplicates excluded).', labelNames: byChannel, registers }),
    duplicate: new Counter({ name: 'weir_messages_duplicate_total', help: 'Messages whose dedupe key was seen before (not stored again).', labelNames: byChannel, registers }),
    refused: new Counter({ name: 'weir_messages_refused_total', help: 'Messages refused for now by backpressure (the queue at queueLimit, or the store at maxStoreBytes); input a listener rejects is weir_messages_rejected_total.', labelNames: byChannel, registers }),
    finished: new Counter({ name: 'weir_messages_finished_total', help: 'Messages finished, by status (delivered, filtered, error).', labelNames: ['channel', 'status'], registers }),
    attempts: new Counter({ name: 'weir_delivery_attempts_total', help: 'Delivery attempts by outcome (delivered, retryable, permanent).', labelNames: ['channel', 'destination', 'outcome'], registers }),
    deliveryDuration: new Histogram({ name: 'weir_delivery_duration_seconds', help: 'Duration of one delivery attempt.', labelNames: ['channel', 'destination'], buckets: DELIVERY_BUCKETS, registers }),
    notifications: new Counter({ name: 'weir_alert_notifications_total', help: 'Alert notifications finished by their webhook channel (weir-alerts.<webhook>): delivered, or error (refused for good, or retries given up).', labelNames: ['webhook', 'outcome'], registers }),
    writeDuration: new Histogram({ name: 'weir_store_write_duration_seconds', help: 'Duration of the durable write of a received message (what a sender waits for).', labelNames: byChannel, buckets: WRITE_BUCKETS, registers }),
  }
}

/** Gauges and counters read from the channels at scrape time. */
function channelMetrics(registers: Registry[], src: MetricsSources) {
  const each = (f: (h: ChannelHandle) => void) => { for (const h of src.handles()) f(h) }
  new Gauge({
    name: 'weir_channel_status', help: '1 for the channel\'s current status (running, paused, failing, stopping, stopped), 0 for the others.', labelNames: ['channel', 'status'], registers,
    collect() { this.reset(); each((h) => { const now = h.status(); for (const s of STATUSES) this.set({ channel: h.name, status: s }, s === now ? 1 : 0) }) },
  })
  new Gauge({
    name: 'weir_channel_refusing', help: '1 while the channel refuses its source\'s input at the limit (queueLimit or maxStoreBytes), until it accepts a message again or the limit would accept one; 0 otherwise.', labelNames: ['channel', 'limit'], registers,
    collect() { this.reset(); each((h) => { const r = h.refusing(); for (const limit of REFUSAL_LIMITS) this.set({ channel: h.name, limit }, r?.limit === limit ? 1 : 0) }) },
  })
  new Gauge({
    name: 'weir_destination_paused', help: '1 while an operator has paused the destination.', labelNames: ['channel', 'destination'], registers,
    collect() { this.reset(); each((h) => { for (const d of h.destinations()) this.set({ channel: h.name, destination: d.name }, d.paused ? 1 : 0) }) },
  })
  new Gauge({
    name: 'weir_circuit_breaker_state', help: 'Circuit breaker of the destination: 0 closed, 1 half-open, 2 open.', labelNames: ['channel', 'destination'], registers,
    collect() { this.reset(); each((h) => { for (const d of h.destinations()) this.set({ channel: h.name, destination: d.name }, BREAKER_VALUES[d.breaker] ?? 0) }) },
  })
  new Counter({
    name: 'weir_messages_rejected_total', help: `Input the source rejected before it became a message, by reason (${REJECT_REASONS.join(', ')}): HTTP 4xx, MLLP AE/AR.`, labelNames: ['channel', 'reason'], registers,
    collect() { this.reset(); each((h) => { const by = h.rejections(); for (const reason of REJECT_REASONS) this.inc({ channel: h.name, reason }, by[reason]) }) },
  })
  new Counter({
    name: 'weir_circuit_breaker_openings_total', help: 'Times the destination\'s circuit breaker opened.', labelNames: ['channel', 'destination'], registers,
    collect() { this.reset(); each((h) => { for (const d of h.destinations()) this.inc({ channel: h.name, destination: d.name }, d.openings) }) },
  })
}

/** Per credential of each channel, from its token provider's status at scrape time. */
function credentialMetrics(registers: Registry[], src: MetricsSources) {
  const labelNames = ['channel', 'credential'] as const
  const each = (f: (l: { channel: string; credential: string }, s: ReturnType<ChannelHandle['credentials']>[string]) => void) => {
    for (const h of src.handles()) for (const [credential, s] of Object.entries(h.credentials())) f({ channel: h.name, credential }, s)
  }
  new Counter({
    name: 'weir_token_requests_total', help: 'Requests sent to the token endpoint (retries included).', labelNames, registers,
    collect() { this.reset(); each((l, s) => this.inc(l, s.tokenRequests)) },
  })
  new Counter({
    name: 'weir_tokens_fetched_total', help: 'Access tokens the token endpoint issued (failed requests excluded).', labelNames, registers,
    collect() { this.reset(); each((l, s) => this.inc(l, s.tokensFetched)) },
  })
  new Counter({
    name: 'weir_token_requests_failed_total', help: 'Token requests that got no token: an error response, a network error or timeout (retries included).', labelNames, registers,
    collect() { this.reset(); each((l, s) => this.inc(l, s.tokenRequestsFailed)) },
  })
  new Counter({
    name: 'weir_token_fetch_failures_total', help: 'Token fetches that failed after their retries.', labelNames, registers,
    collect() { this.reset(); each((l, s) => this.inc(l, s.tokenErrors)) },
  })
  new Gauge({
    name: 'weir_token_expires_in_seconds', help: 'Seconds until the current token expires (negative: expired); absent before the first token.', labelNames, registers,
    collect() { this.reset(); const now = Date.now(); each((l, s) => { if (s.expiresAt !== undefined) this.set(l, (s.expiresAt - now) / 1000) }) },
  })
  new Gauge({
    name: 'weir_credential_failing_fast', help: '1 while calls fail fast without contacting the token endpoint (after a non-retryable error).', labelNames, registers,
    collect() { this.reset(); const now = Date.now(); each((l, s) => this.set(l, s.failingFastUntil !== undefined && s.failingFastUntil > now ? 1 : 0)) },
  })
}

/** Queue and store gauges, read from the store at scrape time. */
function storeMetrics(registers: Registry[], src: MetricsSources) {
  new Gauge({
    name: 'weir_queue_depth', help: 'Messages not yet finished (queued, in flight, retrying).', labelNames: ['channel'], registers,
    collect() {
      this.reset()
      const store = src.store()
      if (store) for (const h of src.handles()) this.set({ channel: h.name }, store.pending(h.name))
    },
  })
  new Gauge({
    name: 'weir_queue_oldest_age_seconds', help: 'Age of the oldest unfinished message (0 when none).', labelNames: ['channel'], registers,
    async collect() {
      this.reset()
      const store = src.store()
      if (!store) return
      const oldest = await store.oldestPending()
      const now = Date.now()
      for (const h of src.handles()) this.set({ channel: h.name }, oldest[h.name] === undefined ? 0 : Math.max(0, (now - oldest[h.name]!) / 1000))
    },
  })
  new Gauge({
    name: 'weir_store_size_bytes', help: 'Bytes the message store\'s data takes, as maxStoreBytes counts them: SQLite\'s pages in use and its WAL beyond its working size, or the PostgreSQL database.', registers,
    async collect() {
      this.reset()
      const store = src.store()
      if (store) this.set(await store.size())
    },
  })
}

/** With a PostgreSQL store: the engines of the cluster and whether they agree, read at scrape time (absent with the embedded store). */
function clusterMetrics(registers: Registry[], src: MetricsSources) {
  let engines: Promise<EngineStatus[] | undefined> | undefined
  /** One read of the engines table per scrape, for both gauges. */
  const read = () => (engines ??= (async () => {
    try {
      // A database out of reach leaves these gauges out of the scrape, not the scrape itself.
      return await clusterStoreOf(src.store())?.cluster().catch(() => undefined)
    } finally {
      setImmediate(() => { engines = undefined })
    }
  })())
  new Gauge({
    name: 'weir_cluster_engines', help: 'Engines of the cluster by state: live (heartbeating), or expired (stopped heartbeating: died, frozen or cut off; its claims go back to the queue at the next sweep, and it leaves the table).', labelNames: ['state'], registers,
    async collect() {
      this.reset()
      const all = await read()
      if (all) for (const state of ['live', 'expired'] as const) this.set({ state }, all.filter((e) => e.expired === (state === 'expired')).length)
    },
  })
  new Gauge({
    name: 'weir_cluster_definition_conflicts', help: 'Channels that live engines of the cluster run with different definitions (see weir cluster status).', registers,
    async collect() {
      this.reset()
      const all = await read()
      if (all) this.set(channelAgreement(all).filter((a) => a.fingerprints.length > 1).length)
    },
  })
}

/** The admin server's metrics: a registry of its own, the process metrics, and an observer for the runtime. */
export interface Metrics {
  registry: Registry
  observer: RuntimeObserver
  /** Creates the per-channel series at 0 so that a scrape shows every channel before its first message. */
  seed(handles: readonly ChannelHandle[]): void
}

/**
 * Builds the registry `/metrics` serves: counters fed by the runtime observer (synchronous, never
 * throwing, as the observer contract asks), gauges computed at scrape time from the channels and the store.
 *
 * @example
 * const metrics = createMetrics({ handles: () => handles, store: () => store })
 * await startChannel(channel, { ...deps, observer: metrics.observer })
 * const text = await metrics.registry.metrics()
 */
export function createMetrics(src: MetricsSources): Metrics {
  const registry = new Registry()
  const registers = [registry]
  collectDefaultMetrics({ register: registry })
  const m = eventMetrics(registers)
  channelMetrics(registers, src)
  credentialMetrics(registers, src)
  storeMetrics(registers, src)
  clusterMetrics(registers, src)
  const observer: RuntimeObserver = {
    received: (channel, duplicate) => (duplicate ? m.duplicate : m.received).inc({ channel }),
    stored: (channel, ms) => m.writeDuration.observe({ channel }, ms / 1000),
    refused: (channel) => m.refused.inc({ channel }),
    attempt: (channel, destination, outcome, ms) => {
      m.attempts.inc({ channel, destination, outcome })
      m.deliveryDuration.observe({ channel, destination }, ms / 1000)
    },
    finished: (channel, status) => {
      m.finished.inc({ channel, status })
      // A webhook channel's message is one notification (filtered is not an outcome it has).
      if (channel.startsWith(ALERTS_CHANNEL_PREFIX) && status !== 'filtered') m.notifications.inc({ webhook: channel.slice(ALERTS_CHANNEL_PREFIX.length), outcome: status })
    },
  }
  const seed = (handles: readonly ChannelHandle[]) => {
    for (const h of handles) {
      const channel = h.name
      for (const c of [m.received, m.duplicate, m.refused]) c.inc({ channel }, 0)
      for (const status of ['delivered', 'filtered', 'error']) m.finished.inc({ channel, status }, 0)
    }
  }
  return { registry, observer, seed }
}
