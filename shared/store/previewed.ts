import { errorCodes } from '../errors.ts'
import { StoreError } from './errors.ts'
import type { ResubmitTarget } from './types.ts'

/**
 * A resubmit of a confirmed preview as a backend's write runs it: the ids, each with the `updatedAt`
 * it was previewed with (one per id), and whether one changed since refuses them all.
 */
export interface PreviewedSet {
  ids: string[]
  stamps: number[]
  all: boolean
}

/**
 * `target.asPreviewed` as a backend's write takes it (the first stamp of an id given twice), or
 * undefined for a resubmit of `ids` or `status`; both at once is a caller's mistake.
 */
export function previewedSet(target: ResubmitTarget): PreviewedSet | undefined {
  if (!target.asPreviewed) return undefined
  if (target.ids || target.status) throw new errorCodes.ERR_INTERNAL('a resubmit takes asPreviewed, or ids and status, not both')
  const stamps = new Map<string, number>()
  for (const m of target.asPreviewed) if (!stamps.has(m.id)) stamps.set(m.id, m.updatedAt)
  return { ids: [...stamps.keys()], stamps: [...stamps.values()], all: target.changed !== 'skip' }
}

/** Throws the conflict of a resubmit of `set` that refuses changed messages when it queued fewer than all (then it queued none). */
export function refuseChanged(set: PreviewedSet | undefined, queued: number): void {
  if (!set?.all || queued === set.ids.length) return
  throw new StoreError(`resubmit refused: of the ${set.ids.length} previewed message(s), some changed since the preview (resubmitted, purged or finished again meanwhile); nothing was resubmitted`, { conflict: true })
}
