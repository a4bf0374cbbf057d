import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'
import { sandboxChannelDir } from '../../engine/harness/sandbox.ts'
import { tempDir } from '../_setup.ts'
import { formatProblem, type ConfigError } from '../../shared/errors.ts'

const FIXTURES = resolve('test/fixtures/sandbox')
const CHANNEL = join(FIXTURES, 'hl7-to-jsonl.json')
const HL7 = (mrn: string, name: string) => `MSH|^~\\&|ADT|HOSP|||202601010000||ADT^A01|1|P|2.5\rPID|1||${mrn}^^^HOSP||${name}`

/** Every path under `dir`, for a before/after comparison. */
async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort()
}

let tmp: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { tmp = await tempDir('weir-sandbox-test-') })
afterAll(() => tmp.cleanup())

/** A test file for the fixture channel, written to the temporary directory. */
async function testFile(name: string, cases: unknown[]): Promise<string> {
  const path = join(tmp.dir, `${name}.test.json`)
  await writeFile(path, JSON.stringify({ channel: CHANNEL, cases }))
  return path
}

describe('the per-case sandbox', () => {
  it('a custom destination writing relative to ctx.channelDir and ctx.dataDir leaves the real channel directory as it was', async () => {
    const before = await tree(FIXTURES)
    const result = await runChannelTest(join(FIXTURES, 'hl7-to-jsonl.test.json'))
    expect(result.cases.filter((c) => !c.passed).map((c) => `${c.name}: ${c.failures.join('; ')}`)).toEqual([])
    expect(result.cases).toHaveLength(3)
    expect(await tree(FIXTURES)).toEqual(before)
    expect(before).not.toContain('out')
  })

  it('copies the channel directory, stands in for modules, leaves out hidden entries and data directories, and reports what was written', async () => {
    const real = join(tmp.dir, 'real')
    await mkdir(join(real, 'channel', 'schemas'), { recursive: true })
    await mkdir(join(real, 'channel', 'data'), { recursive: true })
    await mkdir(join(real, 'channel', '.git'), { recursive: true })
    await writeFile(join(real, 'channel', 'schemas', 'p.json'), '{"type":"object"}')
    await writeFile(join(real, 'channel', 'data', 'weir.db'), 'not copied')
    await writeFile(join(real, 'channel', 'log.jsonl'), 'line 1\n')
    // A module importing from outside the channel directory: it must resolve from where it really is.
    await writeFile(join(real, 'lib.ts'), 'export const answer = 42\n')
    await writeFile(join(real, 'channel', 'script.ts'), "export { answer } from '../lib.ts'\n")
    await writeFile(join(real, 'channel', 'legacy.cjs'), "module.exports = { answer: require('../lib.cjs').answer }\n")
    await writeFile(join(real, 'lib.cjs'), 'module.exports = { answer: 41 }\n')
    await writeFile(join(real, 'channel', 'package.json'), '{ "type": "commonjs" }')
    await symlink(join(real, 'nowhere'), join(real, 'channel', 'dangling'))
    await symlink(join(real, 'channel'), join(real, 'channel', 'schemas', 'loop'))

    const box = await sandboxChannelDir(join(real, 'channel'), join(tmp.dir, 'case', 'channel'))
    expect(await tree(box.dir)).toEqual(['legacy.cjs', 'log.jsonl', 'schemas', 'schemas/p.json', 'script.ts'])
    expect((await import(pathToFileURL(join(box.dir, 'script.ts')).href)).answer).toBe(42)
    expect((await import(pathToFileURL(join(box.dir, 'legacy.cjs')).href)).default.answer).toBe(41)
    expect(await box.written()).toEqual([])

    await writeFile(join(box.dir, 'log.jsonl'), 'line 1\nline 2\n')
    await mkdir(join(box.dir, 'out'))
    await writeFile(join(box.dir, 'out', 'a.json'), '{}')
    await writeFile(join(box.dir, 'out', '.a.json.tmp'), '{}')
    expect(await box.written()).toEqual(['log.jsonl', 'out/a.json'])
    expect(await readFile(join(real, 'channel', 'log.jsonl'), 'utf8')).toBe('line 1\n')
  })
})

