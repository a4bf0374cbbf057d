import { appendFile, readdir, readFile, rename, utimes, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import poller, { globToRegExp } from '../../../components/sources/file-poller.ts'
import { errorCodes } from '../../../shared/errors.ts'
import { parseEr7 } from '../../../shared/hl7v2/index.ts'
import { loadComponentConfig, recordingEmit, tempDir, testContext, type TestContext } from '../../_setup.ts'

let t: TestContext
let d: Awaited<ReturnType<typeof tempDir>>
let stops: Array<() => unknown> = []
beforeEach(async () => { d = await tempDir() })
afterEach(async () => {
  vi.useRealTimers()
  for (const s of stops) await s()
  stops = []
  await t?.cleanup()
  await d.cleanup()
})

type Poller = { start: (e: ReturnType<typeof recordingEmit>) => Promise<void>; stop: () => Promise<void>; scanNow: () => Promise<void>; idle: () => Promise<void> }

async function source(config: Record<string, unknown>, state?: TestContext['state']) {
  const loaded = await loadComponentConfig(poller, config, { dir: d.dir })
  expect(loaded.problems).toEqual([])
  t = await testContext({ channelDir: d.dir, ...(state ? { state } : {}) })
  const s = (await poller.create(loaded.config as never, t.ctx)) as unknown as Poller
  stops.push(() => s.stop())
  return s
}

const ls = async (p: string) => (await readdir(join(d.dir, p))).sort()

describe('file-poller config', () => {
  it.each([
    [{}, '/source/config', 'must have required property "directory"'],
    [{ directory: 'in', pollIntervalMs: 5 }, '/source/config/pollIntervalMs', 'must be >= 10'],
    [{ directory: 'in', dedupe: 'name' }, '/source/config/dedupe', 'must be one of "file", "content"'],
    [{ directory: 'in', maxBytes: '1MB' }, '/source/config/maxBytes', 'must be integer'],
    [{ directory: 'in', encoding: 'utf-16' }, '/source/config/encoding', 'must be one of "utf-8", "latin1"'],
    [{ directory: 'in', pattern: '*.json', extra: true }, '/source/config/extra', 'unknown property "extra"; expected one of "directory", "pattern", "pollIntervalMs", "doneDirectory", "errorDirectory", "contentType", "maxBytes", "encoding", "dedupe"'],
  ])('%j → %s: %s', async (config, pointer, msg) => {
    const { problems } = await loadComponentConfig(poller, config)
    expect(problems.map((p) => [p.pointer, p.message])).toEqual([[pointer, msg]])
  })

  it.each([
    ['*.json', 'a.json', true], ['*.json', 'a.json.tmp', false], ['ADT_?.{hl7,txt}', 'ADT_1.txt', true],
    ['ADT_?.{hl7,txt}', 'ADT_12.hl7', false], ['[!x]*', 'xa', false], ['[!x]*', 'ya', true], ['a+b(1).json', 'a+b(1).json', true],
  ])('glob %s against %s → %s', (glob, name, ok) => {
    expect(globToRegExp(glob).test(name)).toBe(ok)
  })
})

describe('file-poller', () => {
  it('emits a stable file as a message, then moves it to the done directory', async () => {
    const src = await source({ directory: 'in', pattern: '*.json', pollIntervalMs: 60_000 })
    const emit = recordingEmit()
    await mkdir(join(d.dir, 'in'))
    await writeFile(join(d.dir, 'in/p1.json'), '{"mrn":"1"}')
    await writeFile(join(d.dir, 'in/notes.txt'), 'ignored')
    await writeFile(join(d.dir, 'in/.hidden.json'), '{}')
    await src.start(emit)
    await src.idle()
    expect(emit.inputs).toEqual([]) // first sight: not yet known to be stable
    await src.scanNow()
    expect(emit.inputs).toHaveLength(1)
    expect(emit.inputs[0]).toMatchObject({
      body: { mrn: '1' }, contentType: 'application/json',
      attributes: { fileName: 'p1.json', filePath: join(d.dir, 'in/p1.json'), size: '11' },
    })
    expect(emit.inputs[0]!.dedupeKey).toMatch(/^file-poller:file:[0-9a-f]{64}$/)
    expect(await ls('in')).toEqual(['.hidden.json', 'done', 'error', 'notes.txt'])
    expect(await ls('in/done')).toEqual(['p1.json'])
    expect(t.logs.find((l) => l.msg === 'file picked up')).toMatchObject({ messageId: 'm1' })
  })

  it('does not pick up a file that is still being written', async () => {
    const src = await source({ directory: 'in', pollIntervalMs: 60_000 })
    const emit = recordingEmit()
    await src.start(emit)
    await src.idle()
    await writeFile(join(d.dir, 'in/big.txt'), 'part one;')
    await src.scanNow()
    await appendFile(join(d.dir, 'in/big.txt'), ' part two;')
    await src.scanNow()
    expect(emit.inputs).toEqual([])
    expect(await ls('in')).toContain('big.txt')
    await src.scanNow()
    expect(emit.inputs.map((i) => [i.body, i.contentType])).toEqual([['part one; part two;', 'text/plain']])
  })

  it('a file rewritten in place at the same size (only its modification time changes) is not picked up until it stops changing', async () => {
    const src = await source({ directory: 'in', pollIntervalMs: 60_000 })
    const emit = recordingEmit()
    await src.start(emit)
    await src.idle()
    const file = join(d.dir, 'in/pre.txt')
    await writeFile(file, 'xxxxxxxx') // preallocated, then filled in: the size never changes
    await utimes(file, 1_800_000_000, 1_800_000_000)
    await src.scanNow()
    await writeFile(file, 'filled-x')
    await utimes(file, 1_800_000_001, 1_800_000_001)
    await src.scanNow()
    expect(emit.inputs).toEqual([])
    await src.scanNow()
    expect(emit.inputs.map((i) => i.body)).toEqual(['filled-x'])
  })

  it('a file re-read after a crash between the durable write and the move is recognised and just moved', async () => {
    const emit = recordingEmit() // keeps dedupe keys like the store, across both "processes"
    const first = await source({ directory: 'in', pollIntervalMs: 60_000 })
    await mkdir(join(d.dir, 'in'))
    await writeFile(join(d.dir, 'in/a.json'), '{"n":1}')
    await first.start(emit)
    await first.idle()
    await first.scanNow()
    await first.stop()
    // The state a crash leaves behind: stored, but the file (same path, size, mtime) still in place.
    await rename(join(d.dir, 'in/done/a.json'), join(d.dir, 'in/a.json'))
    const second = await source({ directory: 'in', pollIntervalMs: 60_000 })
    await second.start(emit)
    await second.idle()
    await second.scanNow()
    expect(emit.results).toEqual([{ id: 'm1', duplicate: false }, { id: 'm1', duplicate: true }])
    expect(emit.inputs[1]!.dedupeKey).toBe(emit.inputs[0]!.dedupeKey)
    expect(await ls('in/done')).toEqual(['a.json'])
    expect(await ls('in')).toEqual(['done', 'error'])
    expect(t.logs.find((l) => l.msg === 'file already stored (re-read after a restart); moved')).toMatchObject({ messageId: 'm1' })
  })

  it('a new file with the same name is a new message', async () => {
    const src = await source({ directory: 'in', pollIntervalMs: 60_000 })
    const emit = recordingEmit()
    await mkdir(join(d.dir, 'in'))
    await src.start(emit)
    await src.idle()
    await writeFile(join(d.dir, 'in/a.txt'), 'one')
    await src.scanNow(); await src.scanNow()
    await writeFile(join(d.dir, 'in/a.txt'), 'two')
    await src.scanNow(); await src.scanNow()
    expect(emit.results.map((r) => r.duplicate)).toEqual([false, false])
    expect(await ls('in/done')).toEqual(['a.1.txt', 'a.txt'])
  })

  it('under backpressure the file stays and is emitted on a later scan', async () => {
    let full = true
    const emit = recordingEmit({ fail: () => (full ? new errorCodes.ERR_BACKPRESSURE('queue full', { retryAfterMs: 1000 }) : undefined) })
    const src = await source({ directory: 'in', pollIntervalMs: 60_000 })
    await mkdir(join(d.dir, 'in'))
    await writeFile(join(d.dir, 'in/a.txt'), 'x')
    await writeFile(join(d.dir, 'in/b.txt'), 'y')
    await src.start(emit)
    await src.idle()
    await src.scanNow()
    expect(emit.inputs).toEqual([])
    expect(await ls('in')).toEqual(['a.txt', 'b.txt', 'done', 'error'])
    expect(t.logs.filter((l) => l.msg === 'queue full; file left for the next scan')).toHaveLength(1) // b.txt was not tried
    full = false
    await src.scanNow()
    expect(emit.inputs.map((i) => i.body)).toEqual(['x', 'y'])
    expect(await ls('in/done')).toEqual(['a.txt', 'b.txt'])
  })

  it('moves invalid JSON and oversized files to the error directory with the reason logged', async () => {
    const src = await source({ directory: 'in', pollIntervalMs: 60_000, maxBytes: 20, errorDirectory: 'rejected' })
    const emit = recordingEmit()
    await mkdir(join(d.dir, 'in'))
    await writeFile(join(d.dir, 'in/bad.json'), '{"a":')
    await writeFile(join(d.dir, 'in/huge.txt'), 'x'.repeat(21))
    await src.start(emit)
    await src.idle()
    await src.scanNow()
    expect(emit.inputs).toEqual([])
    expect(await ls('rejected')).toEqual(['bad.json', 'huge.txt'])
    const reasons = t.logs.filter((l) => l.msg === 'file rejected').map((l) => l.reason)
    expect(reasons[0]).toMatch(/^invalid JSON: /)
    expect(reasons[1]).toBe('file is 21 bytes, above maxBytes 20')
  })

  describe('byte order mark and encoding', () => {
    const BOM = '\uFEFF'
    const LATIN1_HL7 = 'MSH|^~\\&|LEGACY|H|||20260301||ADT^A01|1|P|2.3||||||8859/1\rPID|1||9^^^H^MR||MÜLLER^JÖRG\r'

    /** Starts a poller on `in/` holding the files given, and runs the two scans that pick them up. */
    async function pickUp(config: Record<string, unknown>, files: Record<string, string | Buffer>) {
      const src = await source({ directory: 'in', pollIntervalMs: 60_000, ...config })
      const emit = recordingEmit()
      await mkdir(join(d.dir, 'in'))
      for (const [name, content] of Object.entries(files)) await writeFile(join(d.dir, 'in', name), content)
      await src.start(emit)
      await src.idle()
      await src.scanNow()
      return emit
    }

    it('a JSON file saved with a UTF-8 byte order mark (Notepad, PowerShell) becomes a message, not a rejected file', async () => {
      const emit = await pickUp({ pattern: '*.json' }, { 'p1.json': BOM + '{"mrn":"1"}' })
      expect({ emitted: emit.inputs.map((i) => i.body), error: await ls('in/error') }).toEqual({ emitted: [{ mrn: '1' }], error: [] })
    })

    it('an HL7 file saved with a byte order mark gives a body without it, which the hl7v2 parser reads', async () => {
      const emit = await pickUp({ pattern: '*.hl7' }, { 'a.hl7': BOM + 'MSH|^~\\&|EPIC|H|||20260301||ADT^A01|1|P|2.5.1\rPID|1||9^^^H^MR\r' })
      expect(emit.inputs).toHaveLength(1)
      const body = emit.inputs[0]!.body as string
      expect(body.startsWith('MSH|')).toBe(true)
      expect(() => parseEr7(body)).not.toThrow()
    })

    it('encoding "latin1" reads an ISO 8859-1 file with its characters intact', async () => {
      const emit = await pickUp({ pattern: '*.hl7', encoding: 'latin1' }, { 'a.hl7': Buffer.from(LATIN1_HL7, 'latin1') })
      expect(emit.inputs.map((i) => i.body)).toEqual([LATIN1_HL7])
    })

    it('with the default utf-8, a file that is not valid UTF-8 moves to the error directory, the reason naming the encoding option', async () => {
      const emit = await pickUp({ pattern: '*.hl7' }, { 'a.hl7': Buffer.from(LATIN1_HL7, 'latin1'), 'b.hl7': LATIN1_HL7 })
      expect(emit.inputs.map((i) => i.body)).toEqual([LATIN1_HL7])
      expect(await ls('in/error')).toEqual(['a.hl7'])
      expect(t.logs.filter((l) => l.msg === 'file rejected').map((l) => l.reason)).toEqual(['file is not valid UTF-8 (set encoding "latin1" for ISO 8859-1 files)'])
    })
  })

  it('scans on its interval with fake timers, and stop() releases the timer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const src = await source({ directory: 'in', pollIntervalMs: 5000 })
    const emit = recordingEmit()
    await mkdir(join(d.dir, 'in'))
    await writeFile(join(d.dir, 'in/a.txt'), 'hello')
    await src.start(emit)
    await src.idle()
    expect(vi.getTimerCount()).toBe(1)
    const next = emit.next()
    await vi.advanceTimersByTimeAsync(4999)
    await src.idle()
    expect(emit.inputs).toEqual([])
    await vi.advanceTimersByTimeAsync(1)
    expect((await next).body).toBe('hello')
    await src.idle()
    expect(await readFile(join(d.dir, 'in/done/a.txt'), 'utf8')).toBe('hello')
    await src.stop()
    expect(vi.getTimerCount()).toBe(0)
  })
})
