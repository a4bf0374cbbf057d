import { afterEach, beforeEach } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { startApi, tempDir } from '../runtime/_helpers.ts'

export interface EngineFixture {
  dir: Awaited<ReturnType<typeof tempDir>>
  api: Awaited<ReturnType<typeof startApi>>
  /** `weir run` children started by the test, SIGKILLed after it. */
  children: Set<ChildProcess>
}

/** A fresh temporary directory and loopback API for each test, and clean-up of the engines it started. */
export function useEngineFixture(prefix: string): EngineFixture {
  const f = { children: new Set<ChildProcess>() } as EngineFixture
  beforeEach(async () => {
    f.dir = await tempDir(prefix)
    f.api = await startApi()
  })
  afterEach(async () => {
    for (const c of f.children) c.kill('SIGKILL')
    f.children.clear()
    await f.api.close()
    await f.dir.remove()
  })
  return f
}
