import { errorCodes, type WeirErrorOptions } from '../errors.ts'

/** `ERR_STORE`: the message store cannot do what was asked (locked, closed, missing); `retryable` when a write failed as a whole and wrote nothing. */
export class StoreError extends errorCodes.ERR_STORE {
  /** A store that was only to be opened, not created (`create: false`), is not there: a command may say how to name the one meant. */
  readonly missing?: true
  /** A resubmit of a confirmed preview (`ResubmitTarget.asPreviewed`) found messages changed since: it queued none. */
  readonly conflict?: true
  constructor(message: string, options: WeirErrorOptions & { retryable?: boolean; missing?: boolean; conflict?: boolean } = {}) {
    const { missing, conflict, ...rest } = options
    super(message, { ...rest, retryable: rest.retryable ?? false })
    if (missing) this.missing = true
    if (conflict) this.conflict = true
  }
}

/** Whether `e` is a store's refusal of a resubmit whose previewed messages changed meanwhile (see `StoreError.conflict`). */
export function isResubmitConflict(e: unknown): boolean {
  return (e as { code?: unknown } | null)?.code === 'ERR_STORE' && (e as StoreError).conflict === true
}
