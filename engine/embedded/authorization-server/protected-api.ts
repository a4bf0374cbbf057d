import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { closeServer, createServer, listen, peerThumbprint, readBody } from './http.ts'
import { AccessDenied, type ServerState } from './state.ts'
import type { ApiRequestRecord, ProtectedApi, ProtectedApiOptions, VerifiedAccess } from './types.ts'
import { verifyAccessToken } from './verify.ts'

type ScriptedAnswer = Parameters<ProtectedApi['respondNext']>[0]

/** Records an API request with Authorization and DPoP redacted, and remembers their values for leak tests. */
function recordApiRequest(st: ServerState, req: IncomingMessage, body: string): ApiRequestRecord {
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue
    const s = Array.isArray(v) ? v.join(', ') : v
    headers[k] = k === 'authorization' ? `${s.split(' ')[0]} [REDACTED]` : k === 'dpop' ? '[REDACTED]' : s
  }
  if (req.headers.authorization) st.seen.add(req.headers.authorization.replace(/^\S+\s+/, ''))
  if (typeof req.headers.dpop === 'string') st.seen.add(req.headers.dpop)
  return { method: req.method ?? 'GET', path: req.url ?? '/', headers, body, status: 0 }
}

/** The request's access token, verified as this API (its URL, nonce and audience) requires. */
async function verifyApiRequest(st: ServerState, req: IncomingMessage, apiUrl: string, apiOptions: ProtectedApiOptions, nonce: string): Promise<VerifiedAccess['claims']> {
  const peer = peerThumbprint(req)
  const { claims } = await verifyAccessToken(st, req.headers.authorization, {
    method: req.method ?? 'GET', url: `${apiUrl}${req.url ?? '/'}`,
    ...(typeof req.headers.dpop === 'string' ? { dpop: req.headers.dpop } : {}),
    ...(peer.thumbprint && peer.authorized ? { certThumbprint: peer.thumbprint } : {}),
    ...(apiOptions.dpopNonces ? { nonce } : {}),
  })
  if (apiOptions.audience) {
    const auds = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
    if (!auds.includes(apiOptions.audience)) throw new AccessDenied('invalid_token', 'token audience does not include this API', 'Bearer')
  }
  return claims
}

/** A resource server on 127.0.0.1 accepting the server's tokens; answers 200 with the token's claims, or scripted answers. */
export async function startProtectedApi(st: ServerState, apiOptions: ProtectedApiOptions = {}): Promise<ProtectedApi> {
  const api = createServer(apiOptions.tls)
  const apiUrl = `${apiOptions.tls ? 'https' : 'http'}://127.0.0.1:${await listen(api)}`
  const recorded: ApiRequestRecord[] = []
  const queue: ScriptedAnswer[] = []
  const apiNonce = randomBytes(12).toString('base64url')

  async function handle(req: IncomingMessage, res: ServerResponse, body: string): Promise<void> {
    const rec = recordApiRequest(st, req, body)
    recorded.push(rec)
    const reply = (status: number, h: Record<string, string>, b: string) => {
      rec.status = status
      res.writeHead(status, { 'content-type': 'application/json', ...h })
      res.end(b)
    }
    const next = queue[0]
    const take = () => {
      if ((next!.count ?? 1) <= 1) queue.shift()
      else next!.count = (next!.count ?? 1) - 1
      reply(next!.status, next!.headers ?? {}, next!.body ?? '')
    }
    if (next?.beforeAuth) return take()
    try {
      const claims = await verifyApiRequest(st, req, apiUrl, apiOptions, apiNonce)
      if (claims.sub) rec.sub = claims.sub
      if (claims.client_id) rec.clientId = claims.client_id
      if (next) return take()
      reply(200, {}, JSON.stringify({ ok: true, sub: claims.sub, client_id: claims.client_id, scope: claims.scope ?? '' }))
    } catch (e) {
      if (!(e instanceof AccessDenied)) throw e
      reply(401, { 'www-authenticate': `${e.scheme} error="${e.error}", error_description="${e.description}"`, ...e.headers }, JSON.stringify({ error: e.error }))
    }
  }

  api.on('request', (req, res) => {
    res.setHeader('date', new Date(st.now()).toUTCString())
    readBody(req).then((body) => handle(req, res, body)).catch(() => {
      if (!res.headersSent) res.writeHead(500)
      res.end()
    })
  })
  return {
    url: apiUrl,
    requests: recorded,
    respondNext: (spec) => void queue.push({ ...spec }),
    close: () => closeServer(api),
  }
}
