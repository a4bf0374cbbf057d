import { createHash, X509Certificate } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'

/** An HTTP server, or an HTTPS one that asks for (and records) client certificates without requiring them. */
export function createServer(tls: { cert: string; key: string; ca?: string } | undefined): Server {
  return tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}), requestCert: true, rejectUnauthorized: false })
    : createHttpServer()
}

export function readBody(req: IncomingMessage, limit = 1_000_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) reject(new Error('body too large'))
      else chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

/** The client certificate of a TLS request: SHA-256 thumbprint (base64url), subject DN, and whether it chains to the CA. */
export function peerThumbprint(req: IncomingMessage): { thumbprint?: string; subject?: string; authorized: boolean } {
  const sock = req.socket as TLSSocket
  if (typeof sock.getPeerCertificate !== 'function') return { authorized: false }
  const cert = sock.getPeerCertificate()
  if (!cert || !cert.raw) return { authorized: false }
  const x = new X509Certificate(cert.raw)
  return { thumbprint: createHash('sha256').update(cert.raw).digest('base64url'), subject: x.subject.split('\n').join(','), authorized: sock.authorized }
}

export function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
  })
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

export function formDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '))
}
