import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const PKG = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }
const weir = (args: string[], bin = 'bin/weir.js') => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, CI: 'true' } })

describe('bin/weir.js runs the compiled engine in dist/', () => {
  it('runs from dist/ and finds the version in the package.json above it', () => {
    const r = weir(['--version'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe(`${PKG.version}\n`)
    expect(r.status).toBe(0)
  })

  it("loads a channel's own .ts components through tsx, registered on demand", () => {
    // Both components of this channel are TypeScript modules next to it, and it has three cases.
    const r = weir(['test', 'test/fixtures/sandbox/hl7-to-jsonl.test.json'])
    expect(r.stdout).toMatch(/^3 passed, 0 failed$/m)
    expect(r.status).toBe(0)
  })

  it("components outside Weir's directory import 'weir', with no package.json near them", () => {
    // As under /etc/weir/channels: no node_modules/weir above it, no "type": "module". A .ts filter
    // (ES module syntax) and a .js destination, both importing from 'weir'.
    const dir = mkdtempSync(join(tmpdir(), 'weir-user-'))
    try {
      writeFileSync(join(dir, 'stamp.ts'), [
        "import { defineComponent, withBody, PermanentError } from 'weir'",
        "export default defineComponent({ type: 'stamp', kind: 'filter', description: 'Stamps a body.', configSchema: { type: 'object', properties: {} },",
        "  create: () => ({ process: (m) => { if ((m.body as { bad?: boolean }).bad) throw new PermanentError('bad body'); return withBody(m, { ...(m.body as object), stamped: true }) } }) })",
      ].join('\n'))
      writeFileSync(join(dir, 'keep.js'), [
        "import { defineComponent } from 'weir'",
        "export default defineComponent({ type: 'keep', kind: 'destination', description: 'Keeps nothing.', configSchema: { type: 'object', properties: {} },",
        '  create: () => ({ deliver: async () => ({ status: 200 }) }) })',
      ].join('\n'))
      // A script filter runs in a worker thread of its own by default, where the engine's module hooks do not reach.
      writeFileSync(join(dir, 'check.js'), [
        "import { PermanentError } from 'weir'",
        "export default (m) => { if (m.body.reject) throw new PermanentError('rejected by the script'); return m }",
      ].join('\n'))
      writeFileSync(join(dir, 'c.json'), JSON.stringify({ name: 'c', source: { type: 'http-listener', config: { port: 0 } }, filters: [{ type: './stamp.ts' }, { type: 'script', config: { module: './check.js' } }], destinations: [{ name: 'keep', type: './keep.js' }] }))
      writeFileSync(join(dir, 'c.test.json'), JSON.stringify({ channel: 'c.json', cases: [
        { name: 'stamped', steps: [{ send: { body: { a: 1 } } }], expect: { messages: [{ status: 'delivered' }], deliveries: { keep: { count: 1, body: { a: 1, stamped: true } } } } },
        { name: "PermanentError from 'weir' puts the message in error", steps: [{ send: { body: { bad: true } } }], expect: { messages: [{ status: 'error', error: 'bad body' }], deliveries: { keep: { count: 0 } } } },
        { name: "a script in its worker thread imports 'weir' too", steps: [{ send: { body: { reject: true } } }], expect: { messages: [{ status: 'error', error: 'rejected by the script' }], deliveries: { keep: { count: 0 } } } },
      ] }))
      const r = weir(['test', join(dir, 'c.test.json')])
      expect(r.stdout).toMatch(/^3 passed, 0 failed$/m)
      expect(r.status).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a .ts component that does not compile is named with its line and column', () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-user-'))
    try {
      writeFileSync(join(dir, 'bad.ts'), "import { defineComponent } from 'weir'\nexport default defineComponent({ type: 'x', kind: 'filter' description: 'x' })\n")
      writeFileSync(join(dir, 'c.json'), JSON.stringify({ name: 'c', source: { type: 'http-listener', config: { port: 0 } }, filters: [{ type: './bad.ts' }], destinations: [{ name: 'f', type: 'file', config: { directory: 'out' } }] }))
      const r = weir(['validate', join(dir, 'c.json')])
      expect(r.status).toBe(1)
      expect(r.stdout + r.stderr).toContain(`c.json#/filters/0/type: module "./bad.ts" could not be loaded: ${join(dir, 'bad.ts')}:2:59: ERROR: Expected "}" but found "description"`)
      expect(r.stdout + r.stderr).not.toMatch(/\n\s+at /)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
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
