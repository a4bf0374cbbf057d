import { readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'
import { loadTestFile } from '../../engine/harness/test-file.ts'

const CHANNELS = resolve('channels')
const files = readdirSync(CHANNELS).filter((f) => f.endsWith('.test.json')).sort()

describe('example channels (channels/*.test.json)', () => {
  it('there are examples for every provider of issue 6, with at least 30 cases in all', async () => {
    expect(files).toEqual(expect.arrayContaining([
      'azure-graph-incidents.test.json', 'crm-refresh-token.test.json', 'epic-adt-to-fhir.test.json', 'fhir-lab-poll.test.json',
      'google-healthcare-fhir.test.json', 'oracle-health-observations.test.json', 'salesforce-contacts.test.json',
    ]))
  })

  it.each(files)('%s: every case passes', async (f) => {
    const result = await runChannelTest(join(CHANNELS, f))
    const failed = result.cases.filter((c) => !c.passed).map((c) => `${c.name}: ${c.failures.join('; ')}`)
    expect(failed).toEqual([])
    expect(result.cases.length).toBeGreaterThanOrEqual(5)
  }, 60_000)

  // Counted here, not summed by the tests above, so that it holds when run alone (vitest -t).
  it('adds up to at least 30 cases', async () => {
    const tests = await Promise.all(files.map((f) => loadTestFile(join(CHANNELS, f))))
    expect(tests.reduce((n, t) => n + t.cases.length, 0)).toBeGreaterThanOrEqual(30)
  })
})
