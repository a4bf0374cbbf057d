import { errorCodes, type WeirErrorOptions } from '../errors.ts'

/** `ERR_STORE`: the message store cannot do what was asked (locked, closed, missing); `retryable` when a write failed as a whole and wrote nothing. */
export class StoreError extends errorCodes.ERR_STORE {
  /** A store that was only to be opened, not created (`create: false`), is not there: a command may say how to name the one meant. */
  readonly missing?: true
  constructor(message: string, options: WeirErrorOptions & { retryable?: boolean; missing?: boolean } = {}) {
    const { missing, ...rest } = options
    super(message, { ...rest, retryable: rest.retryable ?? false })
    if (missing) this.missing = true
  }
}
