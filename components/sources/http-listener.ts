import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { JWTPayload } from 'jose'
import { defineComponent, isJsonContentType, type ConfigOf, type Emit, type RejectReason } from '../../shared/component.ts'
import { PATH } from '../../shared/config/patterns.ts'
import { secretSchema } from '../../shared/config/secret-schema.ts'
import { serverTlsSchema } from '../../shared/inbound/tls-schema.ts'
import { errorCodes, isWeirError, refusalOf } from '../../shared/errors.ts'
import { guardConnections, type ConnectionGuard } from '../../shared/inbound/connection-guard.ts'
import { jsonDeeperThan } from '../../shared/inbound/json-depth.ts'
import { jwtVerifier, KEYS_FAILURE_MS } from '../../shared/inbound/jwt-verifier.ts'
import { Refusal } from '../../shared/inbound/refusal.ts'
import { decodeText } from '../../shared/text.ts'
import { serverTlsOptions, serverTlsProblems, verifiedClientSubject } from '../../shared/tls.ts'
import type { Logger } from '../../shared/log/index.ts'
import { reveal } from '../../shared/secret.ts'

const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const

const configSchema = {
  type: 'object', additionalProperties: false, required: ['port'],
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 65535, description: 'TCP port to listen on (0 picks a free one).', examples: [7001] },
    host: { type: 'string', minLength: 1, default: '127.0.0.1', description: 'Interface to listen on; "0.0.0.0" accepts connections from other machines.', examples: ['127.0.0.1', '0.0.0.0'] },
    path: { type: 'string', pattern: PATH, default: '/', description: 'Request path that accepts messages; other paths answer 404.', examples: ['/adt'] },
    methods: {
      type: 'array', minItems: 1, uniqueItems: true, default: ['POST'], items: { enum: ['POST', 'PUT'], description: 'An HTTP method.' },
      description: 'Methods that deliver a message; others answer 405.',
    },
    maxBytes: { type: 'integer', minimum: 1, default: 1024 * 1024, description: 'Largest accepted request body (bytes); larger ones answer 413.' },
    contentTypes: {
      type: 'array', minItems: 1, default: ['application/json', 'application/*+json', 'text/*', 'application/xml', 'application/*+xml', 'x-application/hl7-v2+er7'],
      items: { type: 'string', pattern: '^[\\w.+*-]+/[\\w.+*-]+$', description: 'A media type; `*` matches any run of characters.' },
      description: 'Accepted media types (matched without parameters); others answer 415. JSON types are parsed. A body is decoded in the `charset` its Content-Type declares: utf-8 (the default), iso-8859-1 (latin1), us-ascii, utf-16, utf-16le or utf-16be; another charset answers 415 naming it, and bytes not valid in the charset answer 400, so no garbled text is stored.',
      examples: [['application/fhir+json']],
    },
    maxBufferedBytes: {
      type: 'integer', minimum: 1, default: 32 * 1024 * 1024,
      description: 'Bytes of request bodies held in memory across all connections at once (at least `maxBytes`); a request whose body would go beyond answers 503 with Retry-After and its connection is closed, so clients that send large bodies and stall cannot fill the memory.',
    },
    maxJsonDepth: { type: 'integer', minimum: 1, maximum: 10_000, default: 64, description: 'Deepest nesting of arrays and objects in a JSON body; deeper ones answer 400 (checked on the raw bytes before parsing).' },
    requestTimeoutMs: { type: 'integer', minimum: 1000, default: 30_000, description: 'Time a client has to send the whole request (ms).' },
    headersTimeoutMs: {
      type: 'integer', minimum: 100, default: 10_000,
      description: 'Time a client has to send the request line and headers (ms), at most `requestTimeoutMs`: a connection that stalls before its headers is answered 408 and closed.',
    },
    maxConnections: {
      type: 'integer', minimum: 1, default: 512,
      description: 'Open connections at most; keep it well below the process\'s file-descriptor limit (`ulimit -n`). At the limit a new connection replaces the one that has waited longest for request headers (stalled or idle); when every connection is serving a request, the new one is closed at once.',
    },
    maxConnectionsPerAddress: {
      type: 'integer', minimum: 1,
      description: 'Open connections from one client address at most, with the same replacement rule. No limit when absent: behind a load balancer or reverse proxy every request comes from its address.',
    },
    idempotencyHeader: {
      type: 'string', minLength: 1, default: 'idempotency-key',
      description: 'Request header whose value identifies a message: a client that repeats a POST with the same value gets the first message\'s id back instead of a duplicate. Values are scoped per authenticated client (JWT issuer, `client_id`/`azp` and `sub`; the API key\'s `name`), so one client cannot suppress another\'s message; without authentication every client shares one scope.',
    },
    attributeHeaders: {
      type: 'array', default: ['x-request-id', 'x-correlation-id'], items: { type: 'string', minLength: 1, description: 'A header name.' },
      description: 'Request headers copied into the message attributes (lower-cased names). Authorization is never copied.',
    },
    jwt: {
      type: 'object', additionalProperties: false, required: ['issuer', 'audience'],
      description: 'Require a JWT bearer access token (`Authorization: Bearer …`), verified with the issuer\'s public keys. Requests without a valid token answer 401, without the required scopes 403.',
      properties: {
        issuer: { type: 'string', format: 'uri', description: 'Expected `iss`; also where the keys are discovered (`/.well-known/openid-configuration`, then `/.well-known/oauth-authorization-server`) when `jwksUrl` is absent.', examples: ['https://login.example.org/realms/weir'] },
        audience: {
          anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }],
          description: 'Expected `aud` (one of these values).', examples: ['weir-adt'],
        },
        jwksUrl: { type: 'string', format: 'uri', description: 'URL of the issuer\'s JSON Web Key Set; discovered from the issuer when absent.' },
        requiredScopes: { type: 'array', default: [], items: { type: 'string', minLength: 1, description: 'A scope.' }, description: 'Scopes the token must all carry (`scope` claim, or `scp`).', examples: [['adt.write']] },
        clockToleranceSec: { type: 'integer', minimum: 0, maximum: 300, default: 30, description: 'Clock skew allowed when checking `exp`, `nbf` and `iat` (seconds).' },
        algorithms: {
          type: 'array', minItems: 1, uniqueItems: true, default: [...ASYMMETRIC_ALGS], items: { enum: [...ASYMMETRIC_ALGS], description: 'A JWS algorithm.' },
          description: 'Accepted signature algorithms. Only asymmetric ones; "none" and HMAC are never accepted.',
        },
        typ: {
          type: 'string', minLength: 1,
          description: 'Required `typ` header of the token, e.g. "at+jwt" for JWT access tokens (RFC 9068), compared without case and with "application/" optional; tokens of another type (such as ID tokens) answer 401. Any type when absent.',
          examples: ['at+jwt'],
        },
        jwksTimeoutMs: {
          type: 'integer', minimum: 100, maximum: 60_000, default: 5000,
          description: `Time one fetch of the key set or of the discovery document may take (ms). A failure to obtain the keys is remembered for ${KEYS_FAILURE_MS / 1000} s: requests meanwhile answer 503 without another fetch.`,
        },
      },
    },
    apiKey: {
      type: 'object', additionalProperties: false, required: ['value'],
      description: 'Require a shared API key in a request header. Requests without it answer 401.',
      properties: {
        header: { type: 'string', minLength: 1, default: 'x-api-key', description: 'Header that carries the key.' },
        name: { type: 'string', minLength: 1, description: 'Name of the client that holds the key, recorded as the message attribute `authSubject`.', examples: ['lab-system'] },
        value: secretSchema('The API key clients must send.'),
      },
    },
    tls: serverTlsSchema('Serve HTTPS instead of HTTP.'),
  },
} as const

