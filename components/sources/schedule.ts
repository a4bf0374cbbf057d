import { createHash } from 'node:crypto'
import cron, { type ScheduledTask } from 'node-cron'
import jsonata from 'jsonata'
import { defineComponent, type ComponentContext, type Emit, type ConfigOf } from '../../shared/component.ts'
import { HTTP_URL } from '../../shared/config/patterns.ts'
import { errorCodes, HttpStatusError, isWeirError, refusalOf } from '../../shared/errors.ts'
import { evaluationFailure, jsonataProblem, plainJson } from '../../shared/jsonata.ts'
import type { TokenProvider } from '../../shared/oauth/types.ts'

const configSchema = {
  type: 'object', additionalProperties: false, required: ['cron', 'url'],
  properties: {
    cron: {
      type: 'string', minLength: 1,
      description: 'When to poll: a cron expression (node-cron; 5 fields, or 6 with seconds first). A tick never overlaps the previous one; a tick that would is skipped.',
      examples: ['*/5 * * * *', '0 0 * * * *'],
    },
    timezone: { type: 'string', minLength: 1, default: 'UTC', description: 'IANA time zone the cron expression is read in.', examples: ['Europe/Amsterdam'] },
    url: {
      type: 'string', pattern: HTTP_URL,
      description: 'URL fetched (GET) on each tick.',
      examples: ['https://fhir.example.org/R4/Observation?category=laboratory&_sort=_lastUpdated'],
    },
    credential: { type: 'string', minLength: 1, description: 'Name of a channel credential authenticating the requests.', examples: ['epic'] },
    headers: {
      type: 'object', default: {}, propertyNames: { pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' },
      additionalProperties: { type: 'string', description: 'Header value.' },
      description: 'Extra request headers (Authorization comes from `credential`).',
    },
    timeoutMs: { type: 'integer', minimum: 1, default: 30_000, description: 'Timeout of each page request (ms).' },
    maxBytes: {
      type: 'integer', minimum: 1, maximum: 256 * 1024 * 1024, default: 1024 * 1024,
      description: 'Largest page read (bytes). Reading stops past it and the tick fails with an error naming the limit (the cursor is not advanced); raise it, or ask the API for smaller pages.',
    },
    items: {
      type: 'string', minLength: 1,
      description: 'JSONata expression selecting the items of a page; each becomes a message. Default: the resources of a FHIR Bundle (`entry.resource`), the elements of a JSON array, or else the whole body.',
      examples: ['entry.resource', 'data.results'],
    },
    nextLink: {
      type: 'string', minLength: 1,
      description: 'JSONata expression giving the next page\'s URL in the body. Default: the RFC 8288 `Link` header with rel="next", else a FHIR Bundle\'s `link[relation="next"].url`. Next links must stay on the origin of `url`.',
      examples: ['"@odata.nextLink"', 'paging.next'],
    },
    maxPages: { type: 'integer', minimum: 1, default: 100, description: 'Most pages followed in one tick; reaching it is logged as an error and the cursor is not advanced.' },
    dedupeKey: {
      type: 'string', minLength: 1,
      description: 'JSONata expression giving an item\'s identity, so an item fetched twice is stored once. Default: `resourceType/id/_history/versionId` (or meta.lastUpdated) for FHIR resources, a hash of the content otherwise.',
      examples: ['id & "@" & updated_at'],
    },
    contentType: { type: 'string', minLength: 1, description: 'Content type of the messages. Default: application/fhir+json for FHIR resources, application/json otherwise.' },
    runOnStart: { type: 'boolean', default: false, description: 'Also run a tick right after start.' },
    cursor: {
      type: 'object', additionalProperties: false, required: ['param'],
      description: 'Incremental polling: the largest value of `itemPath` seen is stored (it survives restarts) and sent on the next tick as query parameter `param` = `prefix` + value. Stored only after a tick that fetched every page.',
      properties: {
        param: { type: 'string', minLength: 1, description: 'Query parameter carrying the cursor.', examples: ['_lastUpdated'] },
        itemPath: { type: 'string', minLength: 1, default: 'meta.lastUpdated', description: 'JSONata expression giving an item\'s cursor value (timestamps compare as instants, other values as strings).' },
        prefix: {
          type: 'string', default: 'ge',
          description: 'Text put before the value: a comparator such as FHIR\'s "ge" (the default) or "gt", or "" for none. With "ge" the next tick asks again for the items at the stored value, so an item that shares it with the newest item of the previous tick (the same timestamp, visible only later) is not lost; the items already emitted at that value are remembered with the cursor and skipped. "gt" misses such an item.',
        },
        initial: { type: 'string', minLength: 1, description: 'Cursor value of the very first tick; without it the first tick sends no cursor.', examples: ['2026-01-01T00:00:00Z'] },
      },
    },
  },
} as const

export type ScheduleConfig = ConfigOf<typeof configSchema>

function cronProblem(expr: string): string | undefined {
  if (cron.validate(expr)) return undefined
  const detail = cron.validateDetailed(expr).errors.map((e) => e.message).join('; ')
  return `invalid cron expression ${JSON.stringify(expr)}${detail ? `: ${detail}` : ''}`
}

function timezoneProblem(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz })
    return undefined
  } catch {
    return `unknown time zone ${JSON.stringify(tz)}`
  }
}

