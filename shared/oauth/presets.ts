import { Secret, reveal } from '../secret.ts'
import type { AssertionConfig, ClientAuthConfig, CredentialConfig, GrantName, KeyHeader, SecretLike } from './config.ts'

export type PresetName = 'epic-backend' | 'oracle-health' | 'azure-ad' | 'google-service-account' | 'salesforce-jwt-bearer'

/** `[pointer inside the credential, message]`, as `checkCredential` returns them. */
export type Problem = [string, string]

/**
 * What a provider preset defaults and which provider rules it checks. The loader (`checkCredential`),
 * the token provider (`applyPreset`) and the channel test harness (which registers clients at the
 * embedded authorization server as the provider would) all read this one table.
 */
export interface Preset {
  /** The grant the preset defaults to; with `grantRequired`, the only one the provider offers. */
  grant: GrantName
  grantRequired?: boolean
  /** Defaults of `clientAuth` (filled where the credential leaves them out). */
  clientAuth?: Partial<ClientAuthConfig>
  /** Headers of the client assertion the provider requires, sent besides those the key implies (kid, x5t#S256) unless `clientAuth.headers` is given. */
  clientAuthHeaders?: KeyHeader[]
  /** Defaults of the jwt_bearer `assertion`. */
  assertion?: Partial<AssertionConfig>
  /** JWS algorithms the provider accepts for the preset's assertions. */
  algs: string[]
  /** Longest assertion lifetime (exp - iat, s) the provider accepts. */
  maxAssertionLifetimeSec: number
  /** Scopes the provider accepts, with the message for one it does not. */
  scopes?: { pattern: RegExp; expected: string }
  /** Defaults that depend on other fields (tenant, key file, audience); `c` is already a copy. */
  fill?(c: CredentialConfig): void
  /** Provider rules beyond grant, algorithms, lifetime and scopes, on the effective config. */
  check?(c: CredentialConfig, scopes: string[]): Problem[]
  /** The token URL the provider uses when the credential names none. */
  tokenUrl?(c: CredentialConfig): string | undefined
  /** Assertion `aud` values the provider accepts besides its token endpoint, given that endpoint's URL. */
  assertionAudiences?(tokenUrl: string): string[]
}

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token'
const SALESFORCE_LOGIN = 'https://login.salesforce.com'
const SMART_SYSTEM_SCOPE = /^system\/(\*|[A-Za-z]+)\.(read|write|\*|[cruds]+)$/

export interface GoogleKeyFile { client_email?: string; private_key?: string; private_key_id?: string; token_uri?: string; type?: string }

/** A `{ "$env" }` / `{ "$file" }` reference not resolved yet (the loader checks provider rules before resolving secrets). */
export const isUnresolvedRef = (v: unknown): boolean => typeof v === 'object' && v !== null && !Secret.is(v)

/**
 * Parses a Google service-account key: JSON content, or a file path when a library caller gives a
 * plain string. A Secret (from a channel file: literal, `$env` or `$file`) is always the key's
 * content: content that is not JSON (a PEM, base64) must never be taken for a path, since the
 * error of opening it would quote the key.
 */
export function parseGoogleKeyFile(keyFile: SecretLike | undefined, readFile?: (path: string) => string): GoogleKeyFile | undefined {
  if (isUnresolvedRef(keyFile)) return undefined
  const raw = reveal(keyFile)
  if (raw === undefined) return undefined
  const isPath = typeof keyFile === 'string' && !raw.trimStart().startsWith('{')
  const text = isPath && readFile ? readFile(raw) : raw
  try {
    return JSON.parse(text) as GoogleKeyFile
  } catch {
    return undefined
  }
}

/** The `kid` of a private key given as a JWK (JSON text), if it has one; undefined for a PEM or an unresolved reference. */
export function jwkKidOf(privateKey: SecretLike | undefined): string | undefined {
  if (isUnresolvedRef(privateKey)) return undefined
  const text = reveal(privateKey)?.trim()
  if (!text?.startsWith('{')) return undefined
  try {
    const kid = (JSON.parse(text) as { kid?: unknown }).kid
    return typeof kid === 'string' && kid !== '' ? kid : undefined
  } catch {
    return undefined
  }
}

export function has(v: unknown): boolean {
  return v !== undefined && v !== null && v !== ''
}

const salesforceTokenUrl = (audience: string | undefined) =>
  `${!audience || audience === 'token-endpoint' || audience === 'issuer' ? SALESFORCE_LOGIN : audience.replace(/\/$/, '')}/services/oauth2/token`

