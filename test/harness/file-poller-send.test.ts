import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'
import { tempDir } from '../_setup.ts'

let tmp: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { tmp = await tempDir('weir-harness-poller-') })
afterAll(() => tmp.cleanup())

/** A file-poller channel (its `source` config given) writing to a file destination, and a test file with one case of `steps`. */
async function channel(name: string, source: Record<string, unknown>, steps: unknown[]): Promise<string> {
  const dir = join(tmp.dir, name)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'c.json'), JSON.stringify({
    name, source: { type: 'file-poller', config: source },
    destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }],
  }))
  const path = join(dir, 'c.test.json')
  await writeFile(path, JSON.stringify({ channel: 'c.json', cases: [{ name: `${name} case`, steps, expect: { messages: [{ status: 'delivered' }] } }] }))
  return path
}

describe('weir test: a send step the file-poller does not take', () => {
  it('a file name its pattern does not match fails at once, naming the case, the step, the file and the pattern', async () => {
    const path = await channel('pattern', { directory: 'in/adt', pattern: '*.hl7' }, [{ send: { body: { mrn: '1' } } }])
    const t0 = Date.now()
    const r = await runCli(['test', path])
    expect(Date.now() - t0).toBeLessThan(10_000) // not the harness's 20 s wait
    expect(r.code).toBe(1)
    expect(r.out).toContain('✗ pattern case: step 1: the file-poller will not take in/adt/message-1.json: the name does not match its pattern "*.hl7"; give the step a "fileName" that does')
  }, 60_000)

  it('a file the file-poller rejects (invalid JSON) fails as soon as it is moved to the error directory, with the reason', async () => {
    const path = await channel('rejected', { directory: 'in', pattern: '*.json' }, [{ send: { body: 'not json', fileName: 'bad.json' } }])
    const t0 = Date.now()
    const r = await runCli(['test', path])
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(r.code).toBe(1)
    expect(r.out).toMatch(/✗ rejected case: step 1: the file-poller did not take in\/bad\.json \(pattern "\*\.json"\): it moved the file to its error directory: invalid JSON: /)
  }, 60_000)

  it('a file that matches and parses is taken as before', async () => {
    const path = await channel('ok', { directory: 'in', pattern: '*.json' }, [{ send: { body: { mrn: '1' } } }])
    const r = await runCli(['test', path])
    expect(r.out).toContain('✓ ok case')
    expect(r.code).toBe(0)
  }, 60_000)
})
