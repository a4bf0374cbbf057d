import { createHash } from 'node:crypto'
import { calculateJwkThumbprint, compactVerify, createLocalJWKSet, decodeJwt, decodeProtectedHeader, importJWK, jwtVerify, type JWK, type JWTPayload } from 'jose'
import { ASYMMETRIC, AccessDenied, OAuthFailure, allowedAlgs, asKeySet, everyTenant, type ServerState, type Tenant } from './state.ts'
import type { RegisteredClient, VerifiedAccess } from './types.ts'

/** The keys at a client's jwks_uri (cached; refetched on an unknown kid); a failed fetch refuses the assertion. */
async function remoteKeys(st: ServerState, uri: string, kid: unknown, fail: (d: string) => OAuthFailure): Promise<JWK[]> {
  try {
    return await st.remoteJwks.keys(uri, typeof kid === 'string' ? kid : undefined)
  } catch (e) {
    throw fail(`jwks_uri: ${(e as Error).message}`)
  }
}

/** Verifies a client assertion or jwt-bearer assertion sent to `tenant`'s token endpoint; returns its claims. */
export async function verifyAssertion(st: ServerState, tenant: Tenant, jwt: string, client: RegisteredClient, expected: { iss: string; sub?: string; what: string; error: string }): Promise<JWTPayload> {
  const fail = (d: string) => new OAuthFailure(expected.error === 'invalid_client' ? 401 : 400, expected.error, `${expected.what}: ${d}`)
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(jwt)
  } catch {
    throw fail('not a JWS')
  }
  const alg = String(header.alg)
  if (!allowedAlgs(client).includes(alg)) throw fail(`alg ${alg} not allowed for this client`)
  try {
    if (alg === 'HS256') {
      if (!client.secret) throw fail('client has no secret for HS256')
      await compactVerify(jwt, new TextEncoder().encode(client.secret), { algorithms: ['HS256'] })
    } else {
      const set = client.jwksUri ? { keys: await remoteKeys(st, client.jwksUri, header.kid, fail) } : asKeySet(client.jwks)
      if (header.kid !== undefined && !set.keys.some((k) => k.kid === header.kid)) throw fail(`no registered key with kid ${JSON.stringify(header.kid)}`)
      await compactVerify(jwt, createLocalJWKSet(set), { algorithms: [alg] })
    }
  } catch (e) {
    if (e instanceof OAuthFailure) throw e
    throw fail(`signature verification failed (${(e as { code?: string }).code ?? 'error'})`)
  }
  const c = decodeJwt(jwt)
  const t = st.now()
  if (c.iss !== expected.iss) throw fail(`iss must be ${expected.what === 'client assertion' ? 'the client_id' : JSON.stringify(expected.iss)}`)
  if (expected.sub !== undefined && c.sub !== expected.sub) throw fail('sub must be the client_id')
  if (typeof c.sub !== 'string') throw fail('sub is required')
  const auds = Array.isArray(c.aud) ? c.aud : c.aud === undefined ? [] : [c.aud]
  const accepted = client.assertionAudiences ?? (client.acceptIssuerAudience ? [tenant.tokenUrl, tenant.issuer] : [tenant.tokenUrl])
  if (!auds.some((a) => accepted.includes(a))) throw fail(client.assertionAudiences ? `aud must be one of ${accepted.join(', ')}` : 'aud must be the token endpoint')
  if (typeof c.exp !== 'number') throw fail('exp is required')
  const max = client.maxAssertionLifetimeSec ?? 300
  if (c.exp * 1000 < t - st.toleranceMs) throw fail('assertion expired')
  if (c.exp * 1000 - t > max * 1000 + st.toleranceMs) throw fail(`exp more than ${max} s ahead`)
  if (typeof c.iat === 'number' && c.iat * 1000 > t + st.toleranceMs) throw fail('iat is in the future')
  if (typeof c.nbf === 'number' && c.nbf * 1000 > t + st.toleranceMs) throw fail('nbf is in the future')
  if (typeof c.jti !== 'string' || c.jti === '') {
    if (expected.what === 'client assertion') throw fail('jti is required')
  } else if (!st.assertionJti.remember(JSON.stringify([tenant.name ?? null, client.clientId, c.jti]), c.exp * 1000 + st.toleranceMs)) throw fail('jti reused')
  return c
}

