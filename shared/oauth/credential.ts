import { createHash, createPublicKey } from 'node:crypto'
import { errorCodes } from '../errors.ts'
import { reveal, revealPinned, REDACTED } from '../secret.ts'
import { applyPreset, checkCredential, scopeList, type CredentialConfig, type GrantName, type SigningConfig } from './config.ts'
import { loadSigningKey, loadSigningKeys, type SigningKey } from './keys.ts'
import { has, isUnresolvedRef, type Problem } from './presets.ts'
import { JWT_BEARER_GRANT, planTokenRequest, redactPlan, type ResolvedCredential } from './token-endpoint.ts'

/** Loads keys and secrets of an (already validated) credential; throws ERR_CONFIG_INVALID naming the first problem. */
export function resolveCredential(name: string, input: CredentialConfig): ResolvedCredential {
  const problems = checkCredential(input)
  if (problems.length) throw new errorCodes.ERR_CONFIG_INVALID(`credential "${name}": ${problems.map(([p, m]) => `#${p}: ${m}`).join('; ')}`)
  const c = applyPreset(input)
  const ca = c.clientAuth ?? {}
  const secret = revealPinned(ca.secret)
  const r: ResolvedCredential = {
    name,
    grant: c.grant!,
    method: ca.method!,
    basicEncoding: ca.basicEncoding ?? 'strict',
    clientAudience: ca.audience ?? 'token-endpoint',
    assertionLifetimeSec: ca.assertionLifetimeSec ?? 300,
    scopes: scopeList(c.scope),
    resources: c.resource === undefined ? [] : Array.isArray(c.resource) ? [...c.resource] : [c.resource],
    extraParams: { ...c.extraParams },
    timeoutMs: c.timeoutMs ?? 10_000,
    defaultExpiresInSec: c.defaultExpiresInSec ?? 300,
    clockSkewSec: c.clockSkewSec ?? 10,
    failFastMs: c.failFastMs ?? 30_000,
    maxAttempts: c.maxAttempts ?? 4,
  }
  if (c.tokenUrl) r.tokenUrl = c.tokenUrl
  if (c.issuer) r.issuer = c.issuer
  if (c.clientId) r.clientId = c.clientId
  if (c.audience) r.audience = c.audience
  if (secret !== undefined) r.secret = secret
  if (r.method === 'client_secret_jwt') r.clientKeys = [loadSigningKey({ ...ca, alg: 'HS256' }, `credential "${name}" #/clientAuth`, secret)]
  if (r.method === 'private_key_jwt') {
    r.clientKeys = loadSigningKeys(ca, `credential "${name}" #/clientAuth`)
    if (!r.clientId && r.clientKeys[0]!.keyFileIssuer) r.clientId = r.clientKeys[0]!.keyFileIssuer
  }
  if (c.grant === 'jwt_bearer') {
    const a = c.assertion ?? {}
    const value = revealPinned(a.value)
    r.assertion = {
      audience: a.audience ?? 'token-endpoint',
      lifetimeSec: a.lifetimeSec ?? 300,
      scopeClaim: a.scopeClaim ?? false,
      claims: { ...a.claims },
      ...(value !== undefined ? { value } : { keys: loadSigningKeys(a, `credential "${name}" #/assertion`) }),
      ...(a.iss ? { iss: a.iss } : {}),
      ...(a.sub ? { sub: a.sub } : {}),
    }
    if (!r.clientId && r.assertion.keys?.[0]?.keyFileIssuer) r.clientId = r.assertion.keys[0].keyFileIssuer
  }
  return r
}

/** The key values of a signing block: its single key and key file, and each listed key. */
const keyValuesOf = (s: SigningConfig) => [s.privateKey, s.keyFile, ...(s.keys ?? []).map((k) => k.privateKey)]

/**
 * The key material of a credential whose secrets are resolved, parsed as `weir run` parses it (no
 * network): a key that is not a key, a Google key file that is not its JSON, an algorithm the key
 * cannot sign with. Returns `[pointer inside the credential, message]` pairs as `checkCredential`
 * does; a block whose keys are still `$file`/`$env` references (not resolved yet) is skipped.
 *
 * @example
 * checkCredentialKeys({ tokenUrl, clientId: 'c', clientAuth: { alg: 'RS384', privateKey: new Secret(ecPem) } })
 * // → [['/clientAuth/alg', 'RS384 cannot be used with a ec key']]
 */
export function checkCredentialKeys(input: CredentialConfig): Problem[] {
  const c = applyPreset(input)
  const blocks: Array<[string, SigningConfig | undefined, boolean]> = [
    ['/clientAuth', c.clientAuth, c.clientAuth?.method === 'private_key_jwt'],
    ['/assertion', c.assertion, c.grant === 'jwt_bearer' && !has(c.assertion?.value)],
  ]
  const problems: Problem[] = []
  for (const [ptr, block, signs] of blocks) {
    if (!block || !signs || keyValuesOf(block).some(isUnresolvedRef)) continue
    try {
      loadSigningKeys(block, ptr)
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_CONFIG_INVALID') throw e
      const message = (e as Error).message
      const at = message.indexOf(': ')
      problems.push(at > 0 ? [message.slice(0, at), message.slice(at + 2)] : [ptr, message])
    }
  }
  return problems
}

/** `[name, value]` pairs of an object, by name: two configs that list the same fields in another order are one. */
const sortedEntries = (o: Record<string, unknown>) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

/** A SHA-256 fingerprint of a secret value: tells two values apart in a cache key without holding either. */
const fingerprint = (value: string) => createHash('sha256').update(value).digest('base64url')

/**
 * Cache key of a credential: everything that makes its tokens differ. The token endpoint, client,
 * grant, auth method, sorted scopes, resources, audience, extra token-request parameters (a tenant,
 * an account), the assertion's issuer, subject, extra claims or fixed value; a static token's own
 * value (by fingerprint: two static credentials must never share a token); and what a token can be
 * bound to: the DPoP algorithm (the key pair itself lives on the slot, so providers sharing a slot
 * share it) and the SHA-256 thumbprint of the client certificate (RFC 8705 certificate-bound tokens
 * only work with that certificate, so two certificates must never share a token).
 */
export function cacheKeyOf(r: ResolvedCredential, storeKey: string, dpopAlg: string | undefined, certThumbprint?: string, staticToken?: string): string {
  const a = r.assertion
  return JSON.stringify([
    r.tokenUrl ?? r.issuer, r.clientId, r.grant, r.method, [...r.scopes].sort(), [...r.resources].sort(), r.audience ?? null,
    a?.iss ?? a?.keys?.[0]?.keyFileIssuer ?? null, a?.sub ?? null, r.grant === 'refresh_token' ? storeKey : null,
    dpopAlg ?? null, certThumbprint ?? null, sortedEntries(r.extraParams),
    a ? [sortedEntries(a.claims), a.value !== undefined ? fingerprint(a.value) : null] : null,
    staticToken !== undefined ? fingerprint(staticToken) : null,
  ])
}

/** A SHA-256 fingerprint of a signing key: its public part (SPKI) for a key pair, the bytes of a symmetric one. */
function keyFingerprint(k: SigningKey): string {
  const material = k.key instanceof Uint8Array ? Buffer.from(k.key) : (k.key.type === 'secret' ? k.key.export() : createPublicKey(k.key).export({ type: 'spki', format: 'der' }))
  return createHash('sha256').update(material).digest('base64url')
}

/**
 * A fingerprint of how the client proves who it is: its secret, its client-assertion keys and the
 * JWT bearer assertion's keys. Part of the key of the token slot in a process (two credentials of
 * one client configured with different secrets, as midway through a secret rotation, each fetch
 * and fail on their own: a wrong secret never reuses the right one's token, nor makes it fail
 * fast), never of anything stored.
 */
export function clientProofOf(r: ResolvedCredential): string {
  const parts = [r.secret ?? null, (r.clientKeys ?? []).map(keyFingerprint), (r.assertion?.keys ?? []).map(keyFingerprint)]
  return fingerprint(JSON.stringify(parts))
}

/**
 * What an access token is good for, as a fingerprint: the client, scopes, resources, audience and
 * extra parameters it was asked with, and the certificate it is bound to. Credentials that share
 * one refresh token (one storeKey) use an access token another stored only when these match: a
 * token minted for one resource must never reach another's API. The token endpoint's URL is left
 * out: the same server reached another way issues the same token.
 */
export function tokenPurposeOf(r: ResolvedCredential, certThumbprint?: string): string {
  return fingerprint(JSON.stringify([r.clientId ?? null, [...r.scopes].sort(), [...r.resources].sort(), r.audience ?? null, sortedEntries(r.extraParams), certThumbprint ?? null]))
}

/**
 * The grant parameters of a token request (RFC 6749 §4.4.2, §6; RFC 7523 §2.1): the assertion
 * itself is added by `planTokenRequest`, the refresh token is the stored one. None for a static token.
 */
export function grantParams(grant: GrantName, refreshToken = ''): Array<[string, string]> {
  switch (grant) {
    case 'static': return []
    case 'client_credentials': return [['grant_type', 'client_credentials']]
    case 'jwt_bearer': return [['grant_type', JWT_BEARER_GRANT]]
    case 'refresh_token': return [['grant_type', 'refresh_token'], ['refresh_token', refreshToken]]
  }
}

/**
 * The redacted token request a credential would send (method, URL, headers, form fields with
 * secrets as [REDACTED], assertion header and claims), without sending it.
 *
 * @example
 * explainTokenRequest({ tokenUrl, clientId: 'c', clientAuth: { secret: 's3cret' } })
 * // → { method: 'POST', url, headers: { authorization: 'Basic [REDACTED]', … }, form: { grant_type: 'client_credentials' } }
 */
export function explainTokenRequest(config: CredentialConfig, name = 'credential', nowMs = Date.now()): ReturnType<typeof redactPlan> {
  if (applyPreset(config).grant === 'static') return { method: 'NONE', url: '', headers: { authorization: `${config.tokenType ?? 'Bearer'} [REDACTED]` }, form: {}, assertions: [] }
  const r = resolveCredential(name, config)
  const url = r.tokenUrl ?? `(discovered from ${r.issuer})`
  return redactPlan(planTokenRequest(r, url, grantParams(r.grant, REDACTED), nowMs))
}


/** Every key a credential signs with, client assertion keys first: what its public JWK Set publishes. */
export function signingKeysOf(r: ResolvedCredential): SigningKey[] {
  return [...(r.clientKeys ?? []), ...(r.assertion?.keys ?? [])]
}
