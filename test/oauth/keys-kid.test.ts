// Which kid an assertion carries: the configured one, else a private JWK's own, else none (the JWK
// Set still publishes such a key, under its RFC 7638 thumbprint).
import { describe, expect, it } from 'vitest'
import { generateKeyPairSync } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK } from 'jose'
import { Secret } from '../../shared/secret.ts'
import { explainTokenRequest, publicJwkSet, resolveCredential, signingKeysOf, type CredentialConfig } from '../../shared/oauth/index.ts'

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const pem = ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()

const credential = (clientAuth: Record<string, unknown>): CredentialConfig => ({ tokenUrl: 'https://as.example/token', clientId: 'c', clientAuth: { method: 'private_key_jwt', alg: 'ES256', ...clientAuth } } as CredentialConfig)

/** The client assertion's header as explain shows it, and the kids the credential's JWK Set publishes. */
async function headerAndJwks(c: CredentialConfig): Promise<{ header: Record<string, unknown>; published: Array<string | undefined> }> {
  const header = explainTokenRequest(c, 'k').assertions[0]!.header as Record<string, unknown>
  const jwks = await publicJwkSet(signingKeysOf(resolveCredential('k', c)))
  return { header, published: jwks.keys.map((k) => k.kid) }
}

describe('the kid of a signing key', () => {
  it('a private JWK\'s own kid is used when the configuration names none', async () => {
    const jwk = { ...(await exportJWK(ec.privateKey)), kid: 'jwk1' }
    const r = await headerAndJwks(credential({ privateKey: new Secret(JSON.stringify(jwk)) }))
    expect(r).toEqual({ header: { kid: 'jwk1', alg: 'ES256' }, published: ['jwk1'] })
  })

  it('the configured kid wins over the JWK\'s', async () => {
    const jwk = { ...(await exportJWK(ec.privateKey)), kid: 'jwk1' }
    expect((await headerAndJwks(credential({ privateKey: new Secret(JSON.stringify(jwk)), kid: 'configured' }))).header).toEqual({ kid: 'configured', alg: 'ES256' })
  })

  it('a key without any kid signs with no kid, as before; the JWK Set publishes it under its thumbprint', async () => {
    const thumbprint = await calculateJwkThumbprint(await exportJWK(ec.publicKey))
    const r = await headerAndJwks(credential({ privateKey: new Secret(pem) }))
    expect(r).toEqual({ header: { alg: 'ES256' }, published: [thumbprint] })
  })

  it('headers configured without kid send none, and the set still publishes the thumbprint', async () => {
    const thumbprint = await calculateJwkThumbprint(await exportJWK(ec.publicKey))
    const r = await headerAndJwks(credential({ privateKey: new Secret(pem), headers: ['typ'] }))
    expect(r).toEqual({ header: { typ: 'JWT', alg: 'ES256' }, published: [thumbprint] })
  })
})
