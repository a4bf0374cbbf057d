import type { ServerResponse } from 'node:http'
import { Refusal } from '../../shared/inbound/refusal.ts'
import type { Session } from './auth.ts'
import { channelView, type ApiSources } from './api.ts'
import type { Router } from './router.ts'

/** The timing and the cap of the event streams (defaults: a tick a second, a ping every 15 s, 100 streams). */
export interface EventStreamOptions {
  tickMs?: number
  pingMs?: number
  maxStreams?: number
}

/** The live event streams of the admin server: GET /api/events. */
export interface EventStreams {
  /** Streams open now (including those still sending their first snapshot). */
  readonly subscribers: number
  /** Whether the shared timer runs (only while a stream is open). */
  readonly ticking: boolean
  /** Ends every stream and stops the timer; later requests answer 503. */
  close(): void
}

interface Subscriber {
  res: ServerResponse
  /** The channels asked for; all when undefined. */
  names: ReadonlySet<string> | undefined
  /** The JSON last sent per channel. */
  sent: Map<string, string>
  /** Set once the snapshot is written: ticks skip it before. */
  ready: boolean
  /** The login session the stream was opened with, if any: the stream ends with it. */
  session: Session | undefined
}

/** A client slower than this (bytes not yet written to its socket) is dropped: it reconnects and gets a fresh snapshot. */
const MAX_BACKLOG_BYTES = 1024 * 1024
const RETRY_MS = 3000

const frame = (jsons: readonly string[], snapshot: boolean): string => `event: channels\ndata: {${snapshot ? '"snapshot":true,' : ''}"channels":[${jsons.join(',')}]}\n\n`

/** The channels' views by name, as JSON (each serialized once however many streams show it). */
async function viewsOf(src: ApiSources, wanted: (name: string) => boolean): Promise<Map<string, string>> {
  const store = src.store()
  const oldest = store ? await store.oldestPending() : {}
  const now = Date.now()
  const handles = src.handles().filter((h) => wanted(h.name))
  const views = await Promise.all(handles.map((h) => channelView(h, store, oldest, now)))
  // Whole seconds: a queue's age would otherwise change every tick and resend every busy channel.
  return new Map(views.map((v) => [v.name, JSON.stringify({ ...v, oldestQueuedAgeSec: v.oldestQueuedAgeSec === null ? null : Math.floor(v.oldestQueuedAgeSec) })]))
}

/** The views `s` shows that differ from what it was last sent (all of them for its snapshot), remembered as sent. */
function changedFor(s: Subscriber, views: ReadonlyMap<string, string>): string[] {
  const out: string[] = []
  for (const [name, json] of views) {
    if ((s.names && !s.names.has(name)) || s.sent.get(name) === json) continue
    s.sent.set(name, json)
    out.push(json)
  }
  return out
}

function namesOf(url: URL): ReadonlySet<string> | undefined {
  const raw = url.searchParams.get('channels')
  return raw === null ? undefined : new Set(raw.split(',').map((n) => n.trim()).filter(Boolean))
}

/**
 * GET /api/events (viewer): a `text/event-stream` of the channels' views, as GET /api/channels shows
 * them. First a snapshot (`event: channels`, data `{"snapshot":true,"channels":[…]}`) of the channels
 * named in `?channels=a,b` (all when absent), then each tick only those whose view changed, and a
 * `: ping` comment every `pingMs`. One timer serves every stream (each view is computed once a tick);
 * it stops when the last stream closes. Beyond `maxStreams` open streams a request answers 503.
 *
 * @example
 * const events = eventRoutes(router, sources, { maxStreams: 100 })
 * events.close() // on shutdown, before server.close(): ends every stream
 */
export function eventRoutes(router: Router, src: ApiSources, o: EventStreamOptions = {}, sessionLive: (s: Session) => boolean = () => true): EventStreams {
  const tickMs = o.tickMs ?? 1000
  const pingMs = o.pingMs ?? 15_000
  const maxStreams = o.maxStreams ?? 100
  const subscribers = new Set<Subscriber>()
  let timer: NodeJS.Timeout | undefined
  let lastPing = Date.now()
  let closed = false

  const write = (s: Subscriber, text: string) => {
    if (s.res.writableLength > MAX_BACKLOG_BYTES) return void s.res.destroy()
    s.res.write(text)
  }

  /** Ends the stream of `s` (a logout or an expired session: it must not go on showing the channels). */
  const end = (s: Subscriber) => {
    s.res.end()
    drop(s)
  }

  async function tick(): Promise<void> {
    for (const s of subscribers) if (s.session && !sessionLive(s.session)) end(s)
    const ready = [...subscribers].filter((s) => s.ready)
    const all = ready.some((s) => !s.names)
    const views = await viewsOf(src, (name) => all || ready.some((s) => s.names!.has(name)))
    const ping = Date.now() - lastPing >= pingMs
    if (ping) lastPing = Date.now()
    for (const s of ready) {
      if (!subscribers.has(s)) continue
      const changed = changedFor(s, views)
      if (changed.length) write(s, frame(changed, false))
      if (ping) write(s, ': ping\n\n')
    }
  }

  const schedule = () => {
    if (timer || closed || subscribers.size === 0) return
    timer = setTimeout(() => {
      // A failed read (the store closing, a restart) is tried again on the next tick.
      tick().catch(() => undefined).finally(() => {
        timer = undefined
        schedule()
      })
    }, tickMs).unref()
  }

  const drop = (s: Subscriber) => {
    subscribers.delete(s)
    if (subscribers.size === 0 && timer) {
      clearTimeout(timer)
      timer = undefined
    }
  }

  router.get('/api/events', async ({ req, res, url, session }) => {
    if (closed) throw new Refusal(503, 'the admin server is shutting down')
    if (subscribers.size >= maxStreams) throw new Refusal(503, `too many event streams (at most ${maxStreams}); poll GET /api/channels instead`, { 'retry-after': '10' })
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', connection: 'keep-alive' })
    if (req.method === 'HEAD') return void res.end()
    const s: Subscriber = { res, names: namesOf(url), sent: new Map(), ready: false, session }
    subscribers.add(s)
    res.on('close', () => drop(s))
    res.write(`retry: ${RETRY_MS}\n\n`)
    const views = await viewsOf(src, (name) => !s.names || s.names.has(name))
    if (!subscribers.has(s)) return
    write(s, frame(changedFor(s, views), true))
    s.ready = true
    schedule()
  })

  return {
    get subscribers() { return subscribers.size },
    get ticking() { return timer !== undefined },
    close() {
      closed = true
      for (const s of [...subscribers]) end(s)
    },
  }
}
