import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { CommandIO } from '../../engine/cli-io.ts'
import { run as runCommand } from '../../engine/commands/run.ts'
import { run as messagesCommand } from '../../engine/commands/messages.ts'
import type { ChannelHandle } from '../../engine/runtime/index.ts'
import { loopbackServer, tempDir, until } from '../_setup.ts'

// Finding: `weir messages show` printed terminal escape sequences from bodies and remote error text raw.
const ESC = '\x1b'
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/
const fixtures = resolve(import.meta.dirname, '../fixtures/runtime')

function io(cwd: string) {
  const out: string[] = []
  const value: CommandIO = { out: (t) => void out.push(t), err: (t) => void out.push(t), env: {}, cwd, isTTY: false }
  return { io: value, out }
}

let d: Awaited<ReturnType<typeof tempDir>>
let api: Awaited<ReturnType<typeof loopbackServer>>
beforeEach(async () => {
  d = await tempDir('weir-sec-show-')
  // The API's error text tries to clear the screen, retitle the window and hide text with a bidi override.
  api = await loopbackServer((_, res) => { res.statusCode = 400; res.end(`bad ${ESC}[2J${ESC}]0;pwned\x07 \u202egnorw\u009b31m`) })
})
afterEach(async () => { await api.close(); await d.cleanup() })

async function deliverOneBadMessage(): Promise<string> {
  const file = join(d.dir, 'esc.json')
  await writeFile(file, JSON.stringify({
    name: 'esc',
    source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'esc.port' } },
    destinations: [{ name: 'api', type: 'http', config: { url: api.url }, retry: { maxAttempts: 1 } }],
  }))
  const ac = new AbortController()
  let handles: ChannelHandle[] = []
  let started!: () => void
  const up = new Promise<void>((ok) => (started = ok))
  const done = runCommand([file, '--data-dir', 'data'], io(d.dir).io, { signal: ac.signal, onStarted: (h) => { handles = h; started() } })
  await up
  const port = Number(await readFile(join(d.dir, 'esc.port'), 'utf8'))
  const res = await fetch(`http://127.0.0.1:${port}/`, {
    method: 'POST', headers: { 'content-type': 'text/plain' },
    body: `MSH|^~\\&|${ESC}[31mRED${ESC}[0m\rPID|1||x${ESC}]52;c;Y3VybCBldmls\x07`,
  })
  const { id } = (await res.json()) as { id: string }
  await until(() => handles[0]!.counters().errors === 1)
  ac.abort()
  await done
  return id
}

describe('weir messages show escapes control characters', () => {
  it('in the text view: body, error and response excerpt', async () => {
    const id = await deliverOneBadMessage()
    const s = io(d.dir)
    expect(await messagesCommand(['show', id, '--data-dir', 'data'], s.io)).toBe(0)
    const text = s.out.join('\n')
    expect(text).not.toMatch(CONTROLS)
    expect(text).toContain('MSH|^~\\&|\\x1b[31mRED\\x1b[0m\nPID|1||x\\x1b]52;c;Y3VybCBldmls\\x07')
    expect(text).toContain('bad \\x1b[2J\\x1b]0;pwned\\x07 \\u202egnorw\\x9b31m')
  })

  it('in --json and in the list', async () => {
    const id = await deliverOneBadMessage()
    const j = io(d.dir)
    expect(await messagesCommand(['show', id, '--json', '--data-dir', 'data'], j.io)).toBe(0)
    expect(j.out.join('\n')).not.toMatch(CONTROLS)
    const shown = JSON.parse(j.out.join('\n')) as { body: string }
    expect(shown.body).toContain(`${ESC}[31mRED`) // --json keeps the value: only its printed form is escaped
    const l = io(d.dir)
    expect(await messagesCommand(['list', '--data-dir', 'data'], l.io)).toBe(0)
    expect(l.out.join('\n')).not.toMatch(CONTROLS)
  })
})
