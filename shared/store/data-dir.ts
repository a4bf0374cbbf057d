import { chmodSync, closeSync, lstatSync, mkdirSync, openSync, statSync, type Stats } from 'node:fs'
import { StoreError } from './errors.ts'

/** The environment variable that accepts a data directory group or others may read (`1`). */
export const ALLOW_OPEN_DATA_DIR_ENV = 'WEIR_DATA_DIR_ALLOW_OPEN_MODE'

export interface DataDirOptions {
  /** Create the directory (mode 0700) when missing (default true). */
  create?: boolean
  /** Refuse an existing directory group or others may read or enter (default false). */
  refuseOpen?: boolean
  /** The command-line flag that accepts an open directory, named in the refusal (only where the command has one). */
  acceptOpenFlag?: string
}

const checksModes = process.platform !== 'win32'

/**
 * Makes sure `dir` holds patient data for its owner alone: creates it mode 0700 whatever the umask,
 * and, with `refuseOpen`, refuses (ERR_STORE) an existing directory whose mode lets group or others in.
 * Returns false when the directory is missing and `create` is false.
 */
export function secureDataDir(dir: string, options: DataDirOptions = {}): boolean {
  let mode: number
  try {
    mode = statSync(dir).mode & 0o777
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new StoreError(`cannot read the data directory ${dir}: ${(e as Error).message}`, { cause: e })
    if (options.create === false) return false
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    if (checksModes) chmodSync(dir, 0o700)
    return true
  }
  if (checksModes && mode & 0o077 && options.refuseOpen) {
    throw new StoreError(`the data directory ${dir} may be read by group or others (mode 0${mode.toString(8)}); it holds patient data: chmod 700 it (or ${options.acceptOpenFlag ? `start with ${options.acceptOpenFlag}, or ` : ''}set ${ALLOW_OPEN_DATA_DIR_ENV}=1)`)
  }
  return true
}

/**
 * The lstat of a store file, undefined when it is missing; a symbolic link is refused (ERR_STORE),
 * never followed (weir run, weir messages and weir backup alike).
 */
export function refuseSymbolicLink(file: string): Stats | undefined {
  let st
  try {
    st = lstatSync(file)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new StoreError(`cannot read ${file}: ${(e as Error).message}`, { cause: e })
  }
  if (st.isSymbolicLink()) throw new StoreError(`${file} is a symbolic link; Weir does not follow it (patient data would go where it points): replace it with a file of its own`)
  return st
}

/**
 * Takes group and others' access away from `file` when it exists (a store an older Weir created
 * 0644). A symbolic link is refused (ERR_STORE), never followed: patient data is not written, nor
 * a mode changed, outside the file Weir means.
 */
export function tightenFile(file: string): void {
  const st = refuseSymbolicLink(file)
  if (!st || !checksModes) return
  try {
    const mode = st.mode & 0o777
    if (mode & 0o077) chmodSync(file, mode & 0o700)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' && code !== 'EPERM') throw new StoreError(`cannot restrict the mode of ${file}: ${(e as Error).message}`, { cause: e })
  }
}

/** Creates `file` empty with mode 0600 whatever the umask (SQLite then gives its -wal and -shm files the same mode); an existing one is tightened (a symbolic link refused). */
export function createOwnerOnlyFile(file: string): void {
  try {
    closeSync(openSync(file, 'wx', 0o600))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new StoreError(`cannot create ${file}: ${(e as Error).message}`, { cause: e })
  }
  tightenFile(file)
}
