import { defineComponent, isJsonContentType, type ConfigOf } from '../../shared/component.ts'
import { URL_OR_PATH } from '../../shared/config/patterns.ts'
import { secretSchema } from '../../shared/config/secret-schema.ts'
import { errorCodes, HttpStatusError, isWeirError, parseRetryAfter, PermanentError } from '../../shared/errors.ts'
import { reveal, type Secret } from '../../shared/secret.ts'
import type { TokenProvider } from '../../shared/oauth/types.ts'
import { isRetryableStatus, redactedExcerpt, type HttpRequest, type HttpResponse } from '../../shared/http/index.ts'
import { compileTemplate, hasTemplateField, templateProblems } from '../../shared/template.ts'

const HEADER_NAME = '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$'

const configSchema = {
  type: 'object', additionalProperties: false, required: ['url'],
  properties: {
    url: {
      type: 'string', pattern: URL_OR_PATH,
      description: 'Endpoint URL (http or https), or a path starting with `/` when `baseUrlFromToken` gives the base. `{field}` inserts a message field, URL-encoded (`id`, `channel`, `body.<path>`, `attributes.<name>`); fields are allowed in the path and query only, never in the scheme, host or port. A value that makes a `.` or `..` path segment fails the message permanently (it would change the path).',
      examples: ['https://fhir.example.org/api/FHIR/R4/Patient', 'https://api.example.com/patients/{body.mrn}', '/services/data/v61.0/sobjects/Contact'],
    },
    method: { enum: ['POST', 'PUT', 'PATCH', 'DELETE', 'GET'], default: 'POST', description: 'HTTP method. GET and DELETE send no body.' },
    headers: {
      type: 'object', default: {}, propertyNames: { pattern: HEADER_NAME },
      additionalProperties: { type: 'string', description: 'Header value; `{field}` templates allowed.' },
      description: 'Extra request headers. Authorization comes from `credential`; secret values go in `secretHeaders`.',
      examples: [{ 'x-source-system': 'weir', 'x-correlation-id': '{id}' }],
    },
    secretHeaders: {
      type: 'object', default: {}, propertyNames: { pattern: HEADER_NAME },
      additionalProperties: secretSchema('Header value that is a secret (e.g. an API key).'),
      description: 'Request headers whose values are secrets, e.g. `{ "x-api-key": { "$env": "PARTNER_KEY" } }`.',
    },
    credential: { type: 'string', minLength: 1, description: 'Name of a channel credential; its token authenticates each request (renewed once on a 401, DPoP and mTLS as the credential says).', examples: ['epic'] },
    baseUrlFromToken: {
      type: 'string', minLength: 1,
      description: 'Token response field whose value is the base URL the (relative) `url` is appended to, e.g. Salesforce `instance_url`. Requires `credential` and a `url` starting with `/`. The base must be https (http only on loopback); requests go to that origin only.',
      examples: ['instance_url'],
    },
    contentType: { type: 'string', minLength: 1, description: 'Content-Type of the request. Default: the message\'s content type (application/json for structured bodies).', examples: ['application/fhir+json'] },
    timeoutMs: { type: 'integer', minimum: 1, default: 30_000, description: 'Timeout of one attempt (ms), including the response body.' },
    connections: {
      type: 'integer', minimum: 1, maximum: 1024,
      description: 'Connections kept open to the API\'s host at most, each carrying one request at a time; requests beyond wait in the engine for a free one. Default 16, shared by every destination of the engine that sends to the same scheme, host and port without this option. With the channel\'s `concurrency` above it, messages under way wait here: raise it to `concurrency` when the API accepts that many connections. Not applied with a credential that brings its own connections (mTLS).',
      examples: [64],
    },
    successStatuses: {
      type: 'array', minItems: 1, default: ['2xx'],
      items: { anyOf: [{ type: 'integer', minimum: 100, maximum: 599 }, { type: 'string', pattern: '^[1-5]xx$' }], description: 'A status code (409) or a class ("2xx").' },
      description: 'Statuses that count as delivered. Otherwise 408, 429 and 5xx are retried (honouring Retry-After) and any other status puts the message in error.',
      examples: [['2xx', 409]],
    },
  },
} as const

export type HttpConfig = ConfigOf<typeof configSchema>

