import type { JsonSchema } from '../component.ts'
import { secretSchema } from '../config/secret-schema.ts'
import type { Secret } from '../secret.ts'
import { PRESETS, has, jwkKidOf, parseGoogleKeyFile, presetOf, type PresetName, type Problem } from './presets.ts'

export { GOOGLE_TOKEN_URL, parseGoogleKeyFile, type PresetName } from './presets.ts'

export type SecretLike = string | Secret
export type GrantName = 'client_credentials' | 'jwt_bearer' | 'refresh_token' | 'static'
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'client_secret_jwt' | 'private_key_jwt' | 'tls_client_auth' | 'none'
export type SigningAlg = 'RS256' | 'RS384' | 'PS256' | 'ES256' | 'ES384' | 'EdDSA' | 'HS256'
export type KeyHeader = 'kid' | 'typ' | 'x5t' | 'x5t#S256' | 'x5c'

/** Key material and header policy of a signed JWT (client assertion or jwt-bearer grant assertion). */
export interface SigningConfig {
  /** PKCS#8 (or PKCS#1/SEC1) PEM, or a private JWK as JSON. */
  privateKey?: SecretLike
  /** A Google service-account JSON key (its content, or a path when passed as a plain string). */
  keyFile?: SecretLike
  alg?: SigningAlg
  kid?: string
  /** PEM certificate of the key, for x5t / x5t#S256 / x5c headers. */
  certificate?: string
  headers?: KeyHeader[]
  /** Several keys, each signing from its `signFrom` (key rotation); replaces privateKey, keyFile and kid. */
  keys?: KeyEntry[]
}

/** One key of a rotating key list: the newest whose `signFrom` has come signs; every one is published. */
export interface KeyEntry {
  kid: string
  privateKey: SecretLike
  alg?: SigningAlg
  /** RFC 3339 date-time from which the key signs; without it, from the start. */
  signFrom?: string
}

export interface ClientAuthConfig extends SigningConfig {
  method?: ClientAuthMethod
  secret?: SecretLike
  /** `token-endpoint` (default), `issuer`, or an explicit URL. */
  audience?: string
  assertionLifetimeSec?: number
  basicEncoding?: 'strict' | 'loose'
}

export interface AssertionConfig extends SigningConfig {
  iss?: string
  sub?: string
  /** `token-endpoint` (default), `issuer`, or an explicit value. */
  audience?: string
  lifetimeSec?: number
  /** Put the scope in a `scope` claim of the assertion instead of the form (Google). */
  scopeClaim?: boolean
  claims?: Record<string, unknown>
  /** An assertion signed elsewhere, sent as is. */
  value?: SecretLike
}

export interface CredentialConfig {
  preset?: PresetName
  grant?: GrantName
  tokenUrl?: string
  issuer?: string
  /** Azure AD tenant (id or domain), used by the azure-ad preset to build the token URL. */
  tenant?: string
  clientId?: string
  clientAuth?: ClientAuthConfig
  assertion?: AssertionConfig
  scope?: string | string[]
  resource?: string | string[]
  audience?: string
  extraParams?: Record<string, string>
  refreshToken?: SecretLike
  /** Key of this credential's entry in the refresh-token store; defaults to the credential name. */
  storeKey?: string
  /** Authorization endpoint of `weir credentials authorize`; discovered from `issuer` when not given. */
  authorizationUrl?: string
  /** Loopback redirect URI of the consent flow; without a port, an ephemeral one (RFC 8252 §7.3). */
  redirectUri?: string
  /** Extra parameters of the authorization request (`prompt`, `access_type`, …). */
  authorizationParams?: Record<string, string>
  token?: SecretLike
  tokenType?: string
  dpop?: boolean | { alg?: 'ES256' | 'ES384' | 'RS256' | 'PS256' | 'EdDSA' }
  tls?: { cert?: string; key?: SecretLike; ca?: string }
  timeoutMs?: number
  defaultExpiresInSec?: number
  clockSkewSec?: number
  failFastMs?: number
  maxAttempts?: number
}

const SIGNING_ALGS = ['RS256', 'RS384', 'PS256', 'ES256', 'ES384', 'EdDSA']
const KEY_HEADERS = ['kid', 'typ', 'x5t', 'x5t#S256', 'x5c']

