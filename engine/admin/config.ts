import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { createSecureContext } from 'node:tls'
import httpListener from '../../components/sources/http-listener.ts'
import { compileSchema, validateCollectingSecrets } from '../../shared/config/ajv.ts'
import { displayPath, parseJsonWithLocation, resolveSecrets } from '../../shared/config/load.ts'
import { ajvProblems } from '../../shared/config/problems.ts'
import { secretSchema } from '../../shared/config/secret-schema.ts'
import type { InboundJwtOptions } from '../../shared/inbound/jwt-verifier.ts'
import { serverTlsSchema } from '../../shared/inbound/tls-schema.ts'
import { ConfigError, type ConfigProblem } from '../../shared/errors.ts'
import { reveal, type Secret } from '../../shared/secret.ts'
import { serverTlsOptions, serverTlsProblems, type ServerTlsConfig } from '../../shared/tls.ts'

export type Role = 'viewer' | 'operator'
export const ROLES: readonly Role[] = ['viewer', 'operator']

/** The http-listener's `jwt` option: the admin server verifies OIDC bearer tokens the same way. */
const listenerJwtSchema = httpListener.configSchema.properties.jwt

/** A listening source's `tls` option, its files relative to the admin config file. */
const listenerTlsSchema = serverTlsSchema('Serve HTTPS instead of HTTP: the session cookie is then `Secure` and HSTS is sent. Without it, bound to anything but loopback, the server warns at start that tokens and cookies travel in clear.')
const adminTlsSchema = {
  ...listenerTlsSchema,
  properties: {
    ...listenerTlsSchema.properties,
    certFile: { ...listenerTlsSchema.properties.certFile, description: 'PEM certificate (chain) file, relative to the admin config file.', examples: ['tls/admin.crt'] },
    key: { ...listenerTlsSchema.properties.key, description: 'PEM private key of the certificate; use {"$file": "path"} (relative to the admin config file) or {"$env": "NAME"}.', examples: [{ $file: 'tls/admin.key' }] },
    caFile: { ...listenerTlsSchema.properties.caFile, description: 'PEM file of CAs that client certificates must chain to (mutual TLS), relative to the admin config file. With `requireClientCert`, a client without such a certificate cannot connect: a check on top of the tokens, the certificate signs no one in.' },
    requireClientCert: { ...listenerTlsSchema.properties.requireClientCert, description: 'Refuse clients without a certificate from `caFile`. Otherwise a certificate is asked for and not needed.' },
  },
} as const

export const adminConfigSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    tokens: {
      type: 'array', default: [],
      description: 'Admin tokens: a client sends one as `Authorization: Bearer <token>` or on the login form. Only a SHA-256 of each is kept in memory.',
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'role', 'token'],
        properties: {
          name: { type: 'string', minLength: 1, description: 'Who holds the token (shown in the log and the dashboard, never the token).' },
          role: { enum: [...ROLES], description: '`viewer` reads; `operator` may also pause, resume and resubmit.' },
          token: secretSchema('The token; use {"$env": "NAME"} or {"$file": "path"}.'),
        },
      },
    },
    jwt: {
      type: 'object', additionalProperties: false, required: listenerJwtSchema.required,
      description: 'Accept OIDC bearer access tokens, verified as the http-listener\'s `jwt` option does; the role comes from a claim.',
      properties: {
        ...listenerJwtSchema.properties,
        roleClaim: { type: 'string', minLength: 1, default: 'roles', description: 'Claim holding the roles (a string or an array; a dotted path reaches into objects, e.g. "realm_access.roles").' },
        operatorRole: { type: 'string', minLength: 1, default: 'weir-operator', description: 'Role value that grants `operator`.' },
        viewerRole: { type: 'string', minLength: 1, default: 'weir-viewer', description: 'Role value that grants `viewer`.' },
      },
    },
    hosts: {
      type: 'array', default: [], items: { type: 'string', minLength: 1, description: 'A host name, without port.' },
      description: 'Host names (the `Host` header) the server answers to besides the loopback names and the address it is bound to; others get 421 (DNS rebinding).',
    },
    sessionTtlSec: { type: 'integer', minimum: 60, maximum: 86_400, default: 28_800, description: 'How long a browser session from the login form lasts (seconds); one made with an OIDC access token ends when that token expires, if sooner.' },
    tls: adminTlsSchema,
    publicUrl: {
      type: 'string', minLength: 1,
      description: 'The URL browsers reach the admin server at, when a reverse proxy in front of it terminates TLS. An `https` one makes the session cookie `Secure`, sends HSTS, accepts its host and origin (besides `hosts`) and silences the plain-HTTP warning. X-Forwarded-* headers are never trusted.',
      examples: ['https://weir.example.org/'],
    },
  },
} as const