function assertionAlgProblems(preset: string, a: AssertionConfig, algs: string[]): Problem[] {
  return a.alg && !algs.includes(a.alg) ? [['/assertion/alg', `${preset} assertions are ${algs.join(' or ')}; got ${a.alg}`]] : []
}

/** The provider presets (Epic, Oracle Health, Azure AD, Google, Salesforce): defaults and rules. */
export const PRESETS: Record<PresetName, Preset> = {
  'epic-backend': {
    grant: 'client_credentials', grantRequired: true,
    clientAuth: { method: 'private_key_jwt', alg: 'RS384', audience: 'token-endpoint', assertionLifetimeSec: 300 },
    // SMART Backend Services: the assertion's header carries alg, kid and typ "JWT" (all required).
    clientAuthHeaders: ['typ'],
    algs: ['RS384', 'ES384'],
    maxAssertionLifetimeSec: 300,
    scopes: { pattern: SMART_SYSTEM_SCOPE, expected: 'system/<Resource>.read (v1) or system/<Resource>.rs (v2)' },
    check(c) {
      const p: Problem[] = []
      const ca = c.clientAuth ?? {}
      if (ca.method !== 'private_key_jwt') p.push(['/clientAuth/method', `epic-backend requires private_key_jwt (SMART Backend Services); got ${ca.method}`])
      if (ca.alg && !this.algs.includes(ca.alg)) p.push(['/clientAuth/alg', `epic-backend requires ${this.algs.join(' or ')} (SMART Backend Services); got ${ca.alg}`])
      const lifetime = ca.assertionLifetimeSec ?? 300
      if (lifetime > this.maxAssertionLifetimeSec) p.push(['/clientAuth/assertionLifetimeSec', `epic-backend: Epic rejects client assertions that expire more than 5 minutes ahead; got ${lifetime} s (at most ${this.maxAssertionLifetimeSec})`])
      if (!ca.kid && !ca.keys) p.push(['/clientAuth/kid', 'epic-backend requires clientAuth.kid, the kid of the key in the JWKS registered with Epic'])
      if (ca.audience && ca.audience !== 'token-endpoint' && ca.audience !== c.tokenUrl) p.push(['/clientAuth/audience', 'epic-backend requires the assertion aud to be the token URL'])
      return p
    },
  },
  'oracle-health': {
    grant: 'client_credentials',
    clientAuth: { method: 'client_secret_basic' },
    algs: [],
    maxAssertionLifetimeSec: 300,
    scopes: { pattern: SMART_SYSTEM_SCOPE, expected: 'system/<Resource>.read or .write, as registered' },
    check(c) {
      const method = c.clientAuth?.method
      return method !== 'client_secret_basic' ? [['/clientAuth/method', `oracle-health system accounts use client_secret_basic; got ${method}`]] : []
    },
  },
  'azure-ad': {
    grant: 'client_credentials',
    algs: ['PS256', 'RS256'],
    maxAssertionLifetimeSec: 300,
    fill(c) {
      const ca = c.clientAuth!
      if (!c.tokenUrl && !c.issuer && c.tenant) c.tokenUrl = `https://login.microsoftonline.com/${encodeURIComponent(c.tenant)}/oauth2/v2.0/token`
      if (!ca.method) ca.method = has(ca.secret) ? 'client_secret_post' : 'private_key_jwt'
      if (ca.method === 'private_key_jwt') {
        ca.alg ??= 'PS256'
        ca.headers ??= ca.alg === 'RS256' ? ['x5t'] : ['x5t#S256']
        ca.audience ??= 'token-endpoint'
      }
    },
    check(c, scopes) {
      const p: Problem[] = []
      const ca = c.clientAuth ?? {}
      if (c.tokenUrl && !/^https:\/\/login\.microsoftonline\.(com|us)\/[^/]+\/oauth2\/v2\.0\/token$/.test(c.tokenUrl) && !c.tenant) {
        p.push(['/tokenUrl', 'azure-ad token URL must be https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token'])
      }
      if (c.grant === 'client_credentials' && (scopes.length !== 1 || !scopes[0]!.endsWith('/.default'))) {
        p.push(['/scope', `azure-ad client_credentials takes exactly one scope ending in /.default (e.g. https://graph.microsoft.com/.default); got "${scopes.join(' ')}"`])
      }
      if (ca.method === 'private_key_jwt') {
        if (!ca.alg || !this.algs.includes(ca.alg)) p.push(['/clientAuth/alg', `azure-ad certificate credentials use PS256 (or RS256 with x5t); got ${ca.alg}`])
        const hs = ca.headers ?? []
        if (ca.alg === 'PS256' && !hs.includes('x5t#S256')) p.push(['/clientAuth/headers', 'azure-ad with PS256 requires the x5t#S256 header'])
        if (ca.alg === 'RS256' && !hs.includes('x5t') && !hs.includes('x5t#S256')) p.push(['/clientAuth/headers', 'azure-ad with RS256 requires the x5t header'])
        if (!ca.certificate) p.push(['/clientAuth/certificate', 'azure-ad certificate credentials require clientAuth.certificate (its thumbprint identifies the key)'])
      }
      return p
    },
  },
  'google-service-account': {
    grant: 'jwt_bearer', grantRequired: true,
    clientAuth: { method: 'none' },
    assertion: { alg: 'RS256', scopeClaim: true, lifetimeSec: 3600, audience: GOOGLE_TOKEN_URL },
    algs: ['RS256'],
    maxAssertionLifetimeSec: 3600,
    fill(c) {
      const a = (c.assertion ??= {})
      if (!has(a.keyFile) && has(c.clientAuth!.keyFile)) a.keyFile = c.clientAuth!.keyFile
      const kf = parseGoogleKeyFile(a.keyFile)
      c.tokenUrl ??= kf?.token_uri ?? GOOGLE_TOKEN_URL
      if (kf?.client_email) a.iss ??= kf.client_email
      if (kf?.private_key_id) a.kid ??= kf.private_key_id
      c.clientId ??= kf?.client_email
    },
    check(c) {
      const p: Problem[] = []
      const a = c.assertion ?? {}
      if (!has(a.keyFile)) p.push(['/assertion/keyFile', 'google-service-account requires assertion.keyFile (the service-account JSON key)'])
      else if (!isUnresolvedRef(a.keyFile)) {
        const kf = parseGoogleKeyFile(a.keyFile)
        if (!kf) p.push(['/assertion/keyFile', 'google-service-account key file is not JSON'])
        else if (!kf.private_key || !kf.client_email || !kf.private_key_id) p.push(['/assertion/keyFile', 'google-service-account key file lacks private_key, private_key_id or client_email'])
      }
      p.push(...assertionAlgProblems('google-service-account', a, this.algs))
      if ((a.lifetimeSec ?? 3600) > this.maxAssertionLifetimeSec) p.push(['/assertion/lifetimeSec', `google-service-account: exp at most iat + ${this.maxAssertionLifetimeSec}`])
      return p
    },
    tokenUrl: () => GOOGLE_TOKEN_URL,
    assertionAudiences: (tokenUrl) => [tokenUrl],
  },
  'salesforce-jwt-bearer': {
    grant: 'jwt_bearer', grantRequired: true,
    clientAuth: { method: 'none' },
    assertion: { alg: 'RS256', lifetimeSec: 180, audience: SALESFORCE_LOGIN },
    algs: ['RS256'],
    maxAssertionLifetimeSec: 300,
    fill(c) {
      if (c.clientId) c.assertion!.iss ??= c.clientId
      c.tokenUrl ??= salesforceTokenUrl(c.assertion!.audience)
    },
    check(c) {
      const p: Problem[] = []
      if (!c.clientId && !c.assertion?.iss) p.push(['/clientId', 'salesforce-jwt-bearer requires clientId (the connected app consumer key)'])
      if (!c.assertion?.sub) p.push(['/assertion/sub', 'salesforce-jwt-bearer requires assertion.sub (the Salesforce username)'])
      const a = c.assertion ?? {}
      p.push(...assertionAlgProblems('salesforce-jwt-bearer', a, this.algs))
      if ((a.lifetimeSec ?? 180) > this.maxAssertionLifetimeSec) p.push(['/assertion/lifetimeSec', `salesforce-jwt-bearer: keep the assertion lifetime about 3 minutes; got ${a.lifetimeSec} s`])
      return p
    },
    tokenUrl: (c) => {
      const audience = c.assertion?.audience
      return salesforceTokenUrl(typeof audience === 'string' && /^https:\/\//.test(audience) ? audience : undefined)
    },
    assertionAudiences: (tokenUrl) => [new URL(tokenUrl).origin],
  },
}

/** The preset named `name`, if it is one. */
export function presetOf(name: unknown): Preset | undefined {
  return typeof name === 'string' && Object.hasOwn(PRESETS, name) ? PRESETS[name as PresetName] : undefined
}
