import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'

const DIR = mkdtempSync(join(tmpdir(), 'weir-harness-close-'))
const write = (name: string, data: unknown) => {
  const p = join(DIR, name)
  writeFileSync(p, JSON.stringify(data))
  return p
}
afterAll(() => rmSync(DIR, { recursive: true, force: true }))

const channel = () => write('channel.json', {
  name: 'batches',
  source: { type: 'http-listener', config: { port: 7999, path: '/in' } },
  filters: [{ type: resolve('test/fixtures/harness/closing-filter.ts'), config: {} }],
  destinations: [{ name: 'batch', type: resolve('test/fixtures/harness/batching-destination.ts'), config: {} }],
})
const twoSent = [{ send: { body: { n: 1 } } }, { send: { body: { n: 2 } } }]

describe('weir test and what components do when the channel stops', () => {
  it('the channel stops (its filters and destinations closed) before the expectations are checked: logs and files of close() count', async () => {
    const t = write('closed.test.json', {
      channel: channel(),
      cases: [{
        name: 'the batch is written on close',
        steps: twoSent,
        expect: {
          logs: ['closing filter flushed'],
          files: [{ path: '^batch\\.json$', json: { count: 2, items: [{ n: 1 }, { n: 2 }] }, count: 1 }],
          messages: [{ status: 'delivered', destinations: { batch: 'delivered' } }, { status: 'delivered' }],
          deliveries: { batch: { count: 2 } },
        },
      }],
    })
    const r = await runChannelTest(t, { verbose: true })
    expect(r.cases.map((c) => c.failures)).toEqual([[]])
    // The store is still open for what is read after the stop: each message's path.
    expect(r.cases[0]!.trace?.join('\n')).toMatch(/batch/)
  })

  it('a restart step closes the components as well; the final stop closes those of the second start', async () => {
    const t = write('restarted.test.json', {
      channel: channel(),
      cases: [{
        name: 'one batch per start',
        steps: [{ send: { body: { n: 1 } } }, { restart: true }, { send: { body: { n: 2 } } }],
        expect: { files: [{ path: '^batch\\.json$', json: { count: 1, items: [{ n: 2 }] } }], logs: ['"seen":1'] },
      }],
    })
    expect((await runChannelTest(t)).cases.map((c) => c.failures)).toEqual([[]])
  })
})
