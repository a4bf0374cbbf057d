import { describe, expect, it } from 'vitest'
import { subjectsOf } from '../../engine/alerts/conditions.ts'
import { registerSecretValue } from '../../shared/secret.ts'

describe('alert summaries', () => {
  it('scrub registered secret values from a credential failure reason before it goes to a webhook', () => {
    const secret = 'client-secret-4f9a8b7c6d5e'
    registerSecretValue(secret, { pinned: true })
    const now = Date.now()
    const handle = {
      name: 'ch',
      credentials: () => ({ idp: { tokenRequests: 1, tokenErrors: 1, failingFastUntil: now + 60_000, lastFailure: { at: now, code: 'ERR_TOKEN', message: `token endpoint said: bad client_secret=${secret}` } } }),
    }
    const rule = { name: 'cred', condition: 'credential-fail-fast', channels: '*' } as never
    const [s] = subjectsOf(rule, { handles: [handle as never], oldest: {}, watch: {} as never, now })
    expect(s!.active).toBe(true)
    expect(s!.summary).toContain('fails fast')
    expect(s!.summary).not.toContain(secret)
  })
})
