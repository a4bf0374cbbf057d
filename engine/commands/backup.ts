import { closeSync, existsSync, fchmodSync, lstatSync, openSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs'
import { basename, dirname, join, resolve, sep } from 'node:path'
import Database from 'better-sqlite3'
import { dataDirOf, expectArgs, parseFlags, type CommandIO } from '../cli-io.ts'
import { storeOptions, storeUrlOf } from '../store.ts'
import { refuseSymbolicLink } from '../../shared/store/data-dir.ts'

export const summary = 'copy the message store while weir run is running (online backup)'
export const usage = `usage: weir backup <dest-file> [--data-dir D] [--force]

Copies the embedded message store (<data-dir>/weir.db) to <dest-file> through SQLite's
online backup API: a consistent snapshot, taken beside a running "weir run" without
stopping it. The copy is written mode 0600 (it holds patient data) and is a complete
store: put it in an empty data directory (mode 0700) as weir.db to restore it. It is written
first to <dest-file>.partial-<pid>, created by the backup alone: a file already at that name
is refused (never written into), then renamed over <dest-file> once complete.
<dest-file> may not be in the data directory (the store, its -wal, -shm or -journal, or any other
file there), even with --force; a symbolic link at weir.db, weir.db-wal or weir.db-shm is refused.
Not copied: <data-dir>/oauth (refresh tokens, the store key of encrypted content): back it
up too, as files.

  --data-dir D   the message store (default ./data, or $WEIR_DATA_DIR)
  --force        overwrite <dest-file> when it exists (refused otherwise)

A PostgreSQL store (--store or $WEIR_STORE) is backed up with pg_dump, not with weir backup.

exit status: 0 once the copy is complete, 1 when it cannot be made, 2 on bad usage`

/** Copies `source` (a live SQLite database) to `dest` in one backup step after the first, so the engine's commits cannot restart it for ever. */
async function copy(source: string, dest: string): Promise<{ totalPages: number }> {
  const db = new Database(source, { fileMustExist: true })
  try {
    db.pragma('busy_timeout = 5000')
    let total = 0
    await db.backup(dest, { progress: ({ totalPages }) => { total = totalPages; return Math.max(totalPages, 100) } })
    return { totalPages: total }
  } finally {
    db.close()
  }
}

/**
 * Creates the partial copy `file` empty, mode 0600 whatever the umask, and exclusively: a file
 * already at that name (a symbolic link, another user's file, one with a loose mode that its owner
 * may hold open) is never written into, nor removed, but refused.
 */
function createPartial(file: string): void {
  let fd: number
  try {
    fd = openSync(file, 'wx', 0o600)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    const link = lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink()
    throw new Error(link
      ? `${file} is a symbolic link; Weir does not follow it (the copy would go where it points): remove it and run weir backup again`
      : `${file} already exists and was not created by this backup (an earlier one killed, or a file someone else put there); weir backup does not write into it: remove it and run weir backup again`)
  }
  try {
    fchmodSync(fd, 0o600)
  } finally {
    closeSync(fd)
  }
}

/** The files of the SQLite store in a data directory: none of them is ever a backup's destination. */
const STORE_FILES = ['weir.db', 'weir.db-wal', 'weir.db-shm', 'weir.db-journal']

/** `path` with its symbolic links resolved, or `path` itself when it cannot be (missing). */
function realOrSelf(path: string): string {
  try {
    return realpathSync(path)
  } catch {
    return path
  }
}

/**
 * Why `dest` must not be written, or undefined: the store itself or one of its files (by real path,
 * and by device and inode for a hard link elsewhere), or any other file in the data directory (a
 * backup there is lost with it and may overwrite the lock or the oauth keys). `dest` is the path the
 * copy is renamed to: a symbolic link there would itself be replaced, but its directory is resolved.
 */
function destinationProblem(dest: string, dataDir: string): string | undefined {
  const realDir = realOrSelf(dataDir)
  const realDest = join(realOrSelf(dirname(dest)), basename(dest))
  const destStat = statSync(dest, { throwIfNoEntry: false })
  for (const f of STORE_FILES) {
    const store = join(realDir, f)
    const st = statSync(store, { throwIfNoEntry: false })
    if (realDest === store || (destStat && st && destStat.dev === st.dev && destStat.ino === st.ino)) {
      return `${dest} is the message store file ${join(dataDir, f)} itself; a backup must be written elsewhere (outside the data directory)`
    }
  }
  if (realDest.startsWith(realDir + sep)) {
    return `${dest} is inside the data directory ${dataDir}; a backup there is lost with the store and may overwrite the engine's files: write it elsewhere`
  }
  return undefined
}

/** `weir backup <dest-file>`: an online copy of the SQLite message store. */
export async function run(args: string[], io: CommandIO): Promise<number> {
  // The store's flags too, so that --store gets the answer below (pg_dump) rather than an unknown option.
  const { values, positionals } = parseFlags(args, { 'data-dir': { type: 'string' }, force: { type: 'boolean', default: false }, ...storeOptions }, 'backup')
  if (storeUrlOf(values, io) !== undefined) {
    io.err('weir backup: the PostgreSQL store is backed up with pg_dump (e.g. pg_dump --format=custom --file=weir.dump "$WEIR_STORE"); weir backup copies the embedded SQLite store of a data directory')
    return 2
  }
  if (positionals.length === 0) {
    io.err(usage)
    return 2
  }
  expectArgs(positionals, ['<dest-file>'], 'weir backup <dest-file> [--data-dir D] [--force]')
  const dataDir = dataDirOf(values['data-dir'], io)
  const source = join(dataDir, 'weir.db')
  const dest = resolve(io.cwd, positionals[0]!)
  try {
    // As weir run and weir messages do: a symbolic link at the store is refused, not followed.
    for (const f of ['weir.db', 'weir.db-wal', 'weir.db-shm']) refuseSymbolicLink(join(dataDir, f))
  } catch (e) {
    io.err(`weir backup: ${(e as Error).message}`)
    return 1
  }
  if (!existsSync(source)) {
    io.err(`weir backup: no message store in ${dataDir}`)
    return 1
  }
  const refused = destinationProblem(dest, dataDir)
  if (refused) {
    io.err(`weir backup: ${refused}`)
    return 1
  }
  if (existsSync(dest) && !values.force) {
    io.err(`weir backup: ${dest} exists; pass --force to overwrite it`)
    return 1
  }
  if (!existsSync(dirname(dest))) {
    io.err(`weir backup: the directory of ${dest} does not exist`)
    return 1
  }
  // Written beside the destination, then renamed over it: a failed backup never leaves half a copy under its name.
  const partial = `${dest}.partial-${process.pid}`
  let created = false
  try {
    createPartial(partial)
    created = true
    const { totalPages } = await copy(source, partial)
    renameSync(partial, dest)
    io.out(`backed up ${source} to ${dest}: ${totalPages} pages, ${statSync(dest).size} bytes`)
    return 0
  } catch (e) {
    io.err(`weir backup: cannot copy ${source} to ${dest}: ${(e as Error).message}`)
    return 1
  } finally {
    // Only what this backup created: a file it refused stays for its owner to see.
    if (created) for (const f of [partial, `${partial}-journal`, `${partial}-wal`, `${partial}-shm`]) rmSync(f, { force: true })
  }
}
