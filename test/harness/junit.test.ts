import { describe, expect, it } from 'vitest'
import { junitXml } from '../../engine/harness/junit.ts'
import type { TestFileResult } from '../../engine/harness/run.ts'
import { wellFormed } from './_xml.ts'

const results: TestFileResult[] = [
  { file: 'channels/a.test.json', channel: 'a.json', durationMs: 1500, cases: [
    { name: 'passes', passed: true, failures: [], durationMs: 1000 },
    { name: 'fails <badly> & "loudly"', passed: false, failures: ['expected 1 < 2 & "x"', 'second\u0007 reason'], durationMs: 500 },
  ] },
  { file: 'channels/b.test.json', channel: 'b.json', durationMs: 0, cases: [] },
]

describe('junitXml', () => {
  it('writes one testsuite per file with counts, times and escaped failures', () => {
    const xml = junitXml(results)
    expect(xml).toBe([
      '<?xml version="1.0" encoding="UTF-8"?>',
      '<testsuites name="weir" tests="2" failures="1" time="1.500">',
      '  <testsuite name="channels/a.test.json" tests="2" failures="1" time="1.500">',
      '    <testcase classname="channels/a.test.json" name="passes" time="1.000"/>',
      '    <testcase classname="channels/a.test.json" name="fails &lt;badly&gt; &amp; &quot;loudly&quot;" time="0.500">',
      '      <failure message="expected 1 &lt; 2 &amp; &quot;x&quot;">expected 1 &lt; 2 &amp; &quot;x&quot;\nsecond reason</failure>',
      '    </testcase>',
      '  </testsuite>',
      '  <testsuite name="channels/b.test.json" tests="0" failures="0" time="0.000">',
      '  </testsuite>',
      '</testsuites>',
      '',
    ].join('\n'))
    expect(wellFormed(xml)).toBe(true)
  })

  it('the well-formedness check itself rejects broken XML', () => {
    expect(wellFormed('<a><b></a></b>')).toBe(false)
    expect(wellFormed('<a>1 < 2</a>')).toBe(false)
    expect(wellFormed('<a x="&"/>')).toBe(false)
    expect(wellFormed('<a/><b/>')).toBe(false)
    expect(wellFormed('<a x="&amp;">t</a>')).toBe(true)
  })
})
