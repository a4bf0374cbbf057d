import { writeFileSync, rmSync, mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'

// Channel files live beside the fixture components so relative module paths resolve.
const DIR = 'test/fixtures/config'
const CASES = resolve(DIR, `.cases-${process.pid}`)
mkdirSync(CASES, { recursive: true })
afterAll(() => rmSync(CASES, { recursive: true, force: true }))

const ok = {
  name: 'ok', source: { type: '../ticker.ts', config: { cron: '*/5 * * * *' } },
  destinations: [{ name: 'api', type: '../post.ts', config: { url: 'https://api.example.org/in' } }],
}
const withDest = (config: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ ...ok, destinations: [{ name: 'api', type: '../post.ts', config, ...extra }] })

// [case, file content (object → JSON, string → as is), expected stderr lines after "<file>#"]
const table: Array<[string, unknown, string[]]> = [
  ['bad JSON: missing comma', '{ "name": "x",\n  "source": { "type": "a" }\n  "destinations": [] }', [`: invalid JSON at line 3, column 3: Expected ',' or '}' after property value`]],
  ['bad JSON: trailing comma', '{ "name": "x", }', [`: invalid JSON at line 1, column 16: Expected double-quoted property name`]],
  ['bad JSON: empty file', '', [`: invalid JSON at line 1, column 1: unexpected end of JSON input`]],
  ['bad JSON: an unquoted value (V8 quotes the text around it; that quote is never shown)', '{ "name": "x",\n  "credentials": { "a": { "clientSecret": s3cr3tValue123 } } }', [`: invalid JSON at line 2, column 43: unexpected token 's'`]],
  ['a credential name with bad characters', { ...ok, credentials: { 'Bad Name': { tokenUrl: 'https://auth.example.org/token' } } }, [`/credentials/Bad Name: name "Bad Name" must match pattern "^[a-z0-9][a-z0-9._-]*$"`]],
  ['not an object', [1, 2], [`: must be object`]],
  ['missing required fields', { name: 'x' }, [`: must have required property "source"`, `: must have required property "destinations"`]],
  ['name of the wrong type', { ...ok, name: 42 }, [`/name: must be string`]],
  ['name with bad characters', { ...ok, name: 'My Channel' }, [`/name: must match pattern "^[a-z0-9][a-z0-9._-]*$"`]],
  ['misspelled top-level key', { name: 'x', source: ok.source, destination: ok.destinations }, [`: must have required property "destinations"`, `/destination: unknown property "destination" (did you mean "destinations"?)`]],
  ['misspelled key in a component config', withDest({ ulr: 'https://a.example/' }), [`/destinations/0/config: must have required property "url"`, `/destinations/0/config/ulr: unknown property "ulr" (did you mean "url"?)`]],
  ['bad URL', withDest({ url: 'not a url' }), [`/destinations/0/config/url: must match format "uri"`]],
  ['wrong type inside config', withDest({ url: 'https://a.example/', timeoutMs: 'soon' }), [`/destinations/0/config/timeoutMs: must be integer`]],
  ['number out of range', withDest({ url: 'https://a.example/', timeoutMs: 0 }), [`/destinations/0/config/timeoutMs: must be >= 1`]],
  ['unknown built-in type', { ...ok, destinations: [{ name: 'api', type: 'htp' }] }, [`/destinations/0/type: unknown destination type "htp"`]],
  ['no destinations', { ...ok, destinations: [] }, [`/destinations: must NOT have fewer than 1 items`]],
  ['destination without a name', { ...ok, destinations: [{ type: '../post.ts', config: { url: 'https://a.example/' } }] }, [`/destinations/0: must have required property "name"`]],
  ['duplicate destination names', { ...ok, destinations: [ok.destinations[0], ok.destinations[0]] }, [`/destinations/1/name: duplicate destination name "api" (also /destinations/0/name)`]],
  ['bad retry budget', withDest({ url: 'https://a.example/' }, { retry: { maxAttempts: 0 } }), [`/destinations/0/retry/maxAttempts: must be >= 1`]],
  ['bad onError', { ...ok, options: { onError: 'ignore' } }, [`/options/onError: must be one of "skip", "stop"`]],
  ['bad cron expression', { ...ok, source: { type: '../ticker.ts', config: { cron: '61 * * * *' } } }, [`/source/config/cron: invalid cron expression "61 * * * *"`]],
  ['missing $env variable', withDest({ url: 'https://a.example/', apiKey: { $env: 'WEIR_TEST_UNSET_VARIABLE' } }), [`/destinations/0/config/apiKey: environment variable "WEIR_TEST_UNSET_VARIABLE" is not set`]],
  ['missing $file', withDest({ url: 'https://a.example/', apiKey: { $file: 'nope.pem' } }), [`/destinations/0/config/apiKey: secret file "nope.pem" not found (looked for ${resolve(CASES, 'nope.pem')})`]],
  ['malformed secret reference', withDest({ url: 'https://a.example/', apiKey: { $env: 'A', $file: 'b' } }), [`/destinations/0/config/apiKey: must be a string or a secret reference {"$env": "NAME"} or {"$file": "path"}`]],
  ['$env in a field that is not a secret', withDest({ url: { $env: 'URL' } }), [`/destinations/0/config/url: must be string; {"$env"}/{"$file"} references are allowed only in secret fields`]],
  ['component module without create', { ...ok, filters: [{ type: '../no-create.ts' }] }, [`/filters/0/type: module "../no-create.ts" is not a valid component: missing create() (a function)`]],
  ['component module without a default export', { ...ok, filters: [{ type: '../no-default.ts' }] }, [`/filters/0/type: module "../no-default.ts" is not a valid component: the default export is not an object made with defineComponent()`]],
  ['component module that throws on import', { ...ok, filters: [{ type: '../throws.ts' }] }, [`/filters/0/type: module "../throws.ts" could not be loaded: boom at import`]],
  ['component module not found', { ...ok, filters: [{ type: './missing.ts' }] }, [`/filters/0/type: module "./missing.ts" not found (looked for ${resolve(CASES, 'missing.ts')})`]],
  ['component of the wrong kind', { ...ok, filters: [{ type: '../post.ts', config: { url: 'https://a.example/' } }] }, [`/filters/0/type: module "../post.ts" is a destination, not a filter`]],
  ['unknown credential reference', withDest({ url: 'https://a.example/', credential: 'epci' }), [`/destinations/0/config/credential: unknown credential "epci"; defined: (none)`]],
  ['several problems at once', { name: 'Bad Name', source: { type: '../ticker.ts', config: { cron: 'nope' } }, destinations: [{ name: 'api', type: '../post.ts', config: { url: 'x' } }], options: { concurrency: 0 } },
    [`/name: must match pattern "^[a-z0-9][a-z0-9._-]*$"`, `/options/concurrency: must be >= 1`, `/source/config/cron: invalid cron expression "nope"`, `/destinations/0/config/url: must match format "uri"`]],
]

