// checkCredentialKeys: the key material of a credential with its secrets resolved, parsed as weir run
// parses it, reported as [pointer, message] the way checkCredential reports.
import { describe, expect, it } from 'vitest'
import { generateKeyPairSync } from 'node:crypto'
import { Secret } from '../../shared/secret.ts'
import { checkCredentialKeys } from '../../shared/oauth/credential.ts'
import { resolveCredential, type CredentialConfig } from '../../shared/oauth/index.ts'

const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
const cred = (over: Record<string, unknown>) => ({ tokenUrl: 'https://as.example/token', clientId: 'c', ...over }) as CredentialConfig
const googleKey = (privateKey: string) => new Secret(JSON.stringify({ client_email: 'svc@p.iam.gserviceaccount.com', private_key_id: 'pk1', private_key: privateKey }))

describe('checkCredentialKeys', () => {
  it.each<[string, Record<string, unknown>, Array<[string, string]>]>([
    ['an algorithm the key cannot sign with', { clientAuth: { alg: 'RS384', kid: 'k', privateKey: new Secret(ecPem) } }, [['/clientAuth/alg', 'RS384 cannot be used with a ec key']]],
    ['a privateKey that is not a key', { clientAuth: { alg: 'ES256', privateKey: new Secret('not a key') } }, [['/clientAuth/privateKey', 'not a private key (expected PKCS#8 PEM or a private JWK)']]],
    ['a bad key of a list, by its index', { clientAuth: { alg: 'ES256', keys: [{ kid: 'a', privateKey: new Secret(ecPem) }, { kid: 'b', privateKey: new Secret('nope') }] } }, [['/clientAuth/keys/1/privateKey', 'not a private key (expected PKCS#8 PEM or a private JWK)']]],
    ['a Google key file that is not JSON', { preset: 'google-service-account', assertion: { keyFile: new Secret('client_email = x') } }, [['/assertion/keyFile', 'not a service-account JSON key with private_key (give the key\'s JSON, e.g. {"$file": "key.json"})']]],
    ['a Google key file whose private_key is corrupt: the keyFile setting', { preset: 'google-service-account', assertion: { keyFile: googleKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n') } }, [['/assertion/keyFile', 'the key file\'s private_key: not a private key (expected PKCS#8 PEM or a private JWK)']]],
    ['a good key', { clientAuth: { alg: 'ES256', privateKey: new Secret(ecPem) } }, []],
    ['a key still a $file reference (before secrets are resolved): skipped', { clientAuth: { alg: 'RS384', privateKey: { $file: 'x.pem' } } }, []],
  ])('%s', (_n, over, problems) => {
    expect(checkCredentialKeys(cred(over))).toEqual(problems)
  })

  it('weir run names the Google keyFile setting too', () => {
    const e = (() => { try { resolveCredential('g', cred({ preset: 'google-service-account', assertion: { keyFile: googleKey('garbage') } })) } catch (x) { return x as Error } })()
    expect(e?.message).toBe('credential "g" #/assertion/keyFile: the key file\'s private_key: not a private key (expected PKCS#8 PEM or a private JWK)')
  })
})
