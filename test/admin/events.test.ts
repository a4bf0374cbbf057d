// GET /api/events over a real socket: the snapshot, deltas of only the changed channels, the
// heartbeat, authentication, the cap on streams, cleanup when a client leaves, and a close that does
// not wait for open streams.
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startAdminServer, type AdminServer } from '../../engine/admin/index.ts'
import type { EventStreamOptions } from '../../engine/admin/events.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { destination, feedSource, until, useRuntimeFixture } from '../runtime/_helpers.ts'
import { adminConfig, call, sessionCookie } from './_admin.ts'

const VIEWER_TOKEN = 'vw-7c1e5a9d3b2f48e6a0c4'
const viewer = { authorization: `Bearer ${VIEWER_TOKEN}` }
const config = () => adminConfig({ tokens: [{ name: 'victor', role: 'viewer', token: { $env: 'VW' } }] }, { VW: VIEWER_TOKEN })

interface ServerEvent { event: string; data: any }

/** An open event stream: its response, the events parsed so far (comments as event ":"), and a wait for one. */
interface Stream {
  res: IncomingMessage
  req: ClientRequest
  events: ServerEvent[]
  raw: string
  ended: boolean
  next(match: (e: ServerEvent) => boolean, what: string): Promise<ServerEvent>
}

function parse(block: string): ServerEvent | undefined {
  if (block.startsWith(':')) return { event: ':', data: block.slice(1).trim() }
  const fields = Object.fromEntries(block.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]))
  if (fields.retry !== undefined) return { event: 'retry', data: Number(fields.retry) }
  return fields.data === undefined ? undefined : { event: fields.event ?? 'message', data: JSON.parse(fields.data) }
}

function openStream(base: string, path: string, headers: Record<string, string>): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, base), { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const s: Stream = {
        res, req, events: [], raw: '', ended: false,
        async next(match, what) {
          await until(() => s.events.some(match), 5000, what)
          return s.events.find(match)!
        },
      }
      let buffer = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        s.raw += d
        buffer += d
        for (let i = buffer.indexOf('\n\n'); i >= 0; i = buffer.indexOf('\n\n')) {
          const e = parse(buffer.slice(0, i))
          buffer = buffer.slice(i + 2)
          if (e) s.events.push(e)
        }
      })
      res.on('close', () => (s.ended = true))
      resolve(s)
    })
    req.on('error', reject)
    req.end()
  })
}

const names = (e: ServerEvent) => e.data.channels.map((c: { name: string }) => c.name)
const isSnapshot = (e: ServerEvent) => e.event === 'channels' && e.data.snapshot === true

function useEvents(options: EventStreamOptions) {
  const rt = useRuntimeFixture()
  const fx = { feed: feedSource(), admin: undefined as unknown as AdminServer, streams: [] as Stream[] }
  const open = async (path: string, headers: Record<string, string> = viewer) => {
    const s = await openStream(fx.admin.url, path, headers)
    fx.streams.push(s)
    return s
  }
  beforeEach(async () => {
    fx.feed = feedSource()
    fx.admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: config(), log: silentLogger, events: options })
    const orders = await rt.start({ name: 'orders', source: fx.feed.definition, destinations: [destination('api', rt.api.url)] }, { observer: fx.admin.observer })
    const billing = await rt.start({ name: 'billing', source: feedSource().definition, destinations: [destination('api', rt.api.url)] }, { observer: fx.admin.observer })
    fx.admin.attach({ store: rt.store, handles: [orders, billing] })
  })
  afterEach(async () => {
    for (const s of fx.streams.splice(0)) s.req.destroy()
    await fx.admin.close()
  })
  return { fx, open }
}