/** scheme://host:port of a URL template, when it has no field in it. */
function fixedOrigin(template: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*:\/\/[^/?#]*)/i.exec(template)
  if (!m || m[1]!.includes('{')) return undefined
  try { return new URL(m[1]!).origin } catch { return undefined }
}

// Token fields and JWT-shaped strings too, not only registered secrets: excerpts are stored and printed.
const excerptOf = (text: string) => redactedExcerpt(text, 200)

/** successStatuses as a lookup table indexed by status (100–599). */
function successTable(accepted: ReadonlyArray<number | string>): boolean[] {
  const table: boolean[] = new Array(600).fill(false)
  for (let status = 100; status < 600; status++) {
    table[status] = accepted.some((a) => (typeof a === 'number' ? a === status : Math.floor(status / 100) === Number(a[0])))
  }
  return table
}

/** "POST https://host/path" of an error message (no query: it may carry identifiers). */
function whereOf(method: string, url: string): string {
  return `${method} ${url.split('?')[0]}`
}

const oneLine = (value: string) => value.replace(/[\r\n]/g, ' ')

/**
 * A character undici refuses in a header value: anything but tab, printable ASCII and U+0080–U+00FF.
 * Checked here only in the configured text, at validation. A value made from message fields
 * (Łukasiewicz, a control character) is refused by undici when sent, which the shared client reports
 * as ERR_HTTP_REQUEST_INVALID: permanent, naming the header, never the value.
 */
const BAD_HEADER_CHAR = /[^\t\x20-\x7e\x80-\xff]/
const BAD_HEADER_VALUE = 'has a character that cannot be sent in an HTTP header (only tab, printable ASCII and U+0080–U+00FF)'

type Template = ReturnType<typeof compileTemplate>

/** A redirect names its target (never followed); any other status quotes the body excerpt. */
function statusMessage(where: string, res: HttpResponse, url: string, excerpt: string): string {
  if (res.status < 300 || res.status >= 400) return `${where} answered ${res.status}${excerpt ? `: "${excerpt}"` : ''}`
  const location = res.headers.location
  let to: URL | undefined
  // A malformed Location must not escape as a TypeError (which the runtime would retry).
  try { to = typeof location === 'string' ? new URL(location, url) : undefined } catch { to = undefined }
  const target = to ? ` to ${to.origin}${to.pathname}` : typeof location === 'string' ? ' to a malformed Location' : ''
  return `${where} answered ${res.status} (redirect${target}); redirects are not followed`
}

/** True when a path segment is `.` or `..`, also percent-encoded (`%2e%2E`): URL parsing resolves those. */
const isDotSegment = (segment: string) => /^(?:\.|%2e){1,2}$/i.test(segment)

/** The path of a rendered URL or path template (`https://host/a/b?q` → `/a/b`). */
const pathOf = (rendered: string) => rendered.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '').split(/[?#]/)[0]!

/**
 * A message value that makes a `.` or `..` path segment would move the request (and its token) to
 * another path on the host: the message fails permanently instead.
 */
function checkNoDotSegments(rendered: string, messageId: string): void {
  const dot = pathOf(rendered).split('/').find(isDotSegment)
  if (dot !== undefined) throw new PermanentError(`url path segment "${dot}" made from message ${messageId} would change the request path; "." and ".." are not allowed as path segments`)
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** The base URL a provider returned in the token response (Salesforce `instance_url`), checked before any token goes there. */
async function baseFromToken(credential: TokenProvider, field: string, signal: AbortSignal): Promise<URL> {
  const token = await credential.getToken({ signal })
  const value = token.extra[field]
  let u: URL | undefined
  try { u = typeof value === 'string' ? new URL(value) : undefined } catch { /* reported below */ }
  if (!u || (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK.has(u.hostname))) || u.username || u.password || u.search || u.hash) {
    throw new PermanentError(`credential "${credential.name}": the token response has no usable "${field}" (an https URL without query) to build the request URL from`)
  }
  return u
}

export default defineComponent({
  type: 'http', kind: 'destination',
  description: 'Sends each message to an HTTP API, authenticated by a named credential.',
  configSchema,
  check(config) {
    const out = templateProblems(config.url, '/url')
    const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(config.url)?.[0] ?? ''
    if (config.baseUrlFromToken) {
      if (!config.url.startsWith('/')) out.push(['/url', 'with baseUrlFromToken, url must be a path starting with "/" (the base comes from the token response)'])
      if (!config.credential) out.push(['/baseUrlFromToken', 'baseUrlFromToken requires credential'])
    } else if (config.url.startsWith('/')) out.push(['/url', 'a url starting with "/" requires baseUrlFromToken (e.g. "instance_url")'])
    else if (authority.includes('{')) out.push(['/url', 'scheme, host and port must be fixed (no {fields}), so credentials only ever go to the configured host'])
    else if (!fixedOrigin(config.url)) out.push(['/url', 'must be a valid URL'])
    if (pathOf(config.url).split('/').some(isDotSegment)) out.push(['/url', 'must not contain "." or ".." path segments'])
    for (const [name, value] of Object.entries(config.headers)) {
      if (/^(authorization|dpop|idempotency-key|content-length|host)$/i.test(name)) out.push([`/headers/${name}`, `"${name}" is set by the destination itself`])
      out.push(...templateProblems(value, `/headers/${name}`))
      // The fixed text of every header is checked here, once; only values from message fields are checked per message.
      if (BAD_HEADER_CHAR.test(oneLine(value))) out.push([`/headers/${name}`, `value ${BAD_HEADER_VALUE}`])
    }
    return out
  },
  create(config, ctx) {
    const credential: TokenProvider | undefined = config.credential ? ctx.credential(config.credential) : undefined
    const fixed = config.baseUrlFromToken ? undefined : fixedOrigin(config.url)!
    const sendsBody = config.method !== 'GET' && config.method !== 'DELETE'
    // Per-message work is only what depends on the message: the URL is parsed once when it has no
    // field, headers without fields are rendered once, names lower-cased once.
    const staticUrl = fixed !== undefined && !hasTemplateField(config.url) ? new URL(config.url) : undefined
    const renderUrl = compileTemplate(config.url)
    const headerParts: Array<[string, string | Template]> = Object.entries(config.headers).map(([k, v]) => [k.toLowerCase(), hasTemplateField(v) ? compileTemplate(v) : oneLine(v)])
    const secretParts: Array<[string, Secret | string]> = Object.entries(config.secretHeaders).map(([k, v]) => [k.toLowerCase(), v])
    const accepted = successTable(config.successStatuses)

    return {
      async deliver(message, { signal, idempotencyKey }) {
        let url: string
        let requestUrl: URL
        if (staticUrl) {
          url = config.url
          requestUrl = staticUrl
        } else {
          const base = config.baseUrlFromToken ? await baseFromToken(credential!, config.baseUrlFromToken, signal) : undefined
          const origin = base ? base.origin : fixed!
          const rendered = renderUrl(message, encodeURIComponent)
          checkNoDotSegments(rendered, message.id)
          url = (base ? base.href.replace(/\/$/, '') : '') + rendered
          requestUrl = new URL(url)
          // Belt and braces: a template can never move the request (and its token) to another host.
          if (requestUrl.origin !== origin) throw new PermanentError(`url ${url} leaves the configured origin ${origin}`)
        }
        const headers: Record<string, string> = {}
        for (const [k, v] of headerParts) headers[k] = typeof v === 'string' ? v : oneLine(v(message))
        for (const [k, v] of secretParts) headers[k] = reveal(v)!
        headers['idempotency-key'] = idempotencyKey
        let body: string | undefined
        if (sendsBody) {
          const structured = typeof message.body !== 'string'
          body = structured ? JSON.stringify(message.body) ?? 'null' : (message.body as string)
          headers['content-type'] = config.contentType ?? (structured && !isJsonContentType(message.contentType) ? 'application/json' : message.contentType)
        }
        let res
        try {
          // throwHttpErrors: false: this destination applies successStatuses itself (shared/http/client.ts option).
          const req: HttpRequest & { throwHttpErrors: boolean } = { method: config.method, url: requestUrl, headers, timeoutMs: config.timeoutMs, signal, throwHttpErrors: false }
          if (config.connections !== undefined) req.connections = config.connections
          if (body !== undefined) req.body = body
          if (credential) req.credential = credential
          res = await ctx.http.request(req)
        } catch (e) {
          if (signal.aborted) throw new errorCodes.ERR_SHUTDOWN(`${whereOf(config.method, url)}: delivery aborted`, { cause: e })
          // The shared client and OAuth layer classify their own failures (token endpoint down, invalid_client…).
          if (isWeirError(e)) throw e
          const code = (e as { code?: string }).code
          throw new errorCodes.ERR_HTTP_NETWORK(`${whereOf(config.method, url)} failed: ${code ?? (e as Error).message}`, { cause: e })
        }
        const excerpt = excerptOf(res.body)
        if (accepted[res.status]) return { status: res.status, excerpt, ...(res.renewed !== undefined ? { note: res.renewed } : {}) }
        const retryAfterMs = isRetryableStatus(res.status) ? parseRetryAfter(res.headers['retry-after']) : undefined
        const err = new HttpStatusError(statusMessage(whereOf(config.method, url), res, url, excerpt), res.status, retryAfterMs !== undefined ? { retryAfterMs } : {})
        Object.defineProperty(err, 'excerpt', { value: excerpt, enumerable: false })
        throw err
      },
    }
  },
})
