import { createHash, createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { SignJWT, calculateJwkThumbprint, exportJWK, type JWK } from 'jose'
import { errorCodes } from '../errors.ts'
import { reveal, revealPinned, registerSecretValue } from '../secret.ts'
import type { KeyHeader, SigningAlg, SigningConfig } from './config.ts'
import { jwkKidOf, parseGoogleKeyFile } from './presets.ts'

/** A loaded signing key with the header values derived from its configuration. */
export interface SigningKey {
  alg: SigningAlg
  key: KeyObject | Uint8Array
  kid?: string
  /** Issuer from a Google key file (client_email). */
  keyFileIssuer?: string
  headers: Record<string, unknown>
  /** Epoch ms from which the key signs (a rotating key list); without it, from the start. */
  signFrom?: number
}

const ALG_KEY_TYPES: Record<string, string[]> = {
  RS256: ['rsa'], RS384: ['rsa'], PS256: ['rsa', 'rsa-pss'], ES256: ['ec'], ES384: ['ec'], EdDSA: ['ed25519', 'ed448'],
}
const ALG_CURVES: Record<string, string> = { ES256: 'prime256v1', ES384: 'secp384r1' }

/** Parses a PEM (PKCS#8, PKCS#1, SEC1) or private JWK (JSON) into a node KeyObject. Never echoes the key. */
export function parsePrivateKey(text: string, where: string): KeyObject {
  try {
    const t = text.trim()
    if (t.startsWith('{')) return createPrivateKey({ key: JSON.parse(t) as Record<string, unknown> as never, format: 'jwk' })
    return createPrivateKey(t.replace(/\\n/g, '\n'))
  } catch {
    throw new errorCodes.ERR_CONFIG_INVALID(`${where}: not a private key (expected PKCS#8 PEM or a private JWK)`)
  }
}

function certificateDer(pem: string, where: string): Buffer {
  try {
    return new X509Certificate(pem).raw
  } catch {
    throw new errorCodes.ERR_CONFIG_INVALID(`${where}/certificate: not a PEM certificate`)
  }
}

/** base64url SHA-256 thumbprint of a PEM certificate (x5t#S256, RFC 8705 cnf). */
export function certificateThumbprint(pem: string, hash: 'sha1' | 'sha256' = 'sha256'): string {
  return createHash(hash).update(certificateDer(pem, 'certificate')).digest('base64url')
}

/** Reads the key file a library caller named by path; the error names neither the path nor the content (either may be a key given in the wrong place). */
function readKeyFile(path: string, where: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    throw new errorCodes.ERR_CONFIG_INVALID(`${where}/keyFile: the key file cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

/**
 * Loads the key of a client assertion or jwt-bearer assertion and computes its headers.
 * `secret` is used for HS256 (client_secret_jwt).
 */
export function loadSigningKey(cfg: SigningConfig, where: string, secret?: string): SigningKey {
  const alg = cfg.alg ?? (cfg.keyFile ? 'RS256' : undefined)
  if (!alg) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/alg: an algorithm is required`)
  let key: KeyObject | Uint8Array
  let kid = cfg.kid
  let keyFileIssuer: string | undefined
  if (alg === 'HS256') {
    if (!secret) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/secret: client_secret_jwt requires a secret`)
    key = new TextEncoder().encode(secret)
  } else {
    let pem = revealPinned(cfg.privateKey)
    let keyAt = `${where}/privateKey`
    if (pem === undefined && cfg.keyFile !== undefined) {
      const kf = parseGoogleKeyFile(cfg.keyFile, (p) => readKeyFile(p, where))
      if (!kf?.private_key) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/keyFile: not a service-account JSON key with private_key (give the key's JSON, e.g. {"$file": "key.json"})`)
      registerSecretValue(kf.private_key, { pinned: true })
      pem = kf.private_key
      kid ??= kf.private_key_id
      keyFileIssuer = kf.client_email
      keyAt = `${where}/keyFile: the key file's private_key`
    }
    if (pem === undefined) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/privateKey: a private key is required`)
    const ko = parsePrivateKey(pem, keyAt)
    // A key named by nothing else goes by its JWK's own kid. Without one the assertion names no key
    // (as a provider that registered the key without a kid expects); `weir keys rotate` needs a kid.
    kid ??= jwkKidOf(pem)
    const type = ko.asymmetricKeyType ?? ''
    if (!ALG_KEY_TYPES[alg]?.includes(type)) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/alg: ${alg} cannot be used with a ${type} key`)
    const curve = ALG_CURVES[alg]
    if (curve && ko.asymmetricKeyDetails?.namedCurve !== curve) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/alg: ${alg} requires curve ${curve === 'prime256v1' ? 'P-256' : 'P-384'}; the key is on ${ko.asymmetricKeyDetails?.namedCurve}`)
    key = ko
  }
  const wanted: KeyHeader[] = cfg.headers ?? (kid ? ['kid'] : [])
  const headers: Record<string, unknown> = {}
  for (const h of wanted) {
    if (h === 'kid') {
      if (!kid) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/kid: header kid requires a kid`)
      headers.kid = kid
    } else if (h === 'typ') headers.typ = 'JWT'
    else {
      if (!cfg.certificate) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/certificate: header ${h} requires a certificate`)
      const der = certificateDer(cfg.certificate, where)
      if (h === 'x5t') headers.x5t = createHash('sha1').update(der).digest('base64url')
      else if (h === 'x5t#S256') headers['x5t#S256'] = createHash('sha256').update(der).digest('base64url')
      else headers.x5c = [der.toString('base64')]
    }
  }
  const out: SigningKey = { alg, key, headers }
  if (kid) out.kid = kid
  if (keyFileIssuer) out.keyFileIssuer = keyFileIssuer
  return out
}

/**
 * The keys of a signing block: each entry of `keys` (sorted by `signFrom`, earliest first), or the
 * single configured key. Errors name the entry (`<where>/keys/1/privateKey`).
 */
export function loadSigningKeys(cfg: SigningConfig, where: string, secret?: string): SigningKey[] {
  if (!cfg.keys) return [loadSigningKey(cfg, where, secret)]
  const keys = cfg.keys.map((e, i) => {
    const key = loadSigningKey({ privateKey: e.privateKey, kid: e.kid, ...(e.alg ?? cfg.alg ? { alg: e.alg ?? cfg.alg } : {}), ...(cfg.headers ? { headers: cfg.headers } : {}) }, `${where}/keys/${i}`)
    if (e.signFrom !== undefined) key.signFrom = Date.parse(e.signFrom)
    return key
  })
  return keys.sort((a, b) => (a.signFrom ?? -Infinity) - (b.signFrom ?? -Infinity))
}

/**
 * The key that signs at `nowMs`: of the keys whose `signFrom` has come, the one with the latest
 * (`keys` sorted as `loadSigningKeys` returns them). Throws when no key signs yet.
 */
export function signingKeyAt(keys: readonly SigningKey[], nowMs: number, where: string): SigningKey {
  let current: SigningKey | undefined
  for (const k of keys) if ((k.signFrom ?? -Infinity) <= nowMs) current = k
  if (!current) throw new errorCodes.ERR_CONFIG_INVALID(`${where}: no key signs yet; the earliest signFrom is ${new Date(keys[0]?.signFrom ?? NaN).toISOString()}`)
  return current
}

/** Signs `claims` with `key` (jose SignJWT); registers the result as a secret value. */
export async function signJwt(key: SigningKey, claims: Record<string, unknown>, extraHeader: Record<string, unknown> = {}): Promise<string> {
  const jwt = await new SignJWT(claims).setProtectedHeader({ ...key.headers, ...extraHeader, alg: key.alg }).sign(key.key)
  registerSecretValue(jwt)
  return jwt
}

/** The members of a public JWK per key type (RFC 7518 §6.2.1, §6.3.1; RFC 8037 §2): nothing else is ever copied. */
const PUBLIC_MEMBERS: Record<string, Array<keyof JWK>> = { RSA: ['kty', 'n', 'e'], EC: ['kty', 'crv', 'x', 'y'], OKP: ['kty', 'crv', 'x'] }

/**
 * Public JWK of a private key, with alg, use and kid (the RFC 7638 thumbprint when none is given),
 * for a JWK Set registered with or served to a provider. Only the public members of the key type
 * are copied, so no private member (`d`, `p`, `q`…) can appear.
 */
export async function publicJwk(privateKey: KeyObject, alg: string, kid?: string): Promise<JWK> {
  const full = await exportJWK(createPublicKey(privateKey))
  const jwk: JWK = {}
  for (const m of PUBLIC_MEMBERS[full.kty ?? ''] ?? []) if (full[m] !== undefined) (jwk as Record<string, unknown>)[m] = full[m]
  return { ...jwk, alg, use: 'sig', kid: kid ?? (await calculateJwkThumbprint(jwk)) }
}

/** The public JWK Set of `keys`, in their order; secret (HS256) keys are left out. */
export async function publicJwkSet(keys: readonly SigningKey[]): Promise<{ keys: JWK[] }> {
  const asymmetric = keys.filter((k): k is SigningKey & { key: KeyObject } => !(k.key instanceof Uint8Array))
  return { keys: await Promise.all(asymmetric.map((k) => publicJwk(k.key, k.alg, k.kid))) }
}
