import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { createRemoteJWKSet, customFetch, jwtVerify, type JWTPayload } from 'jose'
import { defineComponent, isJsonContentType, type ComponentContext, type ConfigOf, type Emit } from '../../shared/component.ts'
import type { HttpRequest } from '../../shared/http/types.ts'
import { discover, type MetadataGet } from '../../shared/oauth/discovery.ts'
import { secretSchema } from '../../shared/config/secret-schema.ts'
import { ConfigError, errorCodes, isWeirError } from '../../shared/errors.ts'
import { reveal, type Secret } from '../../shared/secret.ts'

const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const

const configSchema = {
  type: 'object', additionalProperties: false, required: ['port'],
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 65535, description: 'TCP port to listen on (0 picks a free one).', examples: [7001] },
    host: { type: 'string', minLength: 1, default: '127.0.0.1', description: 'Interface to listen on; "0.0.0.0" accepts connections from other machines.', examples: ['127.0.0.1', '0.0.0.0'] },
    path: { type: 'string', pattern: '^/', default: '/', description: 'Request path that accepts messages; other paths answer 404.', examples: ['/adt'] },
    methods: {
      type: 'array', minItems: 1, uniqueItems: true, default: ['POST'], items: { enum: ['POST', 'PUT'], description: 'An HTTP method.' },
      description: 'Methods that deliver a message; others answer 405.',
    },
    maxBytes: { type: 'integer', minimum: 1, default: 1024 * 1024, description: 'Largest accepted request body (bytes); larger ones answer 413.' },
    contentTypes: {
      type: 'array', minItems: 1, default: ['application/json', 'application/*+json', 'text/*', 'application/xml', 'application/*+xml', 'x-application/hl7-v2+er7'],
      items: { type: 'string', pattern: '^[\\w.+*-]+/[\\w.+*-]+$', description: 'A media type; `*` matches any run of characters.' },
      description: 'Accepted media types (parameters such as charset are ignored); others answer 415. JSON types are parsed.',
      examples: [['application/fhir+json']],
    },
    requestTimeoutMs: { type: 'integer', minimum: 1000, default: 30_000, description: 'Time a client has to send the whole request (ms).' },
    idempotencyHeader: {
      type: 'string', minLength: 1, default: 'idempotency-key',
      description: 'Request header whose value identifies a message: a client that repeats a POST with the same value gets the first message\'s id back instead of a duplicate.',
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
      },
    },
    apiKey: {
      type: 'object', additionalProperties: false, required: ['value'],
      description: 'Require a shared API key in a request header. Requests without it answer 401.',
      properties: {
        header: { type: 'string', minLength: 1, default: 'x-api-key', description: 'Header that carries the key.' },
        value: secretSchema('The API key clients must send.'),
      },
    },
    tls: {
      type: 'object', additionalProperties: false, required: ['certFile', 'key'],
      description: 'Serve HTTPS instead of HTTP.',
      properties: {
        certFile: { type: 'string', minLength: 1, description: 'PEM certificate (chain) file, relative to the channel file.', examples: ['tls/server.crt'] },
        key: secretSchema('PEM private key of the certificate.', { examples: [{ $file: 'tls/server.key' }] }),
        caFile: { type: 'string', minLength: 1, description: 'PEM file of CAs that client certificates must chain to (mutual TLS).' },
        requireClientCert: { type: 'boolean', default: false, description: 'Refuse clients without a certificate from `caFile`.' },
      },
    },
  },
} as const

export type HttpListenerConfig = ConfigOf<typeof configSchema>

/** A refused request: status, the reason (logged; never containing the credential) and its challenge. */
class Refusal {
  constructor(readonly status: number, readonly reason: string, readonly headers: Record<string, string> = {}) {}
}

const typeMatcher = (patterns: readonly string[]) => {
  const res = patterns.map((p) => new RegExp('^' + p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 'i'))
  return (t: string) => res.some((r) => r.test(t))
}
const sha256 = (s: string) => createHash('sha256').update(s).digest()

function scopesOf(payload: JWTPayload): Set<string> {
  const out = new Set<string>()
  const add = (v: unknown) => {
    const list = typeof v === 'string' ? v.split(/\s+/) : Array.isArray(v) ? v : []
    for (const s of list) if (typeof s === 'string' && s) out.add(s)
  }
  add(payload.scope)
  add(payload.scp)
  return out
}

