import { linkSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { StoreError } from '../errors.ts'

const LOCK_FILE = 'weir.lock'

/** Lock files taken by stores open in this process (a same-pid lock not listed here is stale: a restarted container). */
const heldLocks = new Set<string>()

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function statMtime(file: string): number {
  try {
    return statSync(file).mtimeMs
  } catch {
    return 0
  }
}

function readPid(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim())
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

/**
 * Takes the data directory's lock: `weir.lock` created exclusively (`wx`), holding our pid. An
 * existing lock is taken over only when its process is dead; the stale file is first renamed
 * aside, so two processes breaking the same stale lock cannot both end up owning the directory.
 * `stale`: a dead process's lock was taken over, so the previous owner did not stop cleanly.
 */
export function acquireLock(dir: string): { file: string; stale: boolean } {
  const file = join(dir, LOCK_FILE)
  const inUse = (pid: number | undefined) => {
    const who = pid !== undefined && Number.isInteger(pid) && pid > 0 ? `process ${pid}` : 'another process'
    return new StoreError(`data directory ${dir} is in use by ${who}; stop it or use another --data-dir`)
  }
  let stale = false
  for (let i = 0; i < 5; i++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' })
      heldLocks.add(file)
      return { file, stale }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    const pid = readPid(file)
    if (pid === undefined) continue // released meanwhile
    const valid = Number.isInteger(pid) && pid > 0
    if (valid && (pid === process.pid ? heldLocks.has(file) : pidAlive(pid))) throw inUse(pid)
    // No pid yet: another process may be between its exclusive create and its write. Only an old one is stale.
    if (!valid && Date.now() - statMtime(file) < 5000) throw inUse(undefined)
    // Stale (dead process, or unreadable content): move it aside atomically, then check it was the one we judged.
    const aside = `${file}.${process.pid}.stale`
    try {
      renameSync(file, aside)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw e
    }
    const moved = readPid(aside)
    if (moved !== pid) {
      // Another process replaced the stale lock with its own between our read and the rename: put it back.
      try {
        linkSync(aside, file)
      } catch { /* a third process holds the lock now */ }
      unlinkSync(aside)
      throw inUse(moved)
    }
    unlinkSync(aside)
    stale = true
  }
  throw inUse(readPid(file))
}

/** Releases a lock taken by `acquireLock` (only if it still holds our pid). */
export function releaseLock(file: string): void {
  heldLocks.delete(file)
  try {
    if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file)
  } catch { /* already gone */ }
}
