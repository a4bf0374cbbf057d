import type { TestFileResult } from './run.ts'

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
// XML 1.0 forbids most control characters even when escaped.
const clean = (s: string) => s.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/g, '')

/** JUnit XML (the subset Jenkins, GitLab and GitHub reporters read): one testsuite per test file. */
export function junitXml(results: TestFileResult[]): string {
  const total = results.reduce((n, r) => n + r.cases.length, 0)
  const failed = results.reduce((n, r) => n + r.cases.filter((c) => !c.passed).length, 0)
  const time = (ms: number) => (ms / 1000).toFixed(3)
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="weir" tests="${total}" failures="${failed}" time="${time(results.reduce((n, r) => n + r.durationMs, 0))}">`]
  for (const r of results) {
    const f = r.cases.filter((c) => !c.passed).length
    lines.push(`  <testsuite name="${esc(r.file)}" tests="${r.cases.length}" failures="${f}" time="${time(r.durationMs)}">`)
    for (const c of r.cases) {
      const open = `    <testcase classname="${esc(r.file)}" name="${esc(clean(c.name))}" time="${time(c.durationMs)}"`
      if (c.passed) lines.push(`${open}/>`)
      else lines.push(`${open}>`, `      <failure message="${esc(clean(c.failures[0] ?? 'failed'))}">${esc(clean(c.failures.join('\n')))}</failure>`, '    </testcase>')
    }
    lines.push('  </testsuite>')
  }
  lines.push('</testsuites>')
  return lines.join('\n') + '\n'
}