export type HttpListenerConfig = ConfigOf<typeof configSchema>

const typeMatcher = (patterns: readonly string[]) => {
  const res = patterns.map((p) => new RegExp('^' + p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 'i'))
  return (t: string) => res.some((r) => r.test(t))
}
const sha256 = (s: string) => createHash('sha256').update(s).digest()

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

/** Who sent a request: `subject` for the message attributes, `scope` for its Idempotency-Key values. */
interface Principal { subject?: string; scope: string[] }

function jwtPrincipal(p: JWTPayload): Principal {
  const client = typeof p.client_id === 'string' ? p.client_id : typeof p.azp === 'string' ? p.azp : undefined
  const subject = client ?? p.sub
  return { ...(subject ? { subject } : {}), scope: ['jwt', p.iss ?? '', client ?? '', p.sub ?? ''] }
}

/** Each part percent-encoded, so no choice of subject and key by one client can spell another client's key. */
const dedupeKeyOf = (scope: string[], value: string) => ['http-listener', ...scope, value].map(encodeURIComponent).join(':')

/**
 * Why JSON.parse failed, without the excerpt of the body V8 puts in its message: the body may hold
 * personal data, and the reason is logged.
 */
function jsonFailure(e: unknown): string {
  const message = (e as Error).message
  const at = /position (\d+)/.exec(message)
  if (at) return `invalid JSON body (at position ${at[1]})`
  return /end of JSON input/.test(message) ? 'invalid JSON body (it ends early)' : 'invalid JSON body (unexpected character)'
}