/** RFC 8288 Link header → the target of the first link whose rel includes `rel`. */
export function linkWithRel(header: string | string[] | undefined, rel: string): string | undefined {
  const text = Array.isArray(header) ? header.join(', ') : header ?? ''
  let i = 0
  const ws = () => { while (i < text.length && /\s/.test(text[i]!)) i++ }
  while (i < text.length) {
    const lt = text.indexOf('<', i)
    const gt = lt < 0 ? -1 : text.indexOf('>', lt)
    if (gt < 0) return undefined
    const target = text.slice(lt + 1, gt)
    i = gt + 1
    let rels: string[] = []
    for (;;) {
      ws()
      if (i >= text.length || text[i] === ',') { i++; break }
      if (text[i] !== ';') { i++; continue }
      i++
      ws()
      const name = /^[^=;,\s]*/.exec(text.slice(i))![0]
      i += name.length
      ws()
      let value = ''
      if (text[i] === '=') {
        i++
        ws()
        if (text[i] === '"') {
          i++
          while (i < text.length && text[i] !== '"') value += text[i] === '\\' ? text[++i] ?? '' : text[i], i++
          i++
        } else {
          value = /^[^;,\s]*/.exec(text.slice(i))![0]
          i += value.length
        }
      }
      if (name.toLowerCase() === 'rel' && !rels.length) rels = value.toLowerCase().split(/\s+/)
    }
    if (rels.includes(rel)) return target
  }
  return undefined
}

type Json = Record<string, unknown>
const isBundle = (b: unknown): b is Json => typeof b === 'object' && b !== null && (b as Json).resourceType === 'Bundle'
const isResource = (v: unknown): v is Json => typeof v === 'object' && v !== null && typeof (v as Json).resourceType === 'string'

/** Cursor values: instants compare as instants (offsets differ), anything else as strings. */
function later(a: string, b: string | undefined): boolean {
  if (b === undefined) return true
  const ta = Date.parse(a)
  const tb = Date.parse(b)
  return Number.isNaN(ta) || Number.isNaN(tb) ? a > b : ta > tb
}

/** The same cursor value: the same instant, or the same string. */
const sameValue = (a: string, b: string | undefined) => b !== undefined && !later(a, b) && !later(b, a)

/**
 * The dedupe keys of the items emitted at the stored cursor value, stored beside it (state key
 * `cursorBoundary`): a tick asking with "ge" gets them again and skips them. Beyond this many, the
 * store's dedupe key still recognises the rest.
 */
interface Boundary { value: string; keys: string[] }
const MAX_BOUNDARY_KEYS = 1000

/** What every tick of one schedule source shares: its config, context and compiled expressions. */
interface Poll {
  readonly config: ScheduleConfig
  readonly ctx: ComponentContext
  readonly credential: TokenProvider | undefined
  readonly origin: string
  readonly itemsExpr: Evaluate | undefined
  readonly nextExpr: Evaluate | undefined
  readonly keyExpr: Evaluate | undefined
  readonly cursorExpr: Evaluate | undefined
  emit: Emit | undefined
}