function signingProperties(what: string): Record<string, JsonSchema> {
  return {
    privateKey: secretSchema(`Private key that signs the ${what}: PKCS#8 PEM or a private JWK (JSON).`),
    keyFile: secretSchema(`Google service-account JSON key (usually { "$file": "key.json" }); supplies the key, kid (private_key_id) and issuer (client_email) of the ${what}.`),
    alg: { type: 'string', enum: SIGNING_ALGS, description: `JWS algorithm of the ${what}.` },
    kid: { type: 'string', minLength: 1, description: 'Key id sent in the `kid` header; must match the key registered with the provider (JWKS).' },
    certificate: { type: 'string', minLength: 1, description: 'PEM certificate of the signing key, for the x5t, x5t#S256 and x5c headers.' },
    headers: {
      type: 'array', uniqueItems: true, items: { type: 'string', enum: KEY_HEADERS },
      description: 'JOSE headers to send besides alg. Default: kid when a kid is known, plus x5t#S256 when a certificate is given (and typ for the client assertion of the epic-backend preset).',
    },
    keys: {
      type: 'array', minItems: 1,
      description: `Rotating keys of the ${what}, instead of privateKey, keyFile and kid: the key with the latest signFrom that has passed signs, and every key is published in the JWK Set (\`weir run --jwks\`). \`weir keys rotate\` adds one, \`weir keys prune\` drops retired ones.`,
      items: {
        type: 'object', additionalProperties: false, required: ['kid', 'privateKey'],
        properties: {
          kid: { type: 'string', minLength: 1, description: 'Key id, sent in the `kid` header and published in the JWK Set.' },
          privateKey: secretSchema('Private key: PKCS#8 PEM or a private JWK (JSON).'),
          alg: { type: 'string', enum: SIGNING_ALGS, description: 'JWS algorithm of this key. Default: the alg of the block.' },
          signFrom: { type: 'string', format: 'date-time', description: 'When the key starts to sign (RFC 3339). Default: from the start. Publish a key well before it signs, so the provider has fetched it.', examples: ['2026-07-01T00:00:00Z'] },
        },
      },
    },
  }
}

/**
 * JSON Schema (draft-07, ajv strict) of one credential under `"credentials": { "<name>": {...} }`.
 * Secret fields use `secretSchema()` (writeOnly): a literal or `{ "$env" }` / `{ "$file" }` reference.
 */