export interface AdminJwtOptions extends InboundJwtOptions {
  roleClaim: string
  operatorRole: string
  viewerRole: string
}

/** A configured admin token: its holder, role and SHA-256 (the token itself is not kept). */
export interface AdminToken {
  name: string
  role: Role
  hash: Buffer
}

export interface AdminConfig {
  tokens: AdminToken[]
  jwt?: AdminJwtOptions
  hosts: string[]
  sessionTtlSec: number
  /** HTTPS: the `tls` option with its files as absolute paths and the key resolved. */
  tls?: ServerTlsConfig & { key: Secret }
  /** Where browsers reach the server through a TLS-terminating proxy (normalized `href`). */
  publicUrl?: string
}

export const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()

/** No authentication: what the server runs with without `--admin-config` (allowed on loopback only). */
export const OPEN_CONFIG: AdminConfig = { tokens: [], hosts: [], sessionTtlSec: 28_800 }

/** Validates an admin config object; `$env`/`$file` tokens are resolved like a channel file's secrets. Refuses one with neither `tokens` nor `jwt` (at `/tokens`). */
export function parseAdminConfig(raw: unknown, file: string, env: NodeJS.ProcessEnv): { config: AdminConfig; warnings: ConfigProblem[] } {
  const name = displayPath(file)
  const data = structuredClone(raw) as Record<string, unknown>
  const res = validateCollectingSecrets(compileSchema(adminConfigSchema), data)
  if (!res.valid) throw new ConfigError(ajvProblems(res.errors, name, '', data), res.errors)
  const problems: ConfigProblem[] = []
  const warnings: ConfigProblem[] = []
  resolveSecrets(data, res.secretPaths, '', { file: name, dir: dirname(file), env, problems, warnings })
  const tokens = data.tokens as Array<{ name: string; role: Role; token: Secret }>
  const seen = new Set<string>()
  tokens.forEach((t, i) => {
    if (seen.has(t.name)) problems.push({ file: name, pointer: `/tokens/${i}/name`, message: `token name "${t.name}" is used twice` })
    seen.add(t.name)
  })
  // A config file is given to require authentication: one that configures none would leave the server open.
  if (tokens.length === 0 && data.jwt === undefined) {
    problems.push({ file: name, pointer: '/tokens', message: 'must have at least 1 item (or configure "jwt"): an admin config without tokens or jwt would leave the admin server open; to run it open on loopback, start without --admin-config' })
  }
  const tls = data.tls as (ServerTlsConfig & { key: Secret }) | undefined
  if (tls) problems.push(...tlsProblems(tls, dirname(file), name, problems.some((p) => p.pointer === '/tls/key')))
  const publicUrl = data.publicUrl === undefined ? undefined : publicUrlOf(data.publicUrl as string, name, problems)
  if (problems.length) throw new ConfigError(problems)
  const config: AdminConfig = {
    tokens: tokens.map((t) => ({ name: t.name, role: t.role, hash: sha256(reveal(t.token)!) })),
    hosts: (data.hosts as string[]).map((h) => h.toLowerCase()),
    sessionTtlSec: data.sessionTtlSec as number,
    ...(data.jwt ? { jwt: data.jwt as unknown as AdminJwtOptions } : {}),
    ...(publicUrl ? { publicUrl } : {}),
    ...(tls ? { tls: { ...tls, certFile: resolve(dirname(file), tls.certFile), ...(tls.caFile ? { caFile: resolve(dirname(file), tls.caFile) } : {}) } } : {}),
  }
  return { config, warnings }
}

