import type { IncomingMessage, ServerResponse } from 'node:http'
import { Refusal } from '../../shared/inbound/refusal.ts'

/** The Content-Security-Policy of every response: nothing inline, nothing from elsewhere, no framing. */
export const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

/** Headers on every admin response (pages and API alike are never cached). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  // Not no-referrer: under it a browser sends `Origin: null` with a form's POST, which the CSRF check refuses.
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
}

/** Strict-Transport-Security of an HTTPS admin server (no includeSubDomains: other hosts are not the engine's to decide). */
export const STRICT_TRANSPORT_SECURITY = 'max-age=31536000'

/** Largest request body the admin server reads (a login form, a pause). */
export const MAX_BODY_BYTES = 16 * 1024

/** Escapes text for HTML element content and quoted attributes: message bodies are untrusted and never rendered as HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`)
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(res.req.method === 'HEAD' ? undefined : text)
}

/**
 * Reads a POST body (at most MAX_BODY_BYTES): URL-encoded form fields, or the fields of a JSON
 * object whose values are strings, finite numbers or booleans (as their text: `{"count": 3}` is
 * `count=3`); other values are left out. The content type does not decide the CSRF check: a
 * session's POST needs its token either way (`_csrf` or `x-csrf-token`).
 */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    size += (c as Buffer).length
    if (size > MAX_BODY_BYTES) throw new Refusal(413, `request body larger than ${MAX_BODY_BYTES} bytes`)
    chunks.push(c as Buffer)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (!text) return new URLSearchParams()
  if (type === 'application/x-www-form-urlencoded') return new URLSearchParams(text)
  if (type !== 'application/json') throw new Refusal(415, 'send application/x-www-form-urlencoded or application/json')
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    throw new Refusal(400, 'body is not valid JSON')
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new Refusal(400, 'body must be a JSON object')
  return new URLSearchParams(Object.entries(data).flatMap(([k, v]) => (scalar(v) ? [[k, String(v)] as [string, string]] : [])))
}

/** A JSON value read as a form field: a string, a finite number or a boolean. */
function scalar(v: unknown): v is string | number | boolean {
  return typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))
}
