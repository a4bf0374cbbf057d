import type { MessageStore } from '../../shared/store/types.ts'

/** How old a size reading may be before the next emit reads it again. */
const MAX_AGE_MS = 1000

/** The store's size on disk, read at most once a second however many channels ask (one reading per store). */
export interface StoreSizeReading {
  /** The latest size in bytes, or undefined when it cannot be read (a limit is then not enforced). */
  current(): Promise<number | undefined>
}

const readings = new WeakMap<MessageStore, StoreSizeReading>()

export function storeSizeOf(store: MessageStore, now: () => number): StoreSizeReading {
  let r = readings.get(store)
  if (!r) {
    let at = -Infinity
    let value: Promise<number | undefined> = Promise.resolve(undefined)
    r = {
      current() {
        if (now() - at >= MAX_AGE_MS) {
          at = now()
          value = store.size().catch(() => undefined)
        }
        return value
      },
    }
    readings.set(store, r)
  }
  return r
}
