import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import httpListener from '../../components/sources/http-listener.ts'
import { compileSchema, validateCollectingSecrets } from '../../shared/config/ajv.ts'
import { displayPath, parseJsonWithLocation, resolveSecrets } from '../../shared/config/load.ts'
import { ajvProblems } from '../../shared/config/problems.ts'
import { secretSchema } from '../../shared/config/secret-schema.ts'
import type { InboundJwtOptions } from '../../shared/inbound/jwt-verifier.ts'
import { ConfigError, type ConfigProblem } from '../../shared/errors.ts'
import { reveal, type Secret } from '../../shared/secret.ts'

export type Role = 'viewer' | 'operator'
export const ROLES: readonly Role[] = ['viewer', 'operator']

/** The http-listener's `jwt` option: the admin server verifies OIDC bearer tokens the same way. */
const listenerJwtSchema = httpListener.configSchema.properties.jwt

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
  if (problems.length) throw new ConfigError(problems)
  const config: AdminConfig = {
    tokens: tokens.map((t) => ({ name: t.name, role: t.role, hash: sha256(reveal(t.token)!) })),
    hosts: (data.hosts as string[]).map((h) => h.toLowerCase()),
    sessionTtlSec: data.sessionTtlSec as number,
    ...(data.jwt ? { jwt: data.jwt as unknown as AdminJwtOptions } : {}),
  }
  return { config, warnings }
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

/** Whether any authentication is configured. */
export const hasAuth = (c: AdminConfig): boolean => c.tokens.length > 0 || c.jwt !== undefined
