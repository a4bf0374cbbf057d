import { Worker } from 'node:worker_threads'
import { StoreError } from '../errors.ts'

type Waiter = { resolve: (v: any) => void; reject: (e: unknown) => void; after?: ((v: any) => unknown) | undefined }
type Result = [id: number, ok: boolean, value: any]

const THREAD = new URL('./thread.js', import.meta.url)

/**
 * The main thread's side of the writer thread (thread.js): operations cross the thread boundary in
 * batches, one batch at a time (everything asked for while the thread works on the previous one),
 * and each promise settles when the thread reports its transaction committed. The main thread
 * never waits on SQLite or on fsync.
 */
export class WriterClient {
  private readonly worker: Worker
  private outbox: unknown[][] = []
  private readonly waiting = new Map<number, Waiter>()
  private nextId = 1
  private scheduled = false
  /** A batch is with the thread and not yet answered. */
  private posted = false
  private failed: StoreError | undefined
  private readonly exited: Promise<void>

  constructor(file: string, synchronous: 'FULL' | 'NORMAL') {
    this.worker = new Worker(THREAD, { workerData: { file, synchronous } })
    this.worker.unref()
    this.worker.on('message', (results: Result[]) => this.settle(results))
    this.worker.on('error', (e) => this.fail(new StoreError(`message store thread failed: ${e.message}`, { cause: e })))
    this.exited = new Promise((resolve) => this.worker.once('exit', () => {
      this.fail(new StoreError('message store is closed'))
      resolve()
    }))
  }

  /**
   * Runs `name` in the writer thread; resolves once its transaction has committed, with its result
   * passed through `after`. `after` runs synchronously as results arrive, in the order the
   * operations were asked for, so the caller's bookkeeping sees commits in their true order.
   */
  call<T, R = T>(name: string, args: unknown[], after?: (value: T) => R): Promise<R> {
    if (this.failed) return Promise.reject(this.failed)
    const id = this.nextId++
    return new Promise<R>((resolve, reject) => {
      if (this.waiting.size === 0) this.worker.ref() // an awaited write keeps the process alive; an idle store does not
      this.waiting.set(id, { resolve, reject, after })
      this.post([id, name, ...args])
    })
  }

  /** Runs `name` in the writer thread without waiting for it (writes whose loss in a crash is harmless). */
  send(name: string, args: unknown[]): void {
    if (!this.failed) this.post([0, name, ...args])
  }

  /**
   * Posts what is waiting in the outbox, unless a batch is still with the thread: then it goes when
   * that batch is answered. One batch at a time costs nothing in latency (the thread runs one
   * transaction at a time and takes in everything waiting when it starts the next) and spares a
   * structured clone and a thread wake-up per turn of the event loop.
   */
  flush(): void {
    this.scheduled = false
    if (this.outbox.length === 0 || this.posted) return
    const ops = this.outbox
    this.outbox = []
    this.posted = true
    this.worker.postMessage({ ops })
  }

  /** Lets every operation already asked for finish, then closes the connection and ends the thread. */
  async close(): Promise<void> {
    if (!this.failed) {
      // Whatever is still in the outbox goes with the close, behind a batch the thread may be running.
      const ops = this.outbox
      this.outbox = []
      this.worker.ref()
      this.worker.postMessage({ ops, close: true })
      this.failed = new StoreError('message store is closed')
    }
    await this.exited
  }

  private post(op: unknown[]): void {
    this.outbox.push(op)
    this.schedule()
  }

  /** Flushes at the end of this turn, so that the rest of the turn's operations join the batch; not while a batch is with the thread. */
  private schedule(): void {
    if (this.scheduled || this.posted || this.outbox.length === 0) return
    this.scheduled = true
    setImmediate(() => this.flush())
  }

  private settle(results: Result[]): void {
    this.posted = false
    this.schedule()
    for (const [id, ok, value] of results) {
      const w = this.waiting.get(id)
      if (!w) continue
      this.waiting.delete(id)
      if (ok) {
        try {
          w.resolve(w.after ? w.after(value) : value)
        } catch (e) {
          w.reject(e)
        }
      } else {
        // A transaction that failed as a whole (busy, disk full) wrote nothing: the operation may be retried.
        w.reject(new StoreError(`message store ${value.read ? 'read' : 'write'} failed: ${value.message}`, { retryable: value.batch === true }))
      }
    }
    // An idle store does not keep the process alive; a closing one does, until its thread has exited.
    if (this.waiting.size === 0 && !this.failed) this.worker.unref()
  }

  private fail(err: StoreError): void {
    this.failed ??= err
    for (const w of this.waiting.values()) w.reject(this.failed)
    this.waiting.clear()
  }
}
