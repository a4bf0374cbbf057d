import { open } from 'node:fs/promises'

/** Where a directory cannot be opened or fsynced (Windows: EISDIR, EPERM; some file systems: EINVAL): nothing to do. */
const NO_DIR_SYNC = new Set(['EISDIR', 'EINVAL', 'EPERM'])

/**
 * Makes the entries of `dir` durable. A rename or link into a directory, or a directory made in it,
 * changes the directory, not the file: until the directory is fsynced a power loss can lose the new
 * name although the file's data was synced. Where directories cannot be synced, does nothing.
 */
export async function syncDir(dir: string): Promise<void> {
  let fh
  try {
    fh = await open(dir, 'r')
  } catch (e) {
    if (NO_DIR_SYNC.has((e as NodeJS.ErrnoException).code ?? '')) return
    throw e
  }
  try {
    await fh.sync()
  } catch (e) {
    if (!NO_DIR_SYNC.has((e as NodeJS.ErrnoException).code ?? '')) throw e
  } finally { await fh.close() }
}
