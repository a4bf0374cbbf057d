import { createHash, createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { SignJWT, exportJWK, type JWK } from 'jose'
import { errorCodes } from '../errors.ts'
import { reveal, registerSecretValue } from '../secret.ts'
import type { KeyHeader, SigningAlg, SigningConfig } from './config.ts'
import { parseGoogleKeyFile } from './presets.ts'

/** A loaded signing key with the header values derived from its configuration. */
export interface SigningKey {
  alg: SigningAlg
  key: KeyObject | Uint8Array
  kid?: string
  /** Issuer from a Google key file (client_email). */
  keyFileIssuer?: string
  headers: Record<string, unknown>
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
    let pem = reveal(cfg.privateKey)
    if (pem === undefined && cfg.keyFile !== undefined) {
      const kf = parseGoogleKeyFile(cfg.keyFile, (p) => readFileSync(p, 'utf8'))
      if (!kf?.private_key) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/keyFile: not a service-account JSON key with private_key`)
      registerSecretValue(kf.private_key, { pinned: true })
      pem = kf.private_key
      kid ??= kf.private_key_id
      keyFileIssuer = kf.client_email
    }
    if (pem === undefined) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/privateKey: a private key is required`)
    const ko = parsePrivateKey(pem, `${where}/privateKey`)
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

/** Signs `claims` with `key` (jose SignJWT); registers the result as a secret value. */
export async function signJwt(key: SigningKey, claims: Record<string, unknown>, extraHeader: Record<string, unknown> = {}): Promise<string> {
  const jwt = await new SignJWT(claims).setProtectedHeader({ ...key.headers, ...extraHeader, alg: key.alg }).sign(key.key)
  registerSecretValue(jwt)
  return jwt
}

/** Public JWK of a private key, with alg, use and kid, for a JWKS registered with a provider. */
export async function publicJwk(privateKey: KeyObject, alg: string, kid?: string): Promise<JWK> {
  const jwk = await exportJWK(createPublicKey(privateKey))
  return { ...jwk, alg, use: 'sig', ...(kid ? { kid } : {}) }
}
