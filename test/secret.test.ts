import { describe, expect, it } from 'vitest'
import { REDACTED, Secret, TRANSIENT_SECRET_LIMIT, registerSecretValue, scrubSecrets } from '../shared/secret.ts'

const token = (i: number) => `tok-${String(i).padStart(6, '0')}-${'x'.repeat(20)}`

describe('scrubSecrets', () => {
  it('keeps config secrets for good and only the most recent transient values', () => {
    const config = new Secret('config-secret-from-env', '$env:API_KEY')
    const literal = new Secret('literal-secret-value')
    const oldest = token(0)
    registerSecretValue(oldest)
    for (let i = 1; i <= TRANSIENT_SECRET_LIMIT; i++) registerSecretValue(token(i))
    expect(TRANSIENT_SECRET_LIMIT).toBe(512)
    // One more than the bound was registered: the oldest token is forgotten, the rest are scrubbed.
    expect(scrubSecrets(`a ${oldest} b`)).toBe(`a ${oldest} b`)
    expect(scrubSecrets(`a ${token(1)} b`)).toBe(`a ${REDACTED} b`)
    expect(scrubSecrets(`bearer ${token(TRANSIENT_SECRET_LIMIT)}.`)).toBe(`bearer ${REDACTED}.`)
    expect(scrubSecrets(`${config.reveal()} and ${literal.reveal()}`)).toBe(`${REDACTED} and ${REDACTED}`)
    expect(new Secret('runtime-token-value', 'token-response').source).toBe('token-response')
    expect(scrubSecrets('runtime-token-value')).toBe(REDACTED)
  })

  it('re-registering a token makes it recent again', () => {
    const kept = token(10_000)
    registerSecretValue(kept)
    for (let i = 1; i <= TRANSIENT_SECRET_LIMIT; i++) {
      if (i % 100 === 0) registerSecretValue(kept)
      registerSecretValue(token(10_000 + i))
    }
    expect(scrubSecrets(`x${kept}x`)).toBe(`x${REDACTED}x`)
  })

  it('replaces every occurrence, the longest value first, and leaves short or clean text as it is', () => {
    registerSecretValue('overlap-secret')
    registerSecretValue('overlap-secret-longer')
    expect(scrubSecrets('overlap-secret-longer / overlap-secret / overlap-secret-longer')).toBe(`${REDACTED} / ${REDACTED} / ${REDACTED}`)
    expect(scrubSecrets('ok')).toBe('ok')
    const clean = 'a log line with no secret in it'
    expect(scrubSecrets(clean)).toBe(clean)
    registerSecretValue('short')
    expect(scrubSecrets('short')).toBe('short')
  })

  it('scrubs a secret in every form Weir sends it: form-urlencoded, percent-encoded, JSON-escaped', () => {
    const secret = new Secret('Qx28Q~a:b%2B+c&d é中"\\n', '$env:CLIENT_SECRET').reveal()
    const forms = [secret, new URLSearchParams([['', secret]]).toString().slice(1), encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)]
    expect(new Set(forms).size).toBe(4)
    for (const form of forms) expect(scrubSecrets(`client_secret=${form}&x=1`)).toBe(`client_secret=${REDACTED}&x=1`)
    // A strict Basic pair form-encodes id and secret (RFC 6749 §2.3.1).
    expect(scrubSecrets(`cid:${forms[1]}`)).toBe(`cid:${REDACTED}`)
  })
})