/** One of the config's expressions, compiled. */
type Evaluate = (input: unknown) => Promise<unknown>

/**
 * Compiles the expression at `at` in the config (`items`, `cursor.itemPath`): a failure at run time
 * says which expression, and where in it, as shared/jsonata.ts words them (`items expression failed
 * at position 12 ($undefinedFn): …`), not JSONata's message alone.
 */
function compiled(source: string | undefined, at: string): Evaluate | undefined {
  if (source === undefined) return undefined
  const expr = jsonata(source)
  return async (input) => {
    try {
      return await expr.evaluate(input)
    } catch (e) {
      throw new Error(`${at} expression ${evaluationFailure(source, e)}`)
    }
  }
}

async function itemsOf(itemsExpr: Evaluate | undefined, body: unknown): Promise<unknown[]> {
  if (itemsExpr) {
    const r = plainJson(await itemsExpr(body))
    return r === undefined ? [] : Array.isArray(r) ? r : [r]
  }
  if (isBundle(body)) return ((body.entry as Json[] | undefined) ?? []).map((e) => e.resource).filter((r) => r !== undefined)
  if (Array.isArray(body)) return body
  return [body]
}

async function nextOf(nextExpr: Evaluate | undefined, headers: Record<string, string | string[] | undefined>, body: unknown): Promise<string | undefined> {
  if (nextExpr) {
    const r = await nextExpr(body)
    return typeof r === 'string' && r ? r : undefined
  }
  const fromHeader = linkWithRel(headers.link, 'next')
  if (fromHeader) return fromHeader
  if (isBundle(body)) return ((body.link as Json[] | undefined) ?? []).find((l) => l.relation === 'next')?.url as string | undefined
  return undefined
}

async function keyOf(keyExpr: Evaluate | undefined, item: unknown): Promise<string> {
  if (keyExpr) {
    const k = await keyExpr(item)
    if (k !== undefined && k !== null && typeof k !== 'object') return `schedule:${String(k)}`
  } else if (isResource(item) && typeof item.id === 'string') {
    const meta = (item.meta ?? {}) as Json
    const version = meta.versionId ?? meta.lastUpdated
    if (version !== undefined) return `schedule:${item.resourceType}/${item.id}/_history/${String(version)}`
  }
  return `schedule:sha256:${createHash('sha256').update(JSON.stringify(item)).digest('hex')}`
}

/** The cursor through one tick: the stored value it starts from and the largest item value seen since, with the items emitted at it. */
class TickCursor {
  maxSeen: string | undefined
  /** Dedupe keys of the items emitted at `maxSeen`. */
  private atMax: Set<string>

  private constructor(private readonly poll: Poll, readonly stored: string | undefined, private readonly storedKeys: ReadonlySet<string>) {
    this.maxSeen = stored
    this.atMax = new Set(storedKeys)
  }

  static async load(poll: Poll): Promise<TickCursor> {
    const { config, ctx } = poll
    if (!config.cursor) return new TickCursor(poll, undefined, new Set())
    const stored = (await ctx.state.get<string>('cursor')) ?? config.cursor.initial
    const boundary = await ctx.state.get<Boundary>('cursorBoundary')
    // Keys stored for another value (a crash between the two writes of save()) are not used.
    const keys = boundary && stored !== undefined && boundary.value === stored && Array.isArray(boundary.keys) ? boundary.keys : []
    return new TickCursor(poll, stored, new Set(keys))
  }

  /** The first page's URL: `url` with the cursor parameter, when there is a value to send. */
  firstUrl(): URL {
    const { config } = this.poll
    const url = new URL(config.url)
    if (config.cursor && this.stored !== undefined) url.searchParams.set(config.cursor.param, config.cursor.prefix + this.stored)
    return url
  }

  /** An item's cursor value, when it has one (a string or a number). */
  async valueOf(item: unknown): Promise<string | undefined> {
    if (!this.poll.cursorExpr) return undefined
    const v = await this.poll.cursorExpr(item)
    return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined
  }