/** Charsets a body may declare (labels lower-cased), and the one each label names. */
const CHARSETS = new Map<string, Charset>([
  ['utf-8', 'utf-8'], ['utf8', 'utf-8'],
  ['iso-8859-1', 'iso-8859-1'], ['iso8859-1', 'iso-8859-1'], ['iso_8859-1', 'iso-8859-1'], ['latin1', 'iso-8859-1'], ['l1', 'iso-8859-1'],
  ['us-ascii', 'us-ascii'], ['ascii', 'us-ascii'],
  ['utf-16', 'utf-16'], ['utf-16le', 'utf-16le'], ['utf-16be', 'utf-16be'],
])
type Charset = 'utf-8' | 'iso-8859-1' | 'us-ascii' | 'utf-16' | 'utf-16le' | 'utf-16be'
const SUPPORTED_CHARSETS = 'utf-8, iso-8859-1, us-ascii, utf-16, utf-16le or utf-16be'

/**
 * The charset a Content-Type declares (utf-8 when none); 415 for one the listener cannot decode.
 * ISO-8859-1 is decoded as itself, not as windows-1252 (which WHATWG decoders substitute for it).
 */
function declaredCharset(header: string): Charset {
  for (const param of header.split(';').slice(1)) {
    const eq = param.indexOf('=')
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'charset') continue
    const label = param.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase()
    const charset = CHARSETS.get(label)
    if (!charset) throw new Refusal(415, `charset ${JSON.stringify(label.slice(0, 40))} is not supported; send ${SUPPORTED_CHARSETS}`)
    return charset
  }
  return 'utf-8'
}

/** Fatal: an invalid byte sequence refuses the body instead of storing U+FFFD. A leading byte order mark is dropped. */
const DECODERS = {
  'utf-16le': new TextDecoder('utf-16le', { fatal: true }),
  'utf-16be': new TextDecoder('utf-16be', { fatal: true }),
}

/** The body as text in its declared charset; 400 when its bytes are not valid in it. */
function decodeBody(raw: Buffer, charset: Charset): string {
  const invalid = (name: string) => new Refusal(400, `body is not valid ${name}${charset === 'utf-8' ? ' (declare another charset in Content-Type, e.g. "; charset=iso-8859-1")' : ''}`)
  if (charset === 'iso-8859-1') return raw.toString('latin1')
  if (charset === 'utf-8') {
    const text = decodeText(raw, 'utf-8')
    if (text === undefined) throw invalid('UTF-8')
    return text
  }
  if (charset === 'us-ascii') {
    if (raw.some((b) => b > 0x7f)) throw invalid('US-ASCII')
    return raw.toString('latin1')
  }
  // RFC 2781 §4.3: "utf-16" is big-endian unless its byte order mark says otherwise.
  const encoding = charset === 'utf-16' ? (raw[0] === 0xff && raw[1] === 0xfe ? 'utf-16le' : 'utf-16be') : charset
  try {
    return DECODERS[encoding].decode(raw)
  } catch {
    throw invalid(encoding.toUpperCase())
  }
}

/** A JSON body: its nesting checked on UTF-8 or single-byte text before parsing (on the bytes as received when they are that already). */
function parseJson(raw: Buffer, charset: Charset, maxDepth: number): unknown {
  const singleByteSafe = charset === 'utf-8' || charset === 'iso-8859-1' || charset === 'us-ascii'
  if (singleByteSafe && jsonDeeperThan(raw, maxDepth)) throw new Refusal(400, `JSON body nested deeper than maxJsonDepth ${maxDepth}`)
  const text = decodeBody(raw, charset)
  if (!singleByteSafe && jsonDeeperThan(Buffer.from(text, 'utf8'), maxDepth)) throw new Refusal(400, `JSON body nested deeper than maxJsonDepth ${maxDepth}`)
  try { return JSON.parse(text) } catch (e) { throw new Refusal(400, jsonFailure(e)) }
}