/** Verifies a DPoP proof (RFC 9449 §4.3) for `htm` and `htu`; returns the JWK thumbprint of its key. */
export async function verifyDpopProof(st: ServerState, proof: string, htm: string, htu: string, opts: { nonce: boolean; accessToken?: string; jkt?: string }, errorCode: string): Promise<string> {
  const fail = (d: string) => new OAuthFailure(errorCode === 'invalid_dpop_proof' ? 400 : 401, errorCode, d)
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(proof)
  } catch {
    throw fail('DPoP proof is not a JWS')
  }
  if (header.typ !== 'dpop+jwt') throw fail('DPoP proof typ must be dpop+jwt')
  if (!ASYMMETRIC.includes(String(header.alg))) throw fail(`DPoP proof alg ${String(header.alg)} not allowed`)
  const jwk = header.jwk as JWK | undefined
  if (!jwk || 'd' in jwk) throw fail('DPoP proof must carry a public jwk')
  try {
    await compactVerify(proof, await importJWK(jwk, String(header.alg)), { algorithms: [String(header.alg)] })
  } catch {
    throw fail('DPoP proof signature verification failed')
  }
  const c = decodeJwt(proof)
  const u = new URL(htu)
  if (c.htm !== htm) throw fail(`DPoP proof htm must be ${htm}`)
  if (c.htu !== `${u.origin}${u.pathname}`) throw fail('DPoP proof htu does not match the request URL')
  if (typeof c.iat !== 'number' || Math.abs(c.iat * 1000 - st.now()) > Math.max(st.toleranceMs, 60_000)) throw fail('DPoP proof iat too far from now')
  if (typeof c.jti !== 'string' || !st.proofJti.remember(c.jti, st.now() + 300_000)) throw fail('DPoP proof jti missing or reused')
  if (opts.accessToken !== undefined && c.ath !== createHash('sha256').update(opts.accessToken).digest('base64url')) throw fail('DPoP proof ath does not match the access token')
  const jkt = await calculateJwkThumbprint(jwk)
  if (opts.jkt !== undefined && opts.jkt !== jkt) throw fail('DPoP proof key does not match the token binding')
  return jkt
}

/** Verifies an access token as a resource server would (signature, iss (the server's or a tenant's), exp, revocation, DPoP / certificate binding). */
export async function verifyAccessToken(st: ServerState, authorization: string | undefined, request?: { method: string; url: string; dpop?: string; certThumbprint?: string; nonce?: string }): Promise<VerifiedAccess> {
  const m = /^(Bearer|DPoP) +(\S+)$/i.exec(authorization ?? '')
  if (!m) throw new AccessDenied('invalid_request', 'no access token', 'Bearer')
  const scheme = m[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer'
  const token = m[2]!
  let claims: VerifiedAccess['claims']
  try {
    ;({ payload: claims } = await jwtVerify(token, st.signing.jwks, { issuer: everyTenant(st).map((t) => t.issuer), algorithms: ['ES256'], currentDate: new Date(st.now()), typ: 'at+jwt' }))
  } catch (e) {
    throw new AccessDenied('invalid_token', (e as { code?: string }).code === 'ERR_JWT_EXPIRED' ? 'token expired' : 'token verification failed', scheme)
  }
  if (st.revokedJti.has(String(claims.jti))) throw new AccessDenied('invalid_token', 'token revoked', scheme)
  if (claims.cnf?.jkt) {
    if (scheme !== 'DPoP') throw new AccessDenied('invalid_token', 'DPoP-bound token sent as Bearer', 'DPoP')
    if (!request?.dpop) throw new AccessDenied('invalid_dpop_proof', 'DPoP proof required', 'DPoP')
    if (request.nonce !== undefined) {
      const c = (() => { try { return decodeJwt(request.dpop!) } catch { return {} as JWTPayload } })()
      if (c.nonce !== request.nonce) throw new AccessDenied('use_dpop_nonce', 'DPoP nonce required', 'DPoP', { 'dpop-nonce': request.nonce })
    }
    try {
      await verifyDpopProof(st, request.dpop, request.method, request.url, { nonce: false, accessToken: token, jkt: claims.cnf.jkt }, 'invalid_dpop_proof')
    } catch (e) {
      throw new AccessDenied('invalid_dpop_proof', (e as Error).message, 'DPoP')
    }
  } else if (scheme === 'DPoP') throw new AccessDenied('invalid_token', 'token is not DPoP-bound', 'DPoP')
  const x5t = claims.cnf?.['x5t#S256']
  if (x5t && request?.certThumbprint !== x5t) throw new AccessDenied('invalid_token', 'certificate-bound token presented without the bound client certificate', scheme)
  return { claims }
}