  /** True for an item at the stored value that an earlier tick emitted (asked for again by "ge"). */
  emittedBefore(value: string | undefined, key: string): boolean {
    return value !== undefined && this.storedKeys.has(key) && sameValue(value, this.stored)
  }

  see(value: string | undefined, key: string): void {
    if (value === undefined) return
    if (later(value, this.maxSeen)) {
      this.maxSeen = value
      this.atMax = new Set([key])
    } else if (sameValue(value, this.maxSeen) && this.atMax.size < MAX_BOUNDARY_KEYS) this.atMax.add(key)
  }

  /** Stores the largest value seen and the items at it; called only after a tick that fetched every page. */
  async save(): Promise<void> {
    const { config, ctx } = this.poll
    if (!config.cursor || this.maxSeen === undefined) return
    const moved = this.maxSeen !== this.stored
    if (!moved && this.atMax.size === this.storedKeys.size) return
    // The keys first: they name their value, so a crash before the cursor is written leaves them unused.
    await ctx.state.set('cursorBoundary', { value: this.maxSeen, keys: [...this.atMax] } satisfies Boundary)
    if (moved) await ctx.state.set('cursor', this.maxSeen)
  }
}

/** GETs one page: its headers and parsed JSON body; a non-2xx status, a page over maxBytes or a body that is not JSON fails the tick. */
async function fetchPage(poll: Poll, url: URL, signal: AbortSignal): Promise<{ headers: Record<string, string | string[] | undefined>; body: unknown }> {
  const { config, credential } = poll
  const res = await poll.ctx.http.request({
    method: 'GET', url, headers: { accept: 'application/fhir+json, application/json;q=0.9', ...config.headers },
    ...(credential ? { credential } : {}), timeoutMs: config.timeoutMs, maxBodyBytes: config.maxBytes, signal,
  })
  if (res.status < 200 || res.status > 299) throw new HttpStatusError(`GET ${url.origin}${url.pathname} answered ${res.status}`, res.status)
  if (res.truncated) throw new errorCodes.ERR_HTTP_RESPONSE(`GET ${url.origin}${url.pathname} answered a page over maxBytes (${config.maxBytes} bytes); reading stopped there. Raise "maxBytes" or ask the API for smaller pages`)
  let body: unknown
  try { body = JSON.parse(res.body) } catch { throw new errorCodes.ERR_HTTP_RESPONSE(`GET ${url.origin}${url.pathname} did not return JSON`) }
  return { headers: res.headers, body }
}

/** Emits each item of a page and moves the cursor past it; false when the tick was aborted. */
async function emitPage(poll: Poll, body: unknown, url: URL, page: number, cursor: TickCursor, counts: { emitted: number; duplicates: number }, signal: AbortSignal): Promise<boolean> {
  for (const item of await itemsOf(poll.itemsExpr, body)) {
    if (signal.aborted) return false
    const dedupeKey = await keyOf(poll.keyExpr, item)
    const value = await cursor.valueOf(item)
    if (cursor.emittedBefore(value, dedupeKey)) {
      counts.duplicates++
      cursor.see(value, dedupeKey)
      continue
    }
    const result = await poll.emit!({
      body: item,
      contentType: poll.config.contentType ?? (isResource(item) ? 'application/fhir+json' : 'application/json'),
      attributes: { url: url.href, page: String(page) },
      dedupeKey,
    })
    if (result.duplicate) counts.duplicates++
    else counts.emitted++
    cursor.see(value, dedupeKey)
  }
  return true
}

/** The next page's URL, or undefined after the last page. */
async function nextPageUrl(poll: Poll, headers: Record<string, string | string[] | undefined>, body: unknown, url: URL, visited: Set<string>): Promise<URL | undefined> {
  const next = await nextOf(poll.nextExpr, headers, body)
  if (!next) return undefined
  const nextUrl: URL = new URL(next, url)
  // Credentials go to the configured origin only: a next link elsewhere is not followed.
  if (nextUrl.origin !== poll.origin) throw new errorCodes.ERR_HTTP_RESPONSE(`next link to another origin (${nextUrl.origin}) refused`)
  if (visited.has(nextUrl.href)) throw new errorCodes.ERR_HTTP_RESPONSE(`next link loops back to ${nextUrl.origin}${nextUrl.pathname}`)
  return nextUrl
}