/** The `publicUrl` option normalized (`href`), or undefined with its problem at `/publicUrl`: an absolute http(s) URL, no credentials, query or fragment. */
function publicUrlOf(text: string, file: string, problems: ConfigProblem[]): string | undefined {
  const problem = (message: string) => void problems.push({ file, pointer: '/publicUrl', message })
  const url = URL.canParse(text) ? new URL(text) : undefined
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) return problem('must be an absolute http or https URL (e.g. "https://weir.example.org/")')
  if (url.username || url.password) return problem('must not hold a user name or password')
  if (url.search || url.hash) return problem('must not have a query or fragment')
  return url.href
}

/**
 * What is wrong with the `tls` option, at its pointers: the http-listener's checks (files readable,
 * `requireClientCert` with `caFile`), then, once the key is resolved and the files read, a
 * certificate or CA file holding no certificate, a key that is not a private key or not the
 * certificate's, and whatever else keeps TLS from using them. No key material is quoted.
 */
function tlsProblems(tls: ServerTlsConfig & { key: Secret }, dir: string, file: string, keyUnresolved: boolean): ConfigProblem[] {
  const out: ConfigProblem[] = serverTlsProblems(tls, dir).map(([pointer, message]) => ({ file, pointer, message }))
  if (out.length || keyUnresolved) return out
  const certOf = (field: 'certFile' | 'caFile', path: string): X509Certificate | undefined => {
    try {
      return new X509Certificate(readFileSync(resolve(dir, path)))
    } catch {
      out.push({ file, pointer: `/tls/${field}`, message: `"${path}" holds no PEM certificate` })
      return undefined
    }
  }
  const cert = certOf('certFile', tls.certFile)
  if (tls.caFile) certOf('caFile', tls.caFile)
  let key: ReturnType<typeof createPrivateKey> | undefined
  try {
    key = createPrivateKey(reveal(tls.key)!)
  } catch {
    out.push({ file, pointer: '/tls/key', message: 'not a PEM private key' })
  }
  if (cert && key) {
    const spki = (k: ReturnType<typeof createPublicKey>) => k.export({ type: 'spki', format: 'der' })
    if (!spki(cert.publicKey).equals(spki(createPublicKey(key)))) out.push({ file, pointer: '/tls/key', message: `the private key does not match the certificate in "${tls.certFile}"` })
  }
  if (out.length) return out
  try {
    createSecureContext(serverTlsOptions(tls, dir))
  } catch (e) {
    out.push({ file, pointer: '/tls', message: `TLS cannot use this certificate and key: ${(e as Error).message}` })
  }
  return out
}

/** Reads and validates `--admin-config FILE`. Throws `ERR_CONFIG_INVALID` with JSON pointers. */
export async function loadAdminConfig(file: string, env: NodeJS.ProcessEnv): Promise<{ config: AdminConfig; warnings: ConfigProblem[] }> {
  const abs = resolve(file)
  let text: string
  try {
    text = await readFile(abs, 'utf8')
  } catch (e) {
    throw new ConfigError([{ file: displayPath(abs), pointer: '', message: `cannot read file (${(e as NodeJS.ErrnoException).code ?? 'error'})` }])
  }
  return parseAdminConfig(parseJsonWithLocation(text, displayPath(abs)), abs, env)
}

/** Whether browsers reach the server over HTTPS: it speaks TLS itself, or `publicUrl` is an https one (a TLS-terminating proxy). */
export const servedOverHttps = (c: AdminConfig): boolean => c.tls !== undefined || c.publicUrl?.startsWith('https:') === true

/** Whether any authentication is configured. */
export const hasAuth = (c: AdminConfig): boolean => c.tokens.length > 0 || c.jwt !== undefined
