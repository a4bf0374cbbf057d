import { accessSync, constants, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { ConfigError } from './errors.ts'
import { reveal, type Secret } from './secret.ts'

/** Reads a PEM file named in a channel (relative to the channel directory); a missing file is a config error naming it. */
export function readTlsFile(channelDir: string, file: string): Buffer {
  const path = resolve(channelDir, file)
  try {
    return readFileSync(path)
  } catch (e) {
    throw new ConfigError([{ file: path, pointer: '', message: `cannot read TLS file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }])
  }
}

/** A listening source's `tls` option (shared/inbound/tls-schema.ts) as configured. */
export interface ServerTlsConfig {
  certFile: string
  key: Secret | string
  caFile?: string | undefined
  requireClientCert?: boolean | undefined
}

/**
 * What is wrong with a listening source's `tls` option, as `[pointer, message]` pairs for its
 * `check`: mutual TLS without the CAs, a certificate or CA file that cannot be read (relative to
 * the channel file). `weir validate` then names the setting, instead of `weir run` failing later.
 */
export function serverTlsProblems(tls: ServerTlsConfig | undefined, channelDir: string): Array<[string, string]> {
  if (!tls) return []
  const out: Array<[string, string]> = []
  if (tls.requireClientCert && !tls.caFile) out.push(['/tls/requireClientCert', 'requires "caFile" (the CAs client certificates must chain to)'])
  for (const [field, file] of [['certFile', tls.certFile], ['caFile', tls.caFile]] as const) {
    if (file === undefined) continue
    try {
      accessSync(resolve(channelDir, file), constants.R_OK)
    } catch (e) {
      out.push([`/tls/${field}`, `cannot read TLS file ${resolve(channelDir, file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`])
    }
  }
  return out
}

/**
 * The options of a TLS server (HTTPS, MLLP over TLS) from a listening source's `tls` option: its
 * certificate and key, and with `caFile` a request for client certificates, refused when they do
 * not chain to it only if `requireClientCert` (otherwise the connection goes on and
 * verifiedClientSubject tells the two apart).
 */
export function serverTlsOptions(tls: ServerTlsConfig, channelDir: string): { cert: Buffer; key: string; ca?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean } {
  return {
    cert: readTlsFile(channelDir, tls.certFile), key: reveal(tls.key)!,
    ...(tls.caFile ? { ca: readTlsFile(channelDir, tls.caFile), requestCert: true, rejectUnauthorized: tls.requireClientCert ?? false } : {}),
  }
}

/**
 * The subject (CN) of the client certificate on `socket`, only when it was verified against the
 * listener's `caFile`. With optional client certificates a connection may present any certificate,
 * a self-signed one naming whom it likes: its subject names no one and is not returned.
 */
export function verifiedClientSubject(socket: Socket): string | undefined {
  const tls = socket as Partial<TLSSocket>
  if (!tls.authorized || !tls.getPeerCertificate) return undefined
  const cn = tls.getPeerCertificate().subject?.CN
  return cn ? String(cn) : undefined
}