/** One tick: follows the pages from the cursor on, emitting their items, and stores the cursor once every page was fetched. */
async function runTick(poll: Poll, signal: AbortSignal): Promise<void> {
  const { config, ctx } = poll
  const started = Date.now()
  const cursor = await TickCursor.load(poll)
  let url: URL | undefined = cursor.firstUrl()
  const counts = { emitted: 0, duplicates: 0 }
  const visited = new Set<string>()
  for (let page = 1; url; page++) {
    if (page > config.maxPages) {
      ctx.log.error({ maxPages: config.maxPages }, 'pagination stopped at maxPages; cursor not advanced')
      return
    }
    visited.add(url.href)
    const { headers, body } = await fetchPage(poll, url, signal)
    if (!(await emitPage(poll, body, url, page, cursor, counts, signal))) return
    url = await nextPageUrl(poll, headers, body, url, visited)
  }
  await cursor.save()
  ctx.log.info({ emitted: counts.emitted, duplicates: counts.duplicates, cursor: cursor.maxSeen, ms: Date.now() - started }, 'poll finished')
}

export default defineComponent({
  type: 'schedule', kind: 'source',
  cluster: 'one-engine',
  description: 'Polls an HTTP API on a cron schedule with a named credential, follows pagination, emits each item and keeps a cursor across restarts.',
  configSchema,
  check(config) {
    const out: Array<[string, string]> = []
    const push = (p: string, m: string | undefined) => { if (m) out.push([p, m]) }
    push('/cron', cronProblem(config.cron))
    push('/timezone', timezoneProblem(config.timezone))
    push('/items', jsonataProblem(config.items))
    push('/nextLink', jsonataProblem(config.nextLink))
    push('/dedupeKey', jsonataProblem(config.dedupeKey))
    push('/cursor/itemPath', jsonataProblem(config.cursor?.itemPath))
    try { new URL(config.url) } catch { out.push(['/url', 'must be a valid URL']) }
    return out
  },
  create(config, ctx) {
    const problem = cronProblem(config.cron) ?? timezoneProblem(config.timezone)
    if (problem) throw new errorCodes.ERR_SCHEDULE_INVALID(problem)
    const poll: Poll = {
      config, ctx,
      credential: config.credential ? ctx.credential(config.credential) : undefined,
      origin: new URL(config.url).origin,
      itemsExpr: compiled(config.items, 'items'),
      nextExpr: compiled(config.nextLink, 'nextLink'),
      keyExpr: compiled(config.dedupeKey, 'dedupeKey'),
      cursorExpr: compiled(config.cursor?.itemPath, 'cursor.itemPath'),
      emit: undefined,
    }
    let task: ScheduledTask | undefined
    let running: Promise<void> | undefined
    let abort = new AbortController()

    function tick(): Promise<void> {
      if (running) {
        ctx.log.warn('previous poll still running; tick skipped')
        return running
      }
      const p: Promise<void> = runTick(poll, abort.signal)
        .catch((e: unknown) => {
          const backpressure = isWeirError(e) && e.code === 'ERR_BACKPRESSURE'
          ctx.log[backpressure ? 'warn' : 'error']({ reason: (e as Error).message }, backpressure ? `${refusalOf(e)}; poll stopped, cursor not advanced` : 'poll failed; cursor not advanced')
        })
        .finally(() => { running = undefined })
      running = p
      return p
    }

    return {
      async start(e: Emit) {
        poll.emit = e
        abort = new AbortController()
        ctx.signal.addEventListener('abort', () => abort.abort(), { once: true })
        task = cron.schedule(config.cron, () => { void tick() }, { timezone: config.timezone, name: `${ctx.channel}/${ctx.name}` })
        if (config.runOnStart) void tick()
      },
      async stop() {
        await task?.destroy()
        task = undefined
        abort.abort()
        await running
      },
      /** Runs one tick now (tests, manual trigger); joins a tick in progress instead of overlapping it. */
      tick,
    }
  },
})
