import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadChannel } from '../../engine/load.ts'
import type { ConfigError } from '../../shared/errors.ts'
import { startApi, tempDir } from '../runtime/_helpers.ts'
import { runCli } from '../_cli.ts'

// A channel's own components (modules by path): each type once, none a built-in's; and what the CLI
// prints when one breaks the contract at start.

const refusal = (): never => { throw new Error('expected a refusal') }
let dir: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof startApi>>
beforeEach(async () => {
  dir = await tempDir('weir-types-')
  api = await startApi()
})
afterEach(async () => {
  await api.close()
  await dir.remove()
})

const filterModule = (type: string) => `export default { type: '${type}', kind: 'filter', description: 'f', configSchema: { type: 'object' }, create: () => ({ process: (m) => m }) }\n`
const destinationModule = (type: string, create: string) => `export default { type: '${type}', kind: 'destination', description: 'd', configSchema: { type: 'object' }, create: ${create} }\n`

async function channelFile(extra: Record<string, unknown>): Promise<string> {
  const file = join(dir.path, 'ch.json')
  await writeFile(file, JSON.stringify({
    name: 'ch',
    source: { type: 'http-listener', config: { port: 0, path: '/in' } },
    destinations: [{ name: 'api', type: 'http', config: { url: api.url } }],
    ...extra,
  }))
  return file
}

describe('custom component types', () => {
  it('two modules with the same type are a problem at the second one', async () => {
    await mkdir(join(dir.path, 'other'))
    await writeFile(join(dir.path, 'upper.js'), filterModule('upper'))
    await writeFile(join(dir.path, 'other', 'upper.js'), filterModule('upper'))
    const file = await channelFile({ filters: [{ type: './upper.js' }, { type: './upper.js' }, { type: './other/upper.js' }] })
    const err = await loadChannel(file).then(refusal, (e) => e as ConfigError)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.problems).toEqual([{
      file: expect.stringMatching(/ch\.json$/), pointer: '/filters/2/type', code: 'ERR_COMPONENT_INVALID',
      message: 'module "./other/upper.js" has type "upper", as does module "./upper.js" (/filters/0); give each component a type of its own',
    }])
  })

  it('a module whose type is a built-in\'s is a problem', async () => {
    await writeFile(join(dir.path, 'my-http.js'), destinationModule('http', '() => ({ deliver: async () => ({}) })'))
    const file = await channelFile({ destinations: [{ name: 'api', type: './my-http.js' }] })
    const err = await loadChannel(file).then(refusal, (e) => e as ConfigError)
    expect(err.problems).toEqual([{
      file: expect.stringMatching(/ch\.json$/), pointer: '/destinations/0/type', code: 'ERR_COMPONENT_INVALID',
      message: 'module "./my-http.js" has type "http", the type of a built-in destination; give it a type of its own',
    }])
    const v = await runCli(['validate', file])
    expect([v.code, v.err]).toEqual([1, expect.stringContaining('ch.json#/destinations/0/type: module "./my-http.js" has type "http", the type of a built-in destination')])
  })
})

describe('a component that breaks the contract at start, from the CLI', () => {
  it.each([
    ['create() returns no deliver()', '() => ({ send() {} })', 'ch.json#/destinations/0: module "./x.js": create() returned an object without deliver()'],
    ['create() throws', "() => { throw new Error('template missing') }", 'ch.json#/destinations/0: module "./x.js": create() failed: template missing (at x.js:1:'],
  ])('%s: weir run exits 1 with one line, weir test reports the case as failed', async (_what, create, line) => {
    await writeFile(join(dir.path, 'x.js'), destinationModule('x-dest', create))
    const file = await channelFile({ destinations: [{ name: 'api', type: './x.js' }] })
    const run = await runCli(['run', file, '--data-dir', join(dir.path, 'data')], { ...process.env, WEIR_LOG_LEVEL: 'silent' })
    expect(run.code).toBe(1)
    expect(run.err).toContain(line)
    expect(run.err).not.toMatch(/internal error|\n\s+at /)
    expect(run.err.trim().split('\n')).toHaveLength(1)

    await writeFile(join(dir.path, 'ch.test.json'), JSON.stringify({ channel: 'ch.json', cases: [{ name: 'one', steps: [{ send: { body: { a: 1 } } }], expect: { messages: [{ status: 'delivered' }] } }] }))
    const t = await runCli(['test', join(dir.path, 'ch.test.json')])
    expect(t.code).toBe(1)
    expect(t.out).toContain(line.replace(/^ch\.json/, ''))
    expect(t.out).not.toContain('harness error')
  })
})
