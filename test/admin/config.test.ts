import { describe, expect, it } from 'vitest'
import { parseAdminConfig, sha256 } from '../../engine/admin/config.ts'

const parse = (raw: unknown, env: NodeJS.ProcessEnv = {}) => parseAdminConfig(raw, '/etc/weir/admin.json', env)
const problemsOf = (raw: unknown, env: NodeJS.ProcessEnv = {}) => {
  try {
    parse(raw, env)
    return []
  } catch (e) {
    expect((e as { code: string }).code).toBe('ERR_CONFIG_INVALID')
    return (e as { problems: Array<{ pointer: string; message: string }> }).problems.map((p) => `${p.pointer}: ${p.message}`)
  }
}

describe('admin config', () => {
  it('keeps only a SHA-256 of each token, resolved from $env', () => {
    const { config } = parse({ tokens: [{ name: 'ops', role: 'operator', token: { $env: 'T' } }] }, { T: 'the-admin-token-123' })
    expect(config.tokens).toEqual([{ name: 'ops', role: 'operator', hash: sha256('the-admin-token-123') }])
    expect(JSON.stringify(config)).not.toContain('the-admin-token-123')
    expect(config).toMatchObject({ hosts: [], sessionTtlSec: 28_800 })
  })

  it('defaults the jwt role mapping and the listener\'s jwt options', () => {
    const { config } = parse({ jwt: { issuer: 'https://idp.example/realm', audience: 'weir-admin' } })
    expect(config.jwt).toMatchObject({ roleClaim: 'roles', operatorRole: 'weir-operator', viewerRole: 'weir-viewer', clockToleranceSec: 30, jwksTimeoutMs: 5000, requiredScopes: [] })
  })

  it('warns about a literal token', () => {
    expect(parse({ tokens: [{ name: 'ops', role: 'viewer', token: 'literal-token' }] }).warnings.map((w) => w.pointer)).toEqual(['/tokens/0/token'])
  })

  it.each([
    [{ tokens: [{ name: 'ops', role: 'admin', token: 'x' }] }, {}, '/tokens/0/role: must be one of "viewer", "operator"'],
    [{ tokens: [{ name: 'ops', role: 'viewer' }] }, {}, '/tokens/0: must have required property "token"'],
    [{ tokens: [{ name: 'ops', role: 'viewer', token: { $env: 'MISSING' } }] }, {}, '/tokens/0/token: environment variable "MISSING" is not set'],
    [{ tokens: [{ name: 'a', role: 'viewer', token: { $env: 'T' } }, { name: 'a', role: 'operator', token: { $env: 'T' } }] }, { T: 'x' }, '/tokens/1/name: token name "a" is used twice'],
    [{ jwt: { issuer: 'https://idp.example' } }, {}, '/jwt: must have required property "audience"'],
    [{ jwt: { issuer: 'https://idp.example', audience: 'a', roleClaims: 'x' } }, {}, '/jwt/roleClaims: unknown property "roleClaims" (did you mean "roleClaim"?)'],
    [{ token: [] }, {}, '/token: unknown property "token" (did you mean "tokens"?)'],
  ])('%j → %s', (raw, env, problem) => {
    expect(problemsOf(raw, env)).toContain(problem)
  })
})