/**
 * Reads request bodies within two bounds: `maxBytes` per request (413) and `maxBufferedBytes` for
 * all requests at once (503). A request's bytes count until its response closes, however the
 * exchange ends (answered, timed out, reset).
 */
function bodyReader(maxBytes: number, maxBufferedBytes: number) {
  let buffered = 0
  return (req: IncomingMessage, res: ServerResponse): Promise<Buffer> => new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    res.once('close', () => { buffered -= size; size = 0 })
    const refuse = (r: Refusal) => { reject(r); req.pause() }
    req.on('data', (c: Buffer) => {
      if (size + c.length > maxBytes) return refuse(new Refusal(413, `body above maxBytes ${maxBytes}`))
      if (buffered + c.length > maxBufferedBytes) {
        return refuse(new Refusal(503, `request bodies in memory would exceed maxBufferedBytes ${maxBufferedBytes}`, { 'retry-after': '1' }, 'too many requests in progress, retry later'))
      }
      size += c.length
      buffered += c.length
      chunks.push(c)
    })
    req.on('end', () => resolveBody(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** The HTTP(S) server with the listener's timeouts; `connectionsCheckingInterval` is how often Node enforces them. */
function createServer(config: HttpListenerConfig, tlsOptions: ReturnType<typeof serverTlsOptions> | undefined, onRequest: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const timeouts = { requestTimeout: config.requestTimeoutMs, headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs) }
  return tlsOptions ? createHttpsServer({ ...tlsOptions, ...timeouts, handshakeTimeout: config.headersTimeoutMs }, onRequest) : createHttpServer(timeouts, onRequest)
}

/** What a refusal counts as (`ctx.rejected`); a 503 (memory bound, keys unavailable) is not the input's fault and is not counted. */
const REJECTED_AS: Partial<Record<number, RejectReason>> = { 400: 'malformed', 401: 'unauthorized', 403: 'unauthorized', 413: 'too_large', 415: 'unsupported_media_type' }

/** One http-listener's settings as requests use them, its connection guard, and where it hands messages. */
interface Listener {
  readonly config: HttpListenerConfig
  readonly log: Logger
  /** Counts a rejected request in the channel (`ctx.rejected`). */
  readonly rejected: (reason: RejectReason) => void
  readonly accepts: (contentType: string) => boolean
  readonly verifyJwt: ReturnType<typeof jwtVerifier> | undefined
  readonly apiKeyHash: Buffer | undefined
  readonly apiKeyHeader: string | undefined
  /** Headers copied into the message attributes (never the credentials). */
  readonly attributeHeaders: string[]
  readonly readBody: ReturnType<typeof bodyReader>
  emit: Emit | undefined
  guard: ConnectionGuard | undefined
  limitLoggedAt: number
  /** Responses not yet finished: when the listener stops, each one that has not sent its headers closes its connection. */
  readonly answering: Set<ServerResponse>
  stopping: boolean
}

function apiKeyPrincipal(l: Listener, req: IncomingMessage): Principal {
  const v = req.headers[l.apiKeyHeader!]
  if (v === undefined) throw new Refusal(401, `missing API key header ${l.apiKeyHeader}`)
  if (Array.isArray(v) || !timingSafeEqual(sha256(v), l.apiKeyHash!)) throw new Refusal(401, 'invalid API key')
  // One key is one client: its name, if given, tells it apart in the message log.
  const name = l.config.apiKey!.name
  return { ...(name ? { subject: name } : {}), scope: ['api-key', name ?? ''] }
}

/**
 * Who sent the request: by its bearer token or API key when the listener requires one (401
 * otherwise), else by its client certificate when one was verified against `tls.caFile`.
 */
async function authenticate(l: Listener, req: IncomingMessage, certSubject: string | undefined): Promise<Principal> {
  if (l.verifyJwt) return jwtPrincipal(await l.verifyJwt(req.headers.authorization))
  if (l.apiKeyHash) return apiKeyPrincipal(l, req)
  return { scope: certSubject ? ['client-cert', certSubject] : ['anonymous'] }
}

/** The request's media type without parameters, when the listener accepts it, and its charset (415 otherwise). */
function acceptedContentType(l: Listener, req: IncomingMessage): { contentType: string; charset: Charset } {
  const header = req.headers['content-type'] ?? ''
  const contentType = header.split(';')[0]!.trim().toLowerCase()
  if (!contentType || !l.accepts(contentType)) throw new Refusal(415, `content type ${JSON.stringify(contentType || '(none)')} is not accepted`)
  return { contentType, charset: declaredCharset(header) }
}

function copyAttributeHeaders(l: Listener, req: IncomingMessage, attributes: Record<string, string>): void {
  for (const h of l.attributeHeaders) {
    const v = req.headers[h]
    if (typeof v === 'string') attributes[h] = v
  }
}

/** Answers one request: 404 and 405 for other paths and methods, then authentication, body, and 202 once the message is stored. */
async function handle(l: Listener, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { config } = l
  const url = new URL(req.url ?? '/', 'http://localhost')
  if (url.pathname !== config.path) return json(res, 404, { error: 'not found' })
  if (!(config.methods as readonly string[]).includes(req.method ?? '')) return json(res, 405, { error: 'method not allowed' }, { allow: config.methods.join(', ') })
  const attributes: Record<string, string> = { method: req.method!, path: url.pathname, remoteAddress: req.socket.remoteAddress ?? '' }
  if (url.search) attributes.query = url.search.slice(1)
  const certSubject = verifiedClientSubject(req.socket)
  if (certSubject) attributes.clientCertSubject = certSubject
  const principal = await authenticate(l, req, certSubject)
  if (principal.subject) attributes.authSubject = principal.subject
  const { contentType, charset } = acceptedContentType(l, req)
  const declared = Number(req.headers['content-length'])
  if (declared > config.maxBytes) throw new Refusal(413, `body above maxBytes ${config.maxBytes}`)
  const raw = await l.readBody(req, res)
  const body = isJsonContentType(contentType) ? parseJson(raw, charset, config.maxJsonDepth) : decodeBody(raw, charset)
  copyAttributeHeaders(l, req, attributes)
  const idem = req.headers[config.idempotencyHeader.toLowerCase()]
  const result = await l.emit!({
    body, contentType, attributes,
    ...(typeof idem === 'string' && idem ? { dedupeKey: dedupeKeyOf(principal.scope, idem) } : {}),
  })
  json(res, 202, result.duplicate ? { id: result.id, duplicate: true } : { id: result.id })
}

/** The answer to a request that failed: its refusal, 503 with Retry-After when storing may succeed later, else 500. */
function answerFailure(l: Listener, req: IncomingMessage, res: ServerResponse, e: unknown): void {
  if (res.headersSent) return
  if (e instanceof Refusal) {
    // The path without its query: a query string may carry personal data.
    l.log.warn({ status: e.status, reason: e.reason, method: req.method, path: (req.url ?? '').split('?')[0], remoteAddress: req.socket.remoteAddress }, 'request refused')
    const rejected = REJECTED_AS[e.status]
    if (rejected) l.rejected(rejected)
    // The rest of an oversized or refused body is not read: close the connection after answering.
    const close: Record<string, string> = req.complete ? {} : { connection: 'close' }
    return json(res, e.status, { error: e.status === 401 ? 'unauthorized' : e.publicReason }, { ...e.headers, ...close })
  }
  if (isWeirError(e) && (e.statusCode === 503 || e.retryable)) {
    const seconds = Math.max(1, Math.ceil((e.retryAfterMs ?? 1000) / 1000))
    // A full queue or store: the channel logs the episode (once as it starts, once as it ends), not every refusal;
    // a stopping channel logs its stop.
    l.log[e.code === 'ERR_BACKPRESSURE' || e.code === 'ERR_SHUTDOWN' ? 'debug' : 'warn']({ status: 503, reason: e.message }, 'message not accepted')
    return json(res, 503, { error: `${refusalOf(e)}, retry later` }, { 'retry-after': String(seconds) })
  }
  l.log.error({ err: e }, 'message could not be stored')
  json(res, 500, { error: 'message not stored' })
}

function onRequest(l: Listener, req: IncomingMessage, res: ServerResponse): void {
  l.guard!.busy(req.socket)
  l.answering.add(res)
  res.once('close', () => { l.answering.delete(res); l.guard!.idle(req.socket) })
  if (l.stopping) res.setHeader('connection', 'close')
  handle(l, req, res).catch((e: unknown) => answerFailure(l, req, res, e))
}

// Under a flood this would be a line per connection: one line per 10 s with the counts.
function logLimit(l: Listener): void {
  const now = Date.now()
  if (now - l.limitLoggedAt < 10_000) return
  l.limitLoggedAt = now
  l.log.warn({ ...l.guard!.stats(), maxConnections: l.config.maxConnections, maxConnectionsPerAddress: l.config.maxConnectionsPerAddress }, 'connection limit reached: closing the connections that waited longest for request headers')
}

/** Binds the server to the configured host and port; logs the URL it listens on. */
function listen(s: Server, config: HttpListenerConfig, log: Logger, scheme: 'http' | 'https'): Promise<void> {
  return new Promise<void>((ok, fail) => {
    s.once('error', (err: NodeJS.ErrnoException) => fail(new errorCodes.ERR_LISTEN(`cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`, { cause: err })))
    s.listen(config.port, config.host, () => {
      const a = s.address() as AddressInfo
      log.info({ url: `${scheme}://${a.address}:${a.port}${config.path}` }, 'listening')
      ok()
    })
  })
}

/**
 * Stops accepting connections at once and closes the idle ones; in-flight requests get a moment to
 * finish their durable write and answer, with `Connection: close`: Node keeps a connection that was
 * busy at `close()` open for further requests, so a keep-alive client (a load balancer's pool) would
 * go on sending on it.
 */
function closeServer(l: Listener, s: Server): Promise<void> {
  l.stopping = true
  for (const res of l.answering) if (!res.headersSent) res.setHeader('connection', 'close')
  return new Promise<void>((ok) => {
    s.close(() => ok())
    s.closeIdleConnections()
    setTimeout(() => s.closeAllConnections(), 5000).unref()
  })
}

export default defineComponent({
  type: 'http-listener', kind: 'source',
  description: 'Receives messages POSTed to a port and path; answers 202 with the message id once it is durably stored.',
  configSchema,
  check(config, { channelDir }) {
    const out: Array<[string, string]> = serverTlsProblems(config.tls, channelDir)
    if (config.jwt && config.apiKey) out.push(['', 'configure either "jwt" or "apiKey", not both'])
    if (config.headersTimeoutMs > config.requestTimeoutMs) out.push(['/headersTimeoutMs', `must be at most requestTimeoutMs (${config.requestTimeoutMs})`])
    if (config.maxBufferedBytes < config.maxBytes) out.push(['/maxBufferedBytes', `must be at least maxBytes (${config.maxBytes})`])
    if ((config.maxConnectionsPerAddress ?? 0) > config.maxConnections) out.push(['/maxConnectionsPerAddress', `must be at most maxConnections (${config.maxConnections})`])
    return out
  },
  create(config, ctx) {
    const apiKeyHeader = config.apiKey?.header.toLowerCase()
    const l: Listener = {
      config, log: ctx.log,
      rejected: (reason) => ctx.rejected?.(reason),
      accepts: typeMatcher(config.contentTypes),
      verifyJwt: config.jwt ? jwtVerifier(config.jwt, ctx) : undefined,
      apiKeyHash: config.apiKey ? sha256(reveal(config.apiKey.value)!) : undefined,
      apiKeyHeader,
      attributeHeaders: config.attributeHeaders.map((h) => h.toLowerCase()).filter((h) => h !== 'authorization' && h !== apiKeyHeader),
      readBody: bodyReader(config.maxBytes, config.maxBufferedBytes),
      emit: undefined, guard: undefined, limitLoggedAt: 0, answering: new Set(), stopping: false,
    }
    const tlsOptions = config.tls ? serverTlsOptions(config.tls, ctx.channelDir) : undefined
    let server: Server | undefined

    return {
      start(e: Emit) {
        l.emit = e
        l.stopping = false
        const s = (server = createServer(config, tlsOptions, (req, res) => onRequest(l, req, res)))
        l.guard = guardConnections(s, { maxConnections: config.maxConnections, maxConnectionsPerAddress: config.maxConnectionsPerAddress, onLimit: () => logLimit(l) })
        return listen(s, config, ctx.log, tlsOptions ? 'https' : 'http')
      },
      async stop() {
        const s = server
        if (!s) return
        server = undefined
        await closeServer(l, s)
      },
      /** The bound address (useful with port 0). */
      address(): AddressInfo | undefined {
        return server?.address() as AddressInfo | undefined
      },
    }
  },
})