/** The bearer-token verifier: keys fetched (through ctx.http) from jwksUrl or by discovery, cached by jose. */
function jwtVerifier(jwt: NonNullable<HttpListenerConfig['jwt']>, ctx: ComponentContext) {
  // jose fetches the JWKS; route it through the shared client (pools, TLS settings).
  const fetchVia = async (url: string, options: { headers: Headers; signal: AbortSignal }) => {
    const req: HttpRequest & { throwHttpErrors: boolean } = { url, method: 'GET', headers: Object.fromEntries(options.headers.entries()), signal: options.signal, throwHttpErrors: false }
    const res = await ctx.http.request(req)
    return new Response(res.body, { status: res.status, headers: { 'content-type': String(res.headers['content-type'] ?? 'application/json') } })
  }
  let keys: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined

  // throwHttpErrors: false (shared/http/client.ts option): discovery reads the status itself (404: try the next document).
  const get: MetadataGet = async (url, { timeoutMs, signal }) => {
    const req: HttpRequest & { throwHttpErrors: boolean } = { url, method: 'GET', headers: { accept: 'application/json' }, timeoutMs, throwHttpErrors: false, ...(signal ? { signal } : {}) }
    return ctx.http.request(req)
  }

  const keySet = () => {
    keys ??= (async () => {
      const url = jwt.jwksUrl ?? (await discover(jwt.issuer, { first: 'oidc', requires: 'jwks_uri', get })).jwks_uri!
      return createRemoteJWKSet(new URL(url), { [customFetch]: fetchVia as never })
    })().catch((e: unknown) => { keys = undefined; throw e }) // an outage is not remembered
    return keys
  }

  return async (authorization: string | undefined): Promise<JWTPayload> => {
    const m = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(authorization ?? '')
    if (!authorization) throw new Refusal(401, 'missing bearer token', { 'www-authenticate': 'Bearer realm="weir"' })
    if (!m) throw new Refusal(401, 'malformed Authorization header (expected "Bearer <token>")', { 'www-authenticate': 'Bearer realm="weir", error="invalid_request"' })
    let jwks
    try {
      jwks = await keySet()
    } catch (e) {
      throw new Refusal(503, `cannot obtain the issuer's keys: ${(e as Error).message}`, { 'retry-after': '5' })
    }
    let payload: JWTPayload
    try {
      ({ payload } = await jwtVerify(m[1]!, jwks, {
        issuer: jwt.issuer, audience: jwt.audience, algorithms: jwt.algorithms,
        clockTolerance: jwt.clockToleranceSec, requiredClaims: ['exp'],
      }))
    } catch (e) {
      const code = (e as { code?: string }).code ?? ''
      // Trouble fetching the key set is the issuer's outage, not the client's fault.
      if (['ERR_JWKS_TIMEOUT', 'ERR_JWKS_INVALID', 'ERR_JOSE_GENERIC'].includes(code) || !/^ERR_J(WT|WS|WK|OSE)/.test(code)) throw new Refusal(503, `cannot obtain the issuer's keys: ${(e as Error).message}`, { 'retry-after': '5' })
      const reason = code === 'ERR_JWT_EXPIRED' ? 'token expired' : (e as Error).message
      throw new Refusal(401, `invalid token: ${reason}`, { 'www-authenticate': `Bearer realm="weir", error="invalid_token", error_description="${reason.replace(/["\\]/g, '')}"` })
    }
    const have = scopesOf(payload)
    const missing = jwt.requiredScopes.filter((s) => !have.has(s))
    if (missing.length) {
      throw new Refusal(403, `token lacks required scope(s): ${missing.join(' ')}`, { 'www-authenticate': `Bearer realm="weir", error="insufficient_scope", scope="${jwt.requiredScopes.join(' ')}"` })
    }
    return payload
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

export default defineComponent({
  type: 'http-listener', kind: 'source',
  description: 'Receives messages POSTed to a port and path; answers 202 with the message id once it is durably stored.',
  configSchema,
  check(config) {
    const out: Array<[string, string]> = []
    if (config.jwt && config.apiKey) out.push(['', 'configure either "jwt" or "apiKey", not both'])
    if (config.tls?.requireClientCert && !config.tls.caFile) out.push(['/tls/requireClientCert', 'requires "caFile" (the CAs client certificates must chain to)'])
    return out
  },
  create(config, ctx) {
    const accepts = typeMatcher(config.contentTypes)
    const verifyJwt = config.jwt ? jwtVerifier(config.jwt, ctx) : undefined
    const apiKeyHash = config.apiKey ? sha256(reveal(config.apiKey.value)!) : undefined
    const apiKeyHeader = config.apiKey?.header.toLowerCase()
    const attributeHeaders = config.attributeHeaders.map((h) => h.toLowerCase()).filter((h) => h !== 'authorization' && h !== apiKeyHeader)
    let tlsOptions: Record<string, unknown> | undefined
    if (config.tls) {
      const read = (f: string) => {
        const p = resolve(ctx.channelDir, f)
        try { return readFileSync(p) } catch (e) { throw new ConfigError([{ file: p, pointer: '', message: `cannot read TLS file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]) }
      }
      tlsOptions = {
        cert: read(config.tls.certFile), key: reveal(config.tls.key),
        ...(config.tls.caFile ? { ca: read(config.tls.caFile), requestCert: true, rejectUnauthorized: config.tls.requireClientCert } : {}),
      }
    }
    let server: Server | undefined
    let emit: Emit | undefined

    async function authenticate(req: IncomingMessage): Promise<Record<string, string>> {
      if (verifyJwt) {
        const p = await verifyJwt(req.headers.authorization)
        const subject = typeof p.client_id === 'string' ? p.client_id : typeof p.azp === 'string' ? p.azp : p.sub
        return subject ? { authSubject: subject } : {}
      }
      if (apiKeyHash) {
        const v = req.headers[apiKeyHeader!]
        if (v === undefined) throw new Refusal(401, `missing API key header ${apiKeyHeader}`)
        if (Array.isArray(v) || !timingSafeEqual(sha256(v), apiKeyHash)) throw new Refusal(401, 'invalid API key')
      }
      return {}
    }

    function readBody(req: IncomingMessage): Promise<Buffer> {
      return new Promise((resolveBody, reject) => {
        const chunks: Buffer[] = []
        let size = 0
        req.on('data', (c: Buffer) => {
          size += c.length
          if (size > config.maxBytes) { reject(new Refusal(413, `body above maxBytes ${config.maxBytes}`)); req.pause(); return }
          chunks.push(c)
        })
        req.on('end', () => resolveBody(Buffer.concat(chunks)))
        req.on('error', reject)
      })
    }

    async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const url = new URL(req.url ?? '/', 'http://localhost')
      if (url.pathname !== config.path) return json(res, 404, { error: 'not found' })
      if (!(config.methods as readonly string[]).includes(req.method ?? '')) return json(res, 405, { error: 'method not allowed' }, { allow: config.methods.join(', ') })
      const attributes: Record<string, string> = { method: req.method!, path: url.pathname, remoteAddress: req.socket.remoteAddress ?? '' }
      if (url.search) attributes.query = url.search.slice(1)
      Object.assign(attributes, await authenticate(req))
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
      if (!contentType || !accepts(contentType)) throw new Refusal(415, `content type ${JSON.stringify(contentType || '(none)')} is not accepted`)
      const declared = Number(req.headers['content-length'])
      if (declared > config.maxBytes) throw new Refusal(413, `body above maxBytes ${config.maxBytes}`)
      const raw = await readBody(req)
      let body: unknown = raw.toString('utf8')
      if (isJsonContentType(contentType)) {
        try { body = JSON.parse(body as string) } catch (e) { throw new Refusal(400, `invalid JSON body: ${(e as Error).message}`) }
      }
      for (const h of attributeHeaders) {
        const v = req.headers[h]
        if (typeof v === 'string') attributes[h] = v
      }
      const idem = req.headers[config.idempotencyHeader.toLowerCase()]
      const result = await emit!({
        body, contentType, attributes,
        ...(typeof idem === 'string' && idem ? { dedupeKey: `http-listener:${attributes.authSubject ?? ''}:${idem}` } : {}),
      })
      json(res, 202, result.duplicate ? { id: result.id, duplicate: true } : { id: result.id })
    }

    function onRequest(req: IncomingMessage, res: ServerResponse): void {
      handle(req, res).catch((e: unknown) => {
        if (res.headersSent) return
        if (e instanceof Refusal) {
          ctx.log.warn({ status: e.status, reason: e.reason, method: req.method, path: req.url, remoteAddress: req.socket.remoteAddress }, 'request refused')
          // The rest of an oversized or refused body is not read: close the connection after answering.
          const close: Record<string, string> = req.complete ? {} : { connection: 'close' }
          return json(res, e.status, { error: e.reason.startsWith('invalid token') || e.status === 401 ? 'unauthorized' : e.reason }, { ...e.headers, ...close })
        }
        if (isWeirError(e) && (e.statusCode === 503 || e.retryable)) {
          const seconds = Math.max(1, Math.ceil((e.retryAfterMs ?? 1000) / 1000))
          ctx.log.warn({ status: 503, reason: e.message }, 'message not accepted')
          return json(res, 503, { error: e.code === 'ERR_BACKPRESSURE' ? 'queue full, retry later' : 'temporarily unavailable, retry later' }, { 'retry-after': String(seconds) })
        }
        ctx.log.error({ err: e }, 'message could not be stored')
        json(res, 500, { error: 'message not stored' })
      })
    }

    return {
      start(e: Emit) {
        emit = e
        server = tlsOptions ? createHttpsServer(tlsOptions, onRequest) : createHttpServer(onRequest)
        server.requestTimeout = config.requestTimeoutMs
        server.headersTimeout = Math.min(config.requestTimeoutMs, 60_000)
        const s = server
        return new Promise<void>((ok, fail) => {
          s.once('error', (err: NodeJS.ErrnoException) => fail(new errorCodes.ERR_LISTEN(`cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`, { cause: err })))
          s.listen(config.port, config.host, () => {
            const a = s.address() as AddressInfo
            ctx.log.info({ url: `${tlsOptions ? 'https' : 'http'}://${a.address}:${a.port}${config.path}` }, 'listening')
            ok()
          })
        })
      },
      async stop() {
        const s = server
        if (!s) return
        server = undefined
        await new Promise<void>((ok) => {
          s.close(() => ok())
          s.closeIdleConnections()
          // In-flight requests get a moment to finish their durable write and answer.
          setTimeout(() => s.closeAllConnections(), 5000).unref()
        })
      },
      /** The bound address (useful with port 0). */
      address(): AddressInfo | undefined {
        return server?.address() as AddressInfo | undefined
      },
    }
  },
})
