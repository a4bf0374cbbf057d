import { WeirError } from '../errors.ts'

/** The message store cannot do what was asked (locked, closed, a failed write). */
export class StoreError extends WeirError {
  override code = 'ERR_STORE' as const
}
