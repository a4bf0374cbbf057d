import { errorCodes, type WeirErrorOptions } from '../errors.ts'

/** `ERR_STORE`: the message store cannot do what was asked (locked, closed, missing); `retryable` when a write failed as a whole and wrote nothing. */
export class StoreError extends errorCodes.ERR_STORE {
  constructor(message: string, options: WeirErrorOptions & { retryable?: boolean } = {}) {
    super(message, { ...options, retryable: options.retryable ?? false })
  }
}
