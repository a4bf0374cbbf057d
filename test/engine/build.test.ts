import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const PKG = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }
/** A component with a syntax error on line 2, column 59 (0-based, as esbuild counts). */
const BAD = "import { defineComponent } from 'weir'\nexport default defineComponent({ type: 'x', kind: 'filter' description: 'x' })\n"
const weir = (args: string[], bin = 'bin/weir.js') => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, CI: 'true' } })

/**
 * Runs `check` on a new directory outside Weir's (as a user's channels under /etc/weir/channels)
 * holding `files` (an object is written as JSON), and removes the directory afterwards.
 */
function inUserDir(files: Record<string, string | object>, check: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'weir-user-'))
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content))
    check(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A channel of an http-listener, `filters` and one destination (a file destination unless given). */
const channelWith = (filters: object[], destination: object = { name: 'f', type: 'file', config: { directory: 'out' } }) =>
  ({ name: 'c', source: { type: 'http-listener', config: { port: 0 } }, filters, destinations: [destination] })

describe('bin/weir.js runs the compiled engine in dist/', () => {
  it('runs from dist/ and finds the version in the package.json above it', () => {
    const r = weir(['--version'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe(`${PKG.version}\n`)
    expect(r.status).toBe(0)
  })

  it("loads a channel's own .ts components, compiled as they load", () => {
    // Both components of this channel are TypeScript modules next to it, and it has three cases.
    const r = weir(['test', 'test/fixtures/sandbox/hl7-to-jsonl.test.json'])
    expect(r.stdout).toMatch(/^3 passed, 0 failed$/m)
    expect(r.status).toBe(0)
  })

  it("components outside Weir's directory import 'weir', with no package.json near them", () => {
    // As under /etc/weir/channels: no node_modules/weir above it, no "type": "module". A .ts filter
    // (ES module syntax) and a .js destination, both importing from 'weir'.
    inUserDir({
      'stamp.ts': [
        "import { defineComponent, withBody, PermanentError } from 'weir'",
        "export default defineComponent({ type: 'stamp', kind: 'filter', description: 'Stamps a body.', configSchema: { type: 'object', properties: {} },",
        "  create: () => ({ process: (m) => { if ((m.body as { bad?: boolean }).bad) throw new PermanentError('bad body'); return withBody(m, { ...(m.body as object), stamped: true }) } }) })",
      ].join('\n'),
      'keep.js': [
        "import { defineComponent } from 'weir'",
        "export default defineComponent({ type: 'keep', kind: 'destination', description: 'Keeps nothing.', configSchema: { type: 'object', properties: {} },",
        '  create: () => ({ deliver: async () => ({ status: 200 }) }) })',
      ].join('\n'),
      // A script filter runs in a worker thread of its own by default, where the engine's module hooks do not reach.
      'check.js': [
        "import { PermanentError } from 'weir'",
        "export default (m) => { if (m.body.reject) throw new PermanentError('rejected by the script'); return m }",
      ].join('\n'),
      'c.json': channelWith([{ type: './stamp.ts' }, { type: 'script', config: { module: './check.js' } }], { name: 'keep', type: './keep.js' }),
      'c.test.json': { channel: 'c.json', cases: [
        { name: 'stamped', steps: [{ send: { body: { a: 1 } } }], expect: { messages: [{ status: 'delivered' }], deliveries: { keep: { count: 1, body: { a: 1, stamped: true } } } } },
        { name: "PermanentError from 'weir' puts the message in error", steps: [{ send: { body: { bad: true } } }], expect: { messages: [{ status: 'error', error: 'bad body' }], deliveries: { keep: { count: 0 } } } },
        { name: "a script in its worker thread imports 'weir' too", steps: [{ send: { body: { reject: true } } }], expect: { messages: [{ status: 'error', error: 'rejected by the script' }], deliveries: { keep: { count: 0 } } } },
      ] },
    }, (dir) => {
      const r = weir(['test', join(dir, 'c.test.json')])
      expect(r.stdout).toMatch(/^3 passed, 0 failed$/m)
      expect(r.status).toBe(0)
    })
  })

  it('a .js component imports TypeScript helpers: ./x.ts, ./x.js meaning x.ts, and ./x with no extension', () => {
    inUserDir({
      'tag.ts': 'export const tag = (s: string): string => `<${s}>`\n',
      'twice.ts': "import { tag } from './tag.js'\nexport const twice = (s: string): string => tag(s) + tag(s)\n",
      'shout.js': [
        "import { defineComponent, withBody } from 'weir'",
        "import { tag } from './tag.ts'",
        "import { twice } from './twice'",
        "export default defineComponent({ type: 'shout', kind: 'filter', description: 'Tags a body.', configSchema: { type: 'object', properties: {} },",
        '  create: () => ({ process: (m) => withBody(m, { said: tag(twice(m.body.word)) }) }) })',
      ].join('\n'),
      'c.json': channelWith([{ type: './shout.js' }], { name: 'out', type: 'file', config: { directory: 'out' } }),
      'c.test.json': { channel: 'c.json', cases: [
        { name: 'tagged', steps: [{ send: { body: { word: 'hi' } } }], expect: { messages: [{ status: 'delivered' }], deliveries: { out: { count: 1, body: { said: '<<hi><hi>>' } } } } },
      ] },
    }, (dir) => {
      const r = weir(['test', join(dir, 'c.test.json')])
      expect(r.stdout).toMatch(/^1 passed, 0 failed$/m)
      expect(r.status).toBe(0)
    })
  })

  it("a TypeScript project of the user's type-checks its components against 'weir' with its own tsconfig", () => {
    // Weir installed as a dependency (here a link to this checkout, whose dist/ holds the declarations).
    const good = [
      "import { defineComponent, withBody } from 'weir'",
      "export default defineComponent({ type: 'tag', kind: 'filter', description: 'Tags a body.',",
      "  configSchema: { type: 'object', properties: { tag: { type: 'string' } }, required: ['tag'], additionalProperties: false },",
      '  create: (config) => ({ process: (m) => withBody(m, { ...(m.body as object), tag: config.tag.toUpperCase() }) }) })',
    ].join('\n')
    inUserDir({
      'package.json': { name: 'my-channels', type: 'module' },
      'tsconfig.json': { compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] }, include: ['*.ts'] },
      'tag.ts': good,
    }, (dir) => {
      mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true })
      symlinkSync(process.cwd(), join(dir, 'node_modules', 'weir'))
      // The declarations need Node's types (Buffer, node:http), as any Node.js project has them.
      symlinkSync(join(process.cwd(), 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'))
      const tsc = () => spawnSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', dir], { encoding: 'utf8', cwd: dir })
      const ok = tsc()
      expect(ok.stdout + ok.stderr).toBe('')
      expect(ok.status).toBe(0)
      // The config is typed from the component's schema: a wrong use is an error in the user's file, not in Weir's.
      writeFileSync(join(dir, 'wrong.ts'), good.replace("type: 'tag'", "type: 'wrong'").replace('config.tag.toUpperCase()', 'config.tag.toFixed(), n: config.nope'))
      const wrong = tsc()
      expect(wrong.status).not.toBe(0)
      expect(wrong.stdout).toMatch(/^wrong\.ts\(4,\d+\): error TS2551: Property 'toFixed' does not exist on type 'string'/m)
      expect(wrong.stdout).toMatch(/^wrong\.ts\(4,\d+\): error TS2339: Property 'nope' does not exist/m)
      expect(wrong.stdout).not.toMatch(/node_modules\/weir|TS5097/)
    })
  }, 120_000)

  describe('a component that does not parse is named with its file, line and column', () => {
    const cases: Array<[string, Record<string, string>, string, string]> = [
      ['a .ts component', { 'bad.ts': BAD }, './bad.ts', 'bad.ts:2:59: ERROR: Expected "}" but found "description"'],
      ['a .js component (V8 names no line)', { 'bad.js': BAD }, './bad.js', 'bad.js:2:59: ERROR: Expected "}" but found "description"'],
      ['a .js helper that a .js component imports', { 'entry.js': "import { x } from './helper.js'\nexport default x\n", 'helper.js': 'export const x = (1 +\n' }, './entry.js', 'helper.js:2:0: ERROR: Unexpected end of file'],
      ['a .js component whose .ts helper esbuild alone would not find (./tag.js is tag.ts)', { 'entry.js': "import { tag } from './tag.js'\nexport default (m) => { return tag(m)\n", 'tag.ts': 'export const tag = (s: string) => s\n' }, './entry.js', 'entry.js:3:0: ERROR: Unexpected end of file'],
    ]
    it.each(cases)('%s', (_, files, type, where) => {
      inUserDir({ ...files, 'c.json': channelWith([{ type }]) }, (dir) => {
        const r = weir(['validate', join(dir, 'c.json')])
        expect(r.status).toBe(1)
        expect(r.stdout + r.stderr).toContain(`c.json#/filters/0/type: module "${type}" could not be loaded: ${join(dir, where)}`)
        expect(r.stdout + r.stderr).not.toMatch(/\n\s+at /)
      })
    })

    it('a script filter in its worker thread, and in the engine\'s', () => {
      for (const isolation of ['worker', 'none']) {
        inUserDir({
          'bad.js': 'export default (m) => { return m\n',
          'c.json': channelWith([{ type: 'script', config: { module: './bad.js', isolation } }]),
          'c.test.json': { channel: 'c.json', cases: [{ name: 'x', steps: [{ send: { body: {} } }], expect: { messages: [{ status: 'delivered' }] } }] },
        }, (dir) => {
          const r = weir(['test', join(dir, 'c.test.json')])
          expect(r.status, isolation).toBe(1)
          expect(r.stdout + r.stderr, isolation).toContain(`script module cannot be loaded: ${join(dir, 'bad.js')}:2:0: ERROR: Unexpected end of file`)
          expect(r.stdout + r.stderr, isolation).not.toMatch(/\n\s+at /)
        })
      }
    })
  })

  describe('a missing or out-of-date build is refused with what to run', () => {
    const root = mkdtempSync(join(tmpdir(), 'weir-build-'))
    afterAll(() => rmSync(root, { recursive: true, force: true }))
    cpSync('bin', join(root, 'bin'), { recursive: true })
    mkdirSync(join(root, 'engine'))
    writeFileSync(join(root, 'engine', 'cli.ts'), 'export {}\n')
    const bin = join(root, 'bin', 'weir.js')

    it('no dist/ at all', () => {
      const r = weir(['--version'], bin)
      expect(r.status).toBe(1)
      expect(r.stdout).toBe('')
      expect(r.stderr).toBe(`weir: Weir is not built (no dist/BUILT): run \`npm run build\` in ${root}\n`)
    })

    /** Every file and directory of the copy dated two minutes back, and dist/BUILT one minute back. */
    const builtAMinuteAgo = () => {
      const twoMinutes = new Date(Date.now() - 120_000)
      for (const p of ['bin', 'bin/weir.js', 'bin/build.js', 'engine', 'engine/cli.ts'].filter((p) => existsSync(join(root, p)))) utimesSync(join(root, p), twoMinutes, twoMinutes)
      mkdirSync(join(root, 'dist'), { recursive: true })
      writeFileSync(join(root, 'dist', 'BUILT'), 'x\n')
      const oneMinute = new Date(Date.now() - 60_000)
      utimesSync(join(root, 'dist', 'BUILT'), oneMinute, oneMinute)
    }

    it('a source file changed after the build', () => {
      builtAMinuteAgo()
      writeFileSync(join(root, 'engine', 'cli.ts'), 'export {} // changed\n')
      const r = weir(['--version'], bin)
      expect(r.status).toBe(1)
      expect(r.stderr).toBe(`weir: Weir's build in dist/ is older than engine/cli.ts: run \`npm run build\` in ${root}\n`)
      expect(r.stderr).not.toMatch(/\n\s+at /)
    })

    it('a source file deleted after the build (its directory changed)', () => {
      builtAMinuteAgo()
      rmSync(join(root, 'engine', 'cli.ts'))
      const r = weir(['--version'], bin)
      expect(r.status).toBe(1)
      expect(r.stderr).toBe(`weir: Weir's build in dist/ is older than engine: run \`npm run build\` in ${root}\n`)
    })
  })
})
