/**
 * The channel's `concurrency`: how many attempts (a filter run, a delivery) may be under way at
 * once. A message waiting for its next retry holds no slot, so a key whose head is retrying holds up
 * only that key, never the channel's throughput.
 */
export class Slots {
  private free: number
  private readonly waiters: Array<() => void> = []

  constructor(size: number) {
    this.free = size
  }

  /** Runs `fn` in a slot, waiting (in arrival order) for one to be free. */
  async run<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    await this.acquire(signal)
    try {
      return await fn()
    } finally {
      this.release()
    }
  }

  private acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason)
    if (this.free > 0) {
      this.free--
      return Promise.resolve()
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(grant)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(signal.reason)
      }
      const grant = () => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(grant)
    })
  }

  private release(): void {
    const next = this.waiters.shift()
    if (next) next()
    else this.free++
  }
}
