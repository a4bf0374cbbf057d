import { execFile, type ChildProcess } from 'node:child_process'
import { useEngineFixture } from '../runtime/_helpers.ts'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

const ROOT = resolve(import.meta.dirname, '../..')
const fixtures = join(ROOT, 'test/fixtures/runtime')

/** Writes `<dir>/at-rest.json`: the test HTTP source (port in `<dir>/at-rest.port`) and the given destinations. */
export async function atRestChannel(dir: string, destinations: unknown[], options: Record<string, unknown> = {}): Promise<string> {
  const file = join(dir, 'at-rest.json')
  await writeFile(file, JSON.stringify({
    name: 'at-rest',
    source: { type: join(fixtures, 'test-http-source.ts'), config: { port: 0, portFile: 'at-rest.port' } },
    destinations, options,
  }))
  return file
}

/** A destination posting to `url` (a loopback API). */
export const postTo = (url: string) => ({ name: 'api', type: join(fixtures, 'test-post-destination.ts'), config: { url } })

/** POSTs a JSON body to the test source; resolves with the stored message id. */
export async function post(port: number, body: unknown): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (res.status !== 202) throw new Error(`source answered ${res.status}`)
  return ((await res.json()) as { id: string }).id
}

/** Runs the real `weir <args>` CLI to completion. */
export async function weir(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(ROOT, 'bin/weir.js'), ...args], { cwd: ROOT, env: { ...process.env, CI: '1', ...env } })
    return { code: 0, out: stdout, err: stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

/** Stops a `weir run` child with SIGTERM and waits for it to exit. */
export function stop(run: { child: ChildProcess; exited: Promise<unknown> }): Promise<unknown> {
  run.child.kill('SIGTERM')
  return run.exited
}

/** The store's files (weir.db and its WAL) that hold `text` in clear. */
export async function filesHolding(data: string, text: string): Promise<string[]> {
  const found: string[] = []
  for (const f of ['weir.db', 'weir.db-wal']) {
    const bytes = await readFile(join(data, f)).catch(() => Buffer.alloc(0))
    if (bytes.includes(Buffer.from(text))) found.push(f)
  }
  return found
}

/** Per test: a temporary directory and a loopback API echoing the posted MRN (so response excerpts hold it too); `weir run` children are killed after. */
export const useAtRestFixture = (prefix: string) => useEngineFixture(prefix, ({ body }) => ({ status: 200, body: `accepted ${(body as { mrn: string }).mrn}` }))