describe('GET /api/events', () => {
  const { fx, open } = useEvents({ tickMs: 40, pingMs: 200, maxStreams: 2 })

  it('answers an event stream: a retry hint, then a snapshot of every channel as GET /api/channels shows it', async () => {
    const s = await open('/api/events')
    expect(s.res.statusCode).toBe(200)
    expect(s.res.headers).toMatchObject({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' })
    expect(s.res.headers['content-security-policy']).toContain("connect-src 'self'")
    const snapshot = await s.next(isSnapshot, 'the snapshot')
    expect(s.events[0]).toEqual({ event: 'retry', data: 3000 })
    const api = await call(fx.admin.url, '/api/channels', { headers: viewer })
    expect(snapshot.data.channels).toEqual(api.json.channels)
    expect(names(snapshot)).toEqual(['orders', 'billing'])
  })

  it('sends only the channels asked for, and then only those whose view changed', async () => {
    const all = await open('/api/events')
    const billingOnly = await open('/api/events?channels=billing,no-such-channel')
    expect(names(await billingOnly.next(isSnapshot, 'billing snapshot'))).toEqual(['billing'])
    await all.next(isSnapshot, 'full snapshot')
    await fx.feed.emit({ id: 1 })
    const delta = await all.next((e) => e.event === 'channels' && !e.data.snapshot && e.data.channels[0].counters.delivered === 1, 'a delta with the delivery')
    expect(delta.data.channels).toMatchObject([{ name: 'orders', status: 'running', counters: { received: 1, delivered: 1, errors: 0 }, queueDepth: 0 }])
    const deltas = all.events.filter((e) => e.event === 'channels' && !e.data.snapshot)
    expect(deltas.flatMap(names).every((n: string) => n === 'orders')).toBe(true) // billing did not change
    expect(billingOnly.events.filter((e) => e.event === 'channels')).toHaveLength(1) // the snapshot only
  })

  it('sends a heartbeat comment', async () => {
    const s = await open('/api/events')
    await s.next((e) => e.event === ':', 'a ping')
    expect(s.raw).toContain('\n: ping\n\n')
  })

  it('refuses a request without a token or session (401), and takes a login session cookie as EventSource sends it', async () => {
    expect((await call(fx.admin.url, '/api/events')).status).toBe(401)
    expect((await call(fx.admin.url, '/api/events', { headers: { authorization: 'Bearer wrong' } })).status).toBe(401)
    expect(fx.admin.events.subscribers).toBe(0)
    const login = await call(fx.admin.url, '/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: VIEWER_TOKEN }) })
    const s = await open('/api/events', { cookie: sessionCookie(login) })
    expect(s.res.statusCode).toBe(200)
    expect(names(await s.next(isSnapshot, 'the snapshot'))).toEqual(['orders', 'billing'])
  })

  it('ends a stream opened with a login session once that session logs out', async () => {
    const login = await call(fx.admin.url, '/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: VIEWER_TOKEN }) })
    const cookie = sessionCookie(login)
    const s = await open('/api/events', { cookie })
    await s.next(isSnapshot, 'the snapshot')
    const bearer = await open('/api/events')
    await bearer.next(isSnapshot, 'the bearer stream\'s snapshot')
    const { csrfToken } = (await call(fx.admin.url, '/api/session', { headers: { cookie } })).json
    expect((await call(fx.admin.url, '/logout', { method: 'POST', headers: { cookie, 'x-csrf-token': csrfToken } })).status).toBe(200)
    await until(() => s.ended, 5000, 'the logged-out stream to end')
    await fx.feed.emit({ id: 1 })
    await bearer.next((e) => e.event === 'channels' && !e.data.snapshot, 'a delta on the bearer stream')
    expect(bearer.ended).toBe(false)
  })

  it('answers 503 beyond the cap, and forgets a client that went away (the timer stops with the last)', async () => {
    const first = await open('/api/events')
    await open('/api/events')
    await first.next(isSnapshot, 'the snapshot')
    expect(fx.admin.events.subscribers).toBe(2)
    expect(fx.admin.events.ticking).toBe(true)
    const third = await call(fx.admin.url, '/api/events', { headers: viewer })
    expect(third.status).toBe(503)
    expect(third.json.error).toBe('too many event streams (at most 2); poll GET /api/channels instead')
    for (const s of fx.streams) s.req.destroy()
    await until(() => fx.admin.events.subscribers === 0, 5000, 'subscribers back to 0')
    expect(fx.admin.events.ticking).toBe(false)
    expect((await open('/api/events')).res.statusCode).toBe(200)
  })
})

describe('closing the admin server', () => {
  const rt = useRuntimeFixture()

  it('ends the open streams instead of waiting for them', async () => {
    const admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: config(), log: silentLogger })
    admin.attach({ store: rt.store, handles: [await rt.start({ name: 'orders', source: feedSource().definition, destinations: [destination('api', rt.api.url)] })] })
    const streams = await Promise.all([1, 2, 3].map(() => openStream(admin.url, '/api/events', viewer)))
    await Promise.all(streams.map((s) => s.next(isSnapshot, 'the snapshot')))
    const closed = await Promise.race([admin.close().then(() => 'closed'), new Promise((ok) => setTimeout(ok, 5000, 'hung'))])
    expect(closed).toBe('closed')
    await until(() => streams.every((s) => s.ended), 5000, 'every stream ended')
    expect(admin.events.subscribers).toBe(0)
  })
})
