import type { StoreFailure } from './types.ts'

/** Failures kept per store for channels nobody listens to yet (the oldest dropped beyond). */
const KEPT = 1000

type Listener = (f: StoreFailure) => void

/**
 * A store's messages put in error on its own (see `MessageStore.watchFailures`): each is told once,
 * to the listeners of its channel at the time, or kept until one comes (a store gives up on a
 * crashed run's messages as it opens, before any channel runs).
 */
export class StoreFailures {
  readonly #listeners = new Map<string, Set<Listener>>()
  #waiting: StoreFailure[] = []

  add(f: StoreFailure): void {
    const ls = this.#listeners.get(f.channel)
    if (!ls?.size) {
      this.#waiting.push(f)
      if (this.#waiting.length > KEPT) this.#waiting.shift()
      return
    }
    for (const l of ls) tell(l, f)
  }

  watch(channel: string, listener: Listener): () => void {
    let ls = this.#listeners.get(channel)
    if (!ls) this.#listeners.set(channel, (ls = new Set()))
    ls.add(listener)
    const mine = this.#waiting.filter((f) => f.channel === channel)
    if (mine.length) {
      this.#waiting = this.#waiting.filter((f) => f.channel !== channel)
      for (const f of mine) tell(listener, f)
    }
    return () => { ls.delete(listener) }
  }
}

function tell(listener: Listener, f: StoreFailure): void {
  try {
    listener(f)
  } catch { /* a listener's failure is not the store's */ }
}
