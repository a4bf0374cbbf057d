import { describe, expect, it } from 'vitest'
import { createAjv } from '../../shared/config/ajv.ts'
import { applyPreset, checkCredential, credentialSchema, explainTokenRequest, type CredentialConfig } from '../../shared/oauth/index.ts'
import { Secret } from '../../shared/secret.ts'
import { fixtures } from './_helpers.ts'
import { generateKeyPairSync } from 'node:crypto'

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
const validate = createAjv().compile(credentialSchema)

function undocumented(schema: unknown, path = ''): string[] {
  if (!schema || typeof schema !== 'object') return []
  const s = schema as Record<string, unknown>
  const out: string[] = []
  for (const [k, v] of Object.entries((s.properties as Record<string, unknown>) ?? {})) {
    if (!(v as { description?: string }).description) out.push(`${path}/${k}`)
    out.push(...undocumented(v, `${path}/${k}`))
  }
  for (const key of ['anyOf', 'oneOf']) for (const b of (s[key] as unknown[]) ?? []) out.push(...undocumented(b, path))
  if (s.items) out.push(...undocumented(s.items, `${path}/*`))
  return out
}

describe('credentialSchema', () => {
  it('compiles in ajv strict mode and documents every property', () => {
    expect(undocumented(credentialSchema)).toEqual([])
  })

  it.each([
    [{ tokenUrl: 'https://as.example/token', clientId: 'c', clientAuth: { secret: { $env: 'SECRET' } } }, true, ''],
    [{ preset: 'epic-backend', tokenUrl: 'https://fhir.epic.com/oauth2/token', clientId: 'c', clientAuth: { privateKey: { $file: 'k.pem' }, kid: 'k1' }, scope: ['system/Patient.rs'] }, true, ''],
    [{ tokenUrl: 'not a url' }, false, '/tokenUrl must match format "uri"'],
    [{ clientId: 'c', clientSecret: 'x' }, false, ' must NOT have additional properties'],
    [{ clientAuth: { method: 'client_secret_jwt_typo' } }, false, '/clientAuth/method must be equal to one of the allowed values'],
    [{ clientAuth: { alg: 'HS512' } }, false, '/clientAuth/alg must be equal to one of the allowed values'],
    [{ dpop: { alg: 'ES256' } }, true, ''],
  ])('%j → valid %s', (config, ok, firstError) => {
    const data = structuredClone(config)
    expect(validate(data)).toBe(ok)
    if (!ok) expect(`${validate.errors![0]!.instancePath} ${validate.errors![0]!.message}`).toBe(firstError)
    else expect(data).toMatchObject({ timeoutMs: 10_000, failFastMs: 30_000, clockSkewSec: 10, defaultExpiresInSec: 300 })
  })
})

const epic: CredentialConfig = { preset: 'epic-backend', tokenUrl: 'https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token', clientId: 'epic-client', clientAuth: { privateKey: new Secret(rsa), kid: 'k1' }, scope: 'system/Patient.rs system/Observation.read' }

