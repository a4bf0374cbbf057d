import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'
import { runCli } from '../_cli.ts'

// Acceptance of issue 6: copies of the Epic channel with one mistake each fail, with the reason.
const broken = (name: string) => resolve('channels/broken', `${name}.test.json`)

describe('broken copies of the Epic channel (channels/broken)', () => {
  it.each([
    ['epic-rs256', 'channels/broken/epic-rs256.json#/credentials/epic/clientAuth/alg: epic-backend requires RS384 or ES384 (SMART Backend Services); got RS256'],
    ['epic-rs256-no-preset', 'token endpoint refused weir-test-client-epic: invalid_client: client assertion: alg RS256 not allowed for this client'],
    ['epic-audience-issuer', 'token endpoint refused weir-test-client-epic: invalid_client: client assertion: aud must be the token endpoint'],
  ])('%s fails with the reason', async (name, reason) => {
    const result = await runChannelTest(broken(name))
    expect(result.cases.length).toBeGreaterThan(0)
    for (const c of result.cases) {
      expect(c.passed).toBe(false)
      expect(c.failures).toContain(reason)
    }
  })

  it('the server reasons also reach the message errors and the CLI output, which ends with the count and exit 1', async () => {
    const { code, out } = await runCli(['test', broken('epic-rs256-no-preset'), broken('epic-audience-issuer')])
    expect(code).toBe(1)
    // A refused client is an outage: the message waits (retrying), the credential failing fast with the server's reason.
    expect(out).toMatch(/✗ .*message 1: status retrying, expected delivered \(epic-fhir: ERR_OAUTH_FAIL_FAST: credential "epic" is failing: token endpoint http:\/\/127\.0\.0\.1:\d+\/tenants\/epic\/token answered 401 invalid_client: client assertion: alg RS256 not allowed for this client/)
    expect(out).toMatch(/✗ .*answered 401 invalid_client: client assertion: aud must be the token endpoint/)
    expect(out.trimEnd().split('\n').at(-1)).toBe('0 passed, 2 failed')
  })
})
