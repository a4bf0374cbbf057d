import { createHash, randomUUID } from 'node:crypto'
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, type CryptoKey } from 'jose'

export type DpopAlg = 'ES256' | 'ES384' | 'RS256' | 'PS256' | 'EdDSA'

/**
 * A DPoP key pair of one credential, and the nonces servers sent (RFC 9449 §8), cached per origin.
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-4
 */
export class DpopSigner {
  readonly alg: DpopAlg
  #keys?: Promise<{ privateKey: CryptoKey; jwk: JWK; jkt: string }>
  readonly #nonces = new Map<string, string>()

  constructor(alg: DpopAlg = 'ES256') {
    this.alg = alg
  }

  #init() {
    this.#keys ??= (async () => {
      const { privateKey, publicKey } = await generateKeyPair(this.alg, { extractable: false })
      const jwk = await exportJWK(publicKey)
      return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) }
    })()
    return this.#keys
  }

  /** JWK SHA-256 thumbprint of the public key (the `cnf.jkt` of bound tokens). */
  async thumbprint(): Promise<string> {
    return (await this.#init()).jkt
  }

  nonceFor(url: string | URL): string | undefined {
    return this.#nonces.get(new URL(url).origin)
  }

  /** Remembers a `DPoP-Nonce` response header for the origin of `url`. */
  noteNonce(url: string | URL, nonce: string | string[] | null | undefined): void {
    const v = Array.isArray(nonce) ? nonce[0] : nonce
    if (v) this.#nonces.set(new URL(url).origin, v)
  }

  /** A proof JWT for one request; `accessToken` adds `ath`. */
  async proof(method: string, url: string | URL, accessToken?: string, now = Date.now()): Promise<string> {
    const { privateKey, jwk } = await this.#init()
    const u = new URL(url)
    const htu = `${u.origin}${u.pathname}`
    const claims: Record<string, unknown> = { htm: method.toUpperCase(), htu, iat: Math.floor(now / 1000), jti: randomUUID() }
    const nonce = this.#nonces.get(u.origin)
    if (nonce) claims.nonce = nonce
    if (accessToken) claims.ath = createHash('sha256').update(accessToken).digest('base64url')
    // Not registered with the log scrubber: one proof per request would grow its list without bound;
    // proofs are single-use (jti) and the logger redacts the DPoP header by key.
    return new SignJWT(claims).setProtectedHeader({ alg: this.alg, typ: 'dpop+jwt', jwk }).sign(privateKey)
  }
}