describe('checkCredential and applyPreset', () => {
  it.each<[string, CredentialConfig, Array<[string, string]>]>([
    ['epic defaults are valid', epic, []],
    ['epic with RS256', { ...epic, clientAuth: { ...epic.clientAuth, alg: 'RS256' } }, [['/clientAuth/alg', 'epic-backend requires RS384 or ES384 (SMART Backend Services); got RS256']]],
    ['epic with a 10-minute assertion', { ...epic, clientAuth: { ...epic.clientAuth, assertionLifetimeSec: 600 } }, [['/clientAuth/assertionLifetimeSec', 'epic-backend: Epic rejects client assertions that expire more than 5 minutes ahead; got 600 s (at most 300)']]],
    ['epic without kid', { ...epic, clientAuth: { privateKey: new Secret(rsa) } }, [['/clientAuth/kid', 'epic-backend requires clientAuth.kid, the kid of the key in the JWKS registered with Epic']]],
    ['epic with a user scope', { ...epic, scope: ['user/Patient.read'] }, [['/scope/0', 'epic-backend scopes are system/<Resource>.read (v1) or system/<Resource>.rs (v2); got "user/Patient.read"']]],
    ['oracle with post', { preset: 'oracle-health', tokenUrl: 'https://authorization.cerner.com/tenants/t/protocols/oauth2/profiles/smart-v1/token', clientId: 'c', clientAuth: { method: 'client_secret_post', secret: 's' }, scope: 'system/Patient.read' }, [['/clientAuth/method', 'oracle-health system accounts use client_secret_basic; got client_secret_post']]],
    ['azure scope without .default', { preset: 'azure-ad', tenant: 'contoso.onmicrosoft.com', clientId: 'c', clientAuth: { secret: 's' }, scope: 'https://graph.microsoft.com/User.Read' }, [['/scope', 'azure-ad client_credentials takes exactly one scope ending in /.default (e.g. https://graph.microsoft.com/.default); got "https://graph.microsoft.com/User.Read"']]],
    ['azure certificate without certificate', { preset: 'azure-ad', tenant: 't', clientId: 'c', clientAuth: { privateKey: rsa }, scope: 'https://graph.microsoft.com/.default' }, [['/clientAuth/certificate', 'headers x5t#S256 require clientAuth.certificate'], ['/clientAuth/certificate', 'azure-ad certificate credentials require clientAuth.certificate (its thumbprint identifies the key)']]],
    ['google without key file', { preset: 'google-service-account', scope: 'https://www.googleapis.com/auth/cloud-platform' }, [['/assertion', 'the jwt_bearer grant requires assertion.privateKey, assertion.keyFile or assertion.value'], ['/assertion/keyFile', 'google-service-account requires assertion.keyFile (the service-account JSON key)']]],
    ['salesforce without username', { preset: 'salesforce-jwt-bearer', clientId: 'consumer-key', assertion: { privateKey: rsa } }, [['/assertion/sub', 'salesforce-jwt-bearer requires assertion.sub (the Salesforce username)']]],
    ['secret with private_key_jwt', { tokenUrl: 'https://a/t', clientId: 'c', clientAuth: { method: 'private_key_jwt', privateKey: rsa, alg: 'RS256', secret: 's' } }, [['/clientAuth/secret', 'clientAuth.secret is not used by private_key_jwt; remove it (credentials go in exactly one place)']]],
    ['no token URL', { clientId: 'c', clientAuth: { secret: 's' } }, [['', 'tokenUrl or issuer is required']]],
    ['static without token', { grant: 'static' }, [['/token', 'the static grant requires token']]],
  ])('%s', (_name, config, problems) => {
    expect(checkCredential(config)).toEqual(problems)
  })

  it('fills preset defaults', () => {
    // SMART Backend Services requires typ "JWT" in the assertion's header, beside alg and kid.
    expect(applyPreset(epic).clientAuth).toMatchObject({ method: 'private_key_jwt', alg: 'RS384', headers: ['kid', 'typ'] })
    expect(explainTokenRequest(epic).assertions[0]!.header).toEqual({ alg: 'RS384', kid: 'k1', typ: 'JWT' })
    expect(applyPreset({ preset: 'azure-ad', tenant: 'contoso', clientId: 'c', clientAuth: { privateKey: rsa, certificate: fixtures.clientCert } })).toMatchObject({
      grant: 'client_credentials', tokenUrl: 'https://login.microsoftonline.com/contoso/oauth2/v2.0/token', clientAuth: { method: 'private_key_jwt', alg: 'PS256', headers: ['x5t#S256'] },
    })
    expect(applyPreset({ preset: 'google-service-account', assertion: { keyFile: JSON.stringify({ client_email: 'a@b.iam', private_key_id: 'pk1', private_key: rsa }) } })).toMatchObject({
      grant: 'jwt_bearer', tokenUrl: 'https://oauth2.googleapis.com/token', clientId: 'a@b.iam', assertion: { alg: 'RS256', iss: 'a@b.iam', kid: 'pk1', scopeClaim: true, audience: 'https://oauth2.googleapis.com/token' },
    })
    expect(applyPreset({ preset: 'salesforce-jwt-bearer', clientId: 'ck', assertion: { sub: 'u@x' } })).toMatchObject({
      grant: 'jwt_bearer', tokenUrl: 'https://login.salesforce.com/services/oauth2/token', assertion: { iss: 'ck', audience: 'https://login.salesforce.com', lifetimeSec: 180 },
    })
  })
})

describe('extraParams', () => {
  const base: CredentialConfig = { tokenUrl: 'https://as.example/token', clientId: 'c', clientAuth: { secret: new Secret('s') } }
  it.each<[string, string]>([
    ['client_id', 'use clientId'],
    ['client_secret', 'use clientAuth.secret (client credentials go in exactly one place, RFC 6749 §2.3)'],
    ['client_assertion', 'use clientAuth.privateKey (private_key_jwt) or clientAuth.secret (client_secret_jwt); the assertion is signed for each request'],
    ['client_assertion_type', 'it follows from clientAuth.method'],
    ['grant_type', 'use grant'],
    ['scope', 'use scope'],
    ['refresh_token', 'use refreshToken (or weir credentials import)'],
    ['assertion', 'use assertion (assertion.privateKey, assertion.keyFile or assertion.value)'],
    ['resource', 'use resource'],
    ['audience', 'use audience'],
  ])('%s is reserved', (name, instead) => {
    expect(checkCredential({ ...base, extraParams: { tenant: 't1', [name]: 'x' } })).toEqual([[`/extraParams/${name}`, `"${name}" is sent by Weir itself; ${instead}`]])
  })

  it.each(['tenant', 'prompt', 'constructor', 'Client_Secret'])('%s is allowed', (name) => {
    expect(checkCredential({ ...base, extraParams: { [name]: 'x' } })).toEqual([])
  })
})

describe('explainTokenRequest', () => {
  it('shows the request with every credential redacted', () => {
    const x = explainTokenRequest({ tokenUrl: 'https://as.example/token', clientId: 'id with space', clientAuth: { secret: new Secret('very-secret-value') }, scope: ['a', 'b'], resource: 'https://api.example/', extraParams: { tenant: 't1' } })
    expect(x).toEqual({
      method: 'POST', url: 'https://as.example/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: 'Basic [REDACTED]' },
      form: { grant_type: 'client_credentials', scope: 'a b', resource: 'https://api.example/', tenant: 't1' },
      assertions: [],
    })
  })

  it('shows assertion header and claims for private_key_jwt, never the key', () => {
    const x = explainTokenRequest({ ...epic, clientAuth: { ...epic.clientAuth, certificate: fixtures.clientCert, headers: ['kid', 'x5t#S256'] } })
    expect(x.form).toMatchObject({ client_id: 'epic-client', client_assertion: '[REDACTED]', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' })
    expect(x.assertions[0]!.header).toMatchObject({ alg: 'RS384', kid: 'k1' })
    expect(typeof (x.assertions[0]!.header as Record<string, unknown>)['x5t#S256']).toBe('string')
    const c = x.assertions[0]!.claims as Record<string, number | string>
    expect([c.iss, c.sub, c.aud, (c.exp as number) - (c.iat as number)]).toEqual(['epic-client', 'epic-client', epic.tokenUrl, 300])
    expect(JSON.stringify(x)).not.toContain('PRIVATE KEY')
  })
})
