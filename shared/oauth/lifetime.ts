import { errorCodes, type WeirError } from '../errors.ts'

/** Non-enumerable mark on a provider's ERR_SHUTDOWN error: which provider was closed. */
const CLOSED_PROVIDER = Symbol('weir.closedProvider')

/** The provider an ERR_SHUTDOWN error comes from, if it is one. */
export function closedProviderOf(e: unknown): ProviderLifetime | undefined {
  return (e as Record<symbol, ProviderLifetime | undefined> | undefined)?.[CLOSED_PROVIDER]
}

/**
 * The life of one token provider: aborted by close(), it cancels the provider's token requests,
 * backoff waits and waiters. The waits ended by close() share one listener on the lifetime signal
 * however many callers wait (64 deliveries waiting for a renewal would otherwise trip
 * MaxListenersExceededWarning).
 */
export class ProviderLifetime {
  readonly #controller = new AbortController()
  readonly #waiters = new Set<(reason: unknown) => void>()

  constructor(readonly credential: string) {
    this.signal.addEventListener('abort', () => {
      for (const w of this.#waiters) w(this.signal.reason)
      this.#waiters.clear()
    }, { once: true })
  }

  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** ERR_SHUTDOWN, marked as this provider's, so waiters of other providers sharing the slot can tell. */
  shutdownError(): WeirError {
    const e = new errorCodes.ERR_SHUTDOWN(`credential "${this.credential}": provider closed`)
    Object.defineProperty(e, CLOSED_PROVIDER, { value: this, enumerable: false })
    return e
  }

  close(): void {
    if (!this.signal.aborted) this.#controller.abort(this.shutdownError())
  }

  /** The reason of the first aborted of the caller's signal and this lifetime (as AbortSignal.any orders them). */
  abortedBy(callerSignal?: AbortSignal): { reason: unknown } | undefined {
    if (callerSignal?.aborted) return { reason: callerSignal.reason }
    return this.signal.aborted ? { reason: this.signal.reason } : undefined
  }

  /** `p`, unless the caller's signal or this lifetime ends the wait first. */
  waitFor<T>(p: Promise<T>, callerSignal?: AbortSignal): Promise<T> {
    const aborted = this.abortedBy(callerSignal)
    if (aborted) return Promise.reject(aborted.reason)
    return new Promise((resolve, reject) => {
      const onAbort = () => { this.#waiters.delete(reject); reject(callerSignal!.reason) }
      callerSignal?.addEventListener('abort', onAbort, { once: true })
      this.#waiters.add(reject)
      p.then(resolve, reject).finally(() => {
        callerSignal?.removeEventListener('abort', onAbort)
        this.#waiters.delete(reject)
      })
    })
  }

  /** Waits `ms` (a retry backoff); close() ends it with ERR_SHUTDOWN. */
  sleep(ms: number): Promise<void> {
    const signal = this.signal
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer)
        reject(this.shutdownError())
      }
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }, ms)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
}