export const credentialSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'An OAuth 2.0 credential: how to obtain an access token for outbound calls.',
  properties: {
    preset: {
      type: 'string', enum: Object.keys(PRESETS),
      description: 'Provider preset: fills in the provider\'s defaults (grant, client authentication, algorithm) and checks its rules at validation time (the README\'s provider table, "Going live against a real provider").',
    },
    grant: {
      type: 'string', enum: ['client_credentials', 'jwt_bearer', 'refresh_token', 'static'],
      description: 'How tokens are obtained. Default: the preset\'s, else client_credentials.',
    },
    tokenUrl: { type: 'string', format: 'uri', description: 'Token endpoint URL.', examples: ['https://fhir.example.org/oauth2/token'] },
    issuer: { type: 'string', format: 'uri', description: 'Authorization server issuer; the token endpoint is discovered (RFC 8414, then OpenID configuration) when tokenUrl is not given.' },
    tenant: { type: 'string', minLength: 1, description: 'Azure AD tenant id or domain (azure-ad preset builds the token URL from it).' },
    clientId: { type: 'string', minLength: 1, description: 'OAuth client id (Salesforce: the consumer key).' },
    clientAuth: {
      type: 'object', additionalProperties: false,
      description: 'How the client authenticates at the token endpoint (RFC 6749 §2.3, RFC 7523 §3, RFC 8705).',
      properties: {
        method: {
          type: 'string', enum: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth', 'none'],
          description: 'Client authentication method. Default: private_key_jwt with a key, client_secret_basic with a secret, tls_client_auth with tls, else none.',
        },
        secret: secretSchema('Client secret (client_secret_basic, client_secret_post, client_secret_jwt).'),
        ...signingProperties('client assertion'),
        audience: { type: 'string', minLength: 1, description: 'Client assertion `aud`: `token-endpoint` (default), `issuer`, or an explicit URL.' },
        assertionLifetimeSec: { type: 'integer', minimum: 10, maximum: 3600, description: 'Client assertion lifetime (exp - iat) in seconds. Default 300.' },
        basicEncoding: { type: 'string', enum: ['strict', 'loose'], default: 'strict', description: 'client_secret_basic: `strict` form-urlencodes id and secret before base64 (RFC 6749 §2.3.1); `loose` does not.' },
      },
    },
    assertion: {
      type: 'object', additionalProperties: false,
      description: 'The assertion of the jwt_bearer grant (RFC 7523 §2.1).',
      properties: {
        ...signingProperties('assertion'),
        iss: { type: 'string', minLength: 1, description: 'Assertion issuer. Default: the key file client_email, else clientId.' },
        sub: { type: 'string', minLength: 1, description: 'Assertion subject (Salesforce: the username; Google: the user to impersonate). Default: the issuer.' },
        audience: { type: 'string', minLength: 1, description: 'Assertion `aud`: `token-endpoint` (default), `issuer`, or an explicit value.' },
        lifetimeSec: { type: 'integer', minimum: 10, maximum: 3600, description: 'Assertion lifetime in seconds. Default 300.' },
        scopeClaim: { type: 'boolean', description: 'Send the scope as a `scope` claim in the assertion instead of a form parameter (Google).' },
        claims: { type: 'object', description: 'Extra claims.' },
        value: secretSchema('An assertion signed elsewhere, sent as is instead of signing one.'),
      },
    },
    scope: {
      anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string', minLength: 1 } }],
      description: 'Scopes to request (a space-separated string or a list).',
    },
    resource: {
      anyOf: [{ type: 'string', format: 'uri' }, { type: 'array', items: { type: 'string', format: 'uri' } }],
      description: 'RFC 8707 resource indicator(s).',
    },
    audience: { type: 'string', minLength: 1, description: 'Requested token audience (`audience` form parameter).' },
    extraParams: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra form parameters for the token request.' },
    refreshToken: secretSchema('Initial refresh token (refresh_token grant); seeds the encrypted store when it holds none for this credential.'),
    storeKey: { type: 'string', minLength: 1, description: 'Key of the refresh-token store entry; give two credentials the same key to share one rotating refresh token. Default: the credential name.' },
    authorizationUrl: {
      type: 'string', format: 'uri', examples: ['https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize'],
      description: 'Authorization endpoint for `weir credentials authorize` (authorization code with PKCE, refresh_token grant). Default: discovered from issuer.',
    },
    redirectUri: {
      type: 'string', pattern: '^http://(127\\.0\\.0\\.1|\\[::1\\]|localhost)(:[0-9]{1,5})?(/[^?#]*)?$', examples: ['http://127.0.0.1/callback', 'http://127.0.0.1:8765/callback'],
      description: 'Loopback redirect URI of `weir credentials authorize`, as registered with the provider. Without a port (default http://127.0.0.1/callback) an ephemeral port is used, which the provider must accept for loopback redirects (RFC 8252 §7.3); with a port, that port.',
    },
    authorizationParams: {
      type: 'object', additionalProperties: { type: 'string' }, examples: [{ access_type: 'offline', prompt: 'consent' }],
      description: 'Extra parameters of the authorization request of `weir credentials authorize`: `prompt`, `login_hint`, Google\'s `access_type: offline`. Scope, resource and audience come from their own fields.',
    },
    token: secretSchema('The token of the static grant (a non-expiring API token).'),
    tokenType: { type: 'string', minLength: 1, pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", default: 'Bearer', description: 'Token type of the static grant: the scheme of its Authorization header (`Bearer`, or what an older API wants, such as `Token`).' },
    dpop: {
      anyOf: [
        { type: 'boolean' },
        { type: 'object', additionalProperties: false, properties: { alg: { type: 'string', enum: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'], description: 'DPoP proof algorithm (default ES256).' } } },
      ],
      description: 'Sender-constrained tokens with DPoP (RFC 9449): true or { "alg": ... }.',
    },
    tls: {
      type: 'object', additionalProperties: false,
      description: 'Client certificate for tls_client_auth and certificate-bound tokens (RFC 8705), and extra CA.',
      properties: {
        cert: { type: 'string', minLength: 1, description: 'Client certificate (PEM).' },
        key: secretSchema('Private key of the client certificate (PEM).'),
        ca: { type: 'string', minLength: 1, description: 'CA certificate(s) (PEM) to trust for the token endpoint and API.' },
      },
    },
    timeoutMs: { type: 'integer', minimum: 1, default: 10_000, description: 'Timeout of one token request (ms).' },
    defaultExpiresInSec: { type: 'integer', minimum: 1, default: 300, description: 'Token lifetime assumed when the response has no expires_in and the token is not a JWT.' },
    clockSkewSec: { type: 'integer', minimum: 0, default: 10, description: 'Tokens count as expired this long before their expiry (capped at 5% of the lifetime).' },
    failFastMs: { type: 'integer', minimum: 0, default: 30_000, description: 'After a terminal error (invalid_client, invalid_grant…), calls fail fast for this long without contacting the token endpoint. Also how long a token obtained to renew one an API rejected (401) is kept if the API rejects it too: no new token for 401s before then (0: renew on every 401).' },
    maxAttempts: { type: 'integer', minimum: 1, maximum: 10, default: 4, description: 'Attempts of one token fetch on transient failures (network, 429, 5xx), with backoff honouring Retry-After.' },
  },
}

/**
 * A copy of `config` with preset and generic defaults filled in: grant, client auth method, token
 * URL, algorithms, key headers. Pure and synchronous; does not validate (see `checkCredential`).
 *
 * @example
 * applyPreset({ preset: 'google-service-account', clientAuth: {}, assertion: { keyFile } })
 * // → grant jwt_bearer, tokenUrl https://oauth2.googleapis.com/token, assertion.alg RS256 …
 */
export function applyPreset(config: CredentialConfig): CredentialConfig {
  const c: CredentialConfig = { ...config, clientAuth: { ...config.clientAuth }, ...(config.assertion ? { assertion: { ...config.assertion } } : {}) }
  const ca = c.clientAuth!
  const preset = presetOf(c.preset)
  if (preset) {
    c.grant ??= preset.grant
    fillDefaults(ca, preset.clientAuth)
    if (preset.assertion) fillDefaults((c.assertion ??= {}), preset.assertion)
    preset.fill?.(c)
  }
  c.grant ??= has(c.token) ? 'static' : 'client_credentials'
  if (!ca.method) {
    if (has(ca.privateKey) || has(ca.keyFile) || ca.keys) ca.method = 'private_key_jwt'
    else if (has(ca.secret)) ca.method = 'client_secret_basic'
    else if (c.tls?.cert) ca.method = 'tls_client_auth'
    else ca.method = 'none'
  }
  for (const s of [ca, c.assertion]) {
    if (!s) continue
    if (!s.headers) {
      const hs: KeyHeader[] = []
      if (s.kid || has(s.keyFile) || s.keys || jwkKidOf(s.privateKey)) hs.push('kid')
      if (s.certificate) hs.push('x5t#S256')
      if (s === ca && preset?.clientAuthHeaders) hs.push(...preset.clientAuthHeaders)
      s.headers = hs
    }
  }
  if ((ca.method === 'private_key_jwt') && !ca.alg) {
    const kf = parseGoogleKeyFile(ca.keyFile)
    ca.alg = kf ? 'RS256' : undefined
  }
  if (ca.method === 'client_secret_jwt') ca.alg = 'HS256'
  return c
}

/** Space-separated scope string as a sorted, de-duplicated list. */
export function scopeList(scope: string | string[] | undefined): string[] {
  if (scope === undefined) return []
  const items = Array.isArray(scope) ? scope.flatMap((s) => s.split(/\s+/)) : scope.split(/\s+/)
  return [...new Set(items.filter(Boolean))]
}

/**
 * Form parameters that Weir sets from dedicated fields. Allowing them in extraParams would send
 * credentials in two places (RFC 6749 §2.3) or a second grant, scope or target.
 */
const RESERVED_PARAMS: Record<string, string> = {
  client_id: 'use clientId',
  client_secret: 'use clientAuth.secret (client credentials go in exactly one place, RFC 6749 §2.3)',
  client_assertion: 'use clientAuth.privateKey (private_key_jwt) or clientAuth.secret (client_secret_jwt); the assertion is signed for each request',
  client_assertion_type: 'it follows from clientAuth.method',
  grant_type: 'use grant',
  scope: 'use scope',
  refresh_token: 'use refreshToken (or weir credentials import)',
  assertion: 'use assertion (assertion.privateKey, assertion.keyFile or assertion.value)',
  resource: 'use resource',
  audience: 'use audience',
}

/**
 * Provider rules and cross-field requirements a JSON Schema cannot express. Returns
 * `[pointer inside the credential, message]` pairs; empty when the credential is usable.
 * Applies the preset first, so the checks see the effective values.
 *
 * @example
 * checkCredential({ preset: 'epic-backend', clientId: 'c', tokenUrl, clientAuth: { alg: 'RS256', privateKey, kid: 'k' } })
 * // → [['/clientAuth/alg', 'epic-backend requires RS384 or ES384 (SMART Backend Services); got RS256']]
 */
export function checkCredential(config: CredentialConfig): Problem[] {
  const p: Problem[] = []
  const c = applyPreset(config)
  const ca = c.clientAuth ?? {}
  const a = c.assertion ?? {}
  const method = ca.method!
  if (c.grant === 'static') {
    if (!has(c.token)) p.push(['/token', 'the static grant requires token'])
    return p
  }
  if (!c.tokenUrl && !c.issuer) p.push(['', c.preset === 'azure-ad' ? 'azure-ad requires tenant (or tokenUrl)' : 'tokenUrl or issuer is required'])
  if (!c.clientId && !(c.grant === 'jwt_bearer' && method === 'none')) p.push(['/clientId', `clientId is required for client authentication ${method}`])
  if ((method === 'client_secret_basic' || method === 'client_secret_post' || method === 'client_secret_jwt') && !has(ca.secret)) {
    p.push(['/clientAuth/secret', `${method} requires clientAuth.secret`])
  }
  if (method === 'private_key_jwt') {
    if (!has(ca.privateKey) && !has(ca.keyFile) && !ca.keys) p.push(['/clientAuth/privateKey', 'private_key_jwt requires clientAuth.privateKey, clientAuth.keyFile or clientAuth.keys'])
    if (!ca.alg && !ca.keys) p.push(['/clientAuth/alg', 'private_key_jwt requires clientAuth.alg'])
  }
  if (method === 'tls_client_auth' && (!c.tls?.cert || !has(c.tls?.key))) p.push(['/tls', 'tls_client_auth requires tls.cert and tls.key'])
  if (method !== 'client_secret_basic' && method !== 'client_secret_post' && method !== 'client_secret_jwt' && has(ca.secret)) {
    p.push(['/clientAuth/secret', `clientAuth.secret is not used by ${method}; remove it (credentials go in exactly one place)`])
  }
  for (const [ptr, s] of [['/clientAuth', ca], ['/assertion', a]] as const) {
    const hs = s.headers ?? []
    if ((hs.includes('x5t') || hs.includes('x5t#S256') || hs.includes('x5c')) && !s.certificate) p.push([`${ptr}/certificate`, `headers ${hs.filter((h) => h.startsWith('x5')).join(', ')} require ${ptr.slice(1)}.certificate`])
    if (hs.includes('kid') && !s.kid && !has(s.keyFile) && !s.keys && !jwkKidOf(s.privateKey)) p.push([`${ptr}/kid`, `header kid requires ${ptr.slice(1)}.kid`])
    p.push(...keyListProblems(ptr, s, presetOf(c.preset)?.algs))
  }
  if (c.grant === 'jwt_bearer') {
    if (!has(a.value) && !has(a.privateKey) && !has(a.keyFile) && !a.keys) p.push(['/assertion', 'the jwt_bearer grant requires assertion.privateKey, assertion.keyFile or assertion.value'])
    if (!has(a.value) && !a.alg && !has(a.keyFile) && !a.keys) p.push(['/assertion/alg', 'the jwt_bearer grant requires assertion.alg'])
  }
  if (c.grant === 'refresh_token' && method === 'none' && !c.clientId) p.push(['/clientId', 'the refresh_token grant requires clientId'])
  p.push(...reservedKeyProblems('extraParams', c.extraParams, RESERVED_PARAMS))

  p.push(...authorizationProblems(c))
  const preset = presetOf(c.preset)
  if (preset) p.push(...presetProblems(c.preset!, preset, c))
  return p
}

/** Authorization-request parameters that Weir sets itself (RFC 6749 §4.1.1, RFC 7636 §4.3). */
const RESERVED_AUTHORIZATION_PARAMS: Record<string, string> = {
  response_type: 'it is always code', client_id: 'use clientId', redirect_uri: 'use redirectUri', scope: 'use scope', resource: 'use resource', audience: 'use audience',
  state: 'a fresh one is made for each request', code_challenge: 'PKCE is made for each request', code_challenge_method: 'it is always S256',
}

/** The consent-flow fields: only for the refresh_token grant, and no parameter Weir sets itself. */
function authorizationProblems(c: CredentialConfig): Problem[] {
  const p: Problem[] = []
  for (const field of ['authorizationUrl', 'redirectUri', 'authorizationParams'] as const) {
    if (c[field] !== undefined && c.grant !== 'refresh_token') p.push([`/${field}`, `${field} is for weir credentials authorize, which obtains a refresh token: it needs grant refresh_token; got ${c.grant}`])
  }
  return [...p, ...reservedKeyProblems('authorizationParams', c.authorizationParams, RESERVED_AUTHORIZATION_PARAMS)]
}

/** A problem for each key of `params` (under `/field`) that Weir sends itself, saying what to use instead. */
function reservedKeyProblems(field: string, params: Record<string, string> | undefined, reserved: Record<string, string>): Problem[] {
  return Object.keys(params ?? {}).flatMap((key): Problem[] => {
    const instead = Object.hasOwn(reserved, key) ? reserved[key] : undefined
    return instead ? [[`/${field}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`, `"${key}" is sent by Weir itself; ${instead}`]] : []
  })
}

/**
 * A key list (`keys`) is the whole key material of its block: no single key beside it, unique kids,
 * an algorithm for every key, and only the algorithms the preset's provider accepts.
 */
function keyListProblems(ptr: string, s: SigningConfig, presetAlgs: string[] | undefined): Problem[] {
  if (!s.keys) return []
  const p: Problem[] = []
  const single = (['privateKey', 'keyFile', 'kid', 'certificate'] as const).filter((k) => has(s[k]))
  if (single.length) p.push([`${ptr}/keys`, `keys replaces ${single.join(', ')}; keep one form (each key of the list has its own kid and privateKey)`])
  s.keys.forEach((k, i) => {
    const at = `${ptr}/keys/${i}`
    const first = s.keys!.findIndex((o) => o.kid === k.kid)
    if (first < i) p.push([`${at}/kid`, `kid "${k.kid}" is already used by ${ptr.slice(1)}.keys[${first}]`])
    const alg = k.alg ?? s.alg
    if (!alg) p.push([`${at}/alg`, `an algorithm is required (keys[${i}].alg or ${ptr.slice(1)}.alg)`])
    else if (presetAlgs?.length && !presetAlgs.includes(alg)) p.push([`${at}/alg`, `the provider accepts ${presetAlgs.join(' or ')}; got ${alg}`])
  })
  return p
}

/** Sets each of `defaults` that `target` leaves out. */
function fillDefaults<T extends object>(target: T, defaults: Partial<T> | undefined): void {
  for (const [k, v] of Object.entries(defaults ?? {})) (target as Record<string, unknown>)[k] ??= v
}

/** The rules of the credential's preset (PRESETS), on the effective config: grant, provider checks, scopes. */
function presetProblems(name: PresetName, preset: (typeof PRESETS)[PresetName], c: CredentialConfig): Problem[] {
  const p: Problem[] = []
  if (preset.grantRequired && c.grant !== preset.grant) p.push(['/grant', `${name} uses the ${preset.grant} grant; got ${c.grant}`])
  const scopes = scopeList(c.scope)
  p.push(...(preset.check?.(c, scopes) ?? []))
  if (preset.scopes) {
    const { pattern, expected } = preset.scopes
    scopes.forEach((s, i) => {
      if (!pattern.test(s)) p.push([`/scope${Array.isArray(c.scope) ? `/${i}` : ''}`, `${name} scopes are ${expected}; got "${s}"`])
    })
  }
  return p
}