describe('weir validate on malformed channel files', () => {
  it('an unknown option is a usage error (exit 2), not an internal one', async () => {
    const { code, err } = await runCli(['validate', '--quiet=yes', 'x.json'])
    expect(code).toBe(2)
    expect(err).toBe(`weir validate: Option '--quiet' does not take an argument (see weir validate --help)\n`)
  })

  it('takes $env values from the environment it is given', async () => {
    const file = `${DIR}/.cases-${process.pid}/env.json`
    writeFileSync(file, JSON.stringify(withDest({ url: 'https://a.example/', apiKey: { $env: 'WEIR_TEST_GIVEN_KEY' } })))
    expect((await runCli(['validate', file], { WEIR_TEST_GIVEN_KEY: 'given-key-123' })).code).toBe(0)
    expect((await runCli(['validate', file], {})).code).toBe(1)
  })

  it.each(table.map(([name, content, expected], i) => ({ name, content, expected, i })))('$name', async ({ content, expected, i }) => {
    const file = `${DIR}/.cases-${process.pid}/case-${i}.json`
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2))
    const { code, out, err } = await runCli(['validate', file], { ...process.env, WEIR_TEST_UNSET_VARIABLE: undefined })
    expect(code).toBe(1)
    expect(out).toBe('')
    const lines = err.trim().split('\n')
    expect(lines.pop()).toBe('0 valid, 1 invalid')
    const problemLines = lines.map((l) => (l.startsWith(file + '#') ? l.slice(file.length + 1) : l))
    for (const e of expected) expect(problemLines.some((l) => l === e || l.startsWith(e + ';')), `expected a line "${e}" in:\n${err}`).toBe(true)
    expect(problemLines).toHaveLength(expected.length)
    expect(err).not.toMatch(/\n\s+at /)
    expect(err).not.toMatch(/internal error/)
  })

  it('suggests the nearest known type and lists the known ones', async () => {
    const file = `${DIR}/.cases-${process.pid}/nearest.json`
    writeFileSync(file, JSON.stringify({ ...ok, filters: [{ type: 'mapp' }] }))
    const { code, err } = await runCli(['validate', file])
    expect(code).toBe(1)
    expect(err).toMatch(/#\/filters\/0\/type: unknown filter type "mapp"; did you mean "map"\?; known filter types: .*\bmap\b/)
  })

  it('accepts the valid base channel with exit 0', async () => {
    const file = `${DIR}/.cases-${process.pid}/ok.json`
    writeFileSync(file, JSON.stringify(ok))
    const { code, out, err } = await runCli(['validate', file])
    expect({ code, err }).toEqual({ code: 0, err: '' })
    expect(out).toContain(`ok ${file}: channel "ok"`)
  })
})