describe('a send step\'s fileName', () => {
  it('cannot lead outside the case\'s sandbox: the step is refused at its JSON pointer and nothing is written', async () => {
    const ch = join(tmp.dir, 'poller')
    await mkdir(ch, { recursive: true })
    await writeFile(join(ch, 'f.json'), JSON.stringify({
      name: 'f', source: { type: 'file-poller', config: { directory: 'in' } },
      destinations: [{ name: 'd', type: 'file', config: { directory: 'out' } }],
    }))
    // The case's work directory is <tmpdir>/weir-test-XXXXXX: from it, up to tmpdir and into ours.
    const target = join(tmp.dir, 'ESCAPED.json')
    const fileName = join('..', relative(tmpdir(), target))
    const path = join(ch, 'f.test.json')
    await writeFile(path, JSON.stringify({ channel: 'f.json', cases: [{ name: 'escape', steps: [{ send: { body: { a: 1 }, fileName } }], expect: {} }] }))
    const failures = await runChannelTest(path).then((r) => r.cases.flatMap((c) => c.failures), (e: ConfigError) => e.problems.map(formatProblem))
    expect(failures).toEqual([expect.stringMatching(/f\.test\.json#\/cases\/0\/steps\/0\/send\/fileName: .*must be a plain file name/)])
    expect(existsSync(target)).toBe(false)
  })
})

describe('expect.messages[].destinations', () => {
  it('holds only when every part of a split message has the status at that destination', async () => {
    const ch = join(tmp.dir, 'split')
    await mkdir(ch, { recursive: true })
    await writeFile(join(ch, 'split.js'), `import { defineComponent, withBody } from 'weir'
export default defineComponent({ type: 'split', kind: 'filter', description: 'one message per item', configSchema: { type: 'object' },
  create: () => ({ process: (m) => m.body.items.map((i) => withBody(m, i)) }) })
`)
    await writeFile(join(ch, 's.json'), JSON.stringify({
      name: 's', source: { type: 'http-listener', config: { port: 7001 } },
      filters: [{ type: './split.js' }],
      destinations: [{ name: 'api', type: 'http', config: { url: 'https://api.example.com/items' } }],
    }))
    const path = join(ch, 's.test.json')
    await writeFile(path, JSON.stringify({
      channel: 's.json',
      // The first part is taken, the second refused.
      api: [{ method: 'POST', path: '/items', auth: false, answers: [{ status: 201 }, { status: 400, json: { error: 'refused' } }] }],
      cases: [{ name: 'split', steps: [{ send: { body: { items: [{ n: 1 }, { n: 2 }] } } }], expect: { messages: [{ destinations: { api: 'delivered' } }] } }],
    }))
    const [c] = (await runChannelTest(path)).cases
    expect(c!.failures).toEqual([expect.stringMatching(/^message 1 part 1: error at "api", expected delivered \(HTTP 400: /)])
  })
})

describe('expect.deliveries', () => {
  it('reports what each destination was handed when the expectation does not hold', async () => {
    const path = await testFile('deliveries', [{
      name: 'wrong expectations',
      steps: [{ send: { body: HL7('1', 'Lovelace^Ada'), contentType: 'x-application/hl7-v2+er7' } }],
      expect: {
        deliveries: {
          patients: [{ count: 2 }, { body: { mrn: '2' } }, { bodyMatches: 'Hopper', contentType: '^text/' }],
          archive: { count: 0 },
        },
      },
    }])
    const [c] = (await runChannelTest(path)).cases
    const got = '"patients" delivered 1: application/json {"mrn":"1","family":"Lovelace","given":"Ada"}'
    expect(c!.failures).toEqual([
      `expect.deliveries.patients[0]: 1 matching deliveries, expected 2; ${got}`,
      `expect.deliveries.patients[1]: 0 matching deliveries (with {"mrn":"2"}); ${got}`,
      `expect.deliveries.patients[2]: 0 matching deliveries (matching /Hopper/, of type /^text//); ${got}`,
      'expect.deliveries.archive: the channel has no destination "archive" (it has "patients")',
    ])
  })

  it('counts a delivery only when deliver returned: a message in error at a filter reaches no destination', async () => {
    const path = await testFile('filter-error', [{
      name: 'no PID',
      steps: [{ send: { body: 'MSH|^~\\&|ADT', contentType: 'x-application/hl7-v2+er7' } }],
      expect: { deliveries: { patients: {} } },
    }])
    const [c] = (await runChannelTest(path)).cases
    expect(c!.failures).toEqual(['expect.deliveries.patients: 0 matching deliveries; "patients" delivered 0'])
  })
})

describe('verbose', () => {
  it('gives each message its path: filter outcomes, destination status and attempts', async () => {
    const path = await testFile('verbose', [{
      name: 'two messages',
      steps: [
        { send: { body: HL7('1', 'Lovelace^Ada'), contentType: 'x-application/hl7-v2+er7' } },
        { send: { body: 'MSH|^~\\&|ADT', contentType: 'x-application/hl7-v2+er7' } },
      ],
      expect: {},
    }])
    const [c] = (await runChannelTest(path, { verbose: true })).cases
    const lines = c!.trace!.map((l) => l.replace(/\(01[0-9A-Z]{24}\)/, '(ID)').replace(/\(\d+ ms\)/, '(N ms)'))
    expect(lines).toEqual([
      'message 1 (ID): delivered',
      '  filters/0 (hl7-pid): passed',
      '  patients (jsonl-file): delivered',
      '    attempt 1: delivered (N ms)',
      'message 2 (ID): error (filters/0: ERR_DELIVERY_PERMANENT: no PID segment)',
      '  filters/0 (hl7-pid): error: ERR_DELIVERY_PERMANENT: no PID segment',
    ])
    expect((await runChannelTest(path)).cases[0]!.trace).toBeUndefined()
  })
})
