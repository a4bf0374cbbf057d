import type { MessageStore } from '../../shared/store/types.ts'

/** A hold an operator puts on a channel or a destination: work waits at it until resumed. */
export class PauseGate {
  #paused = false
  #waiters = new Set<() => void>()

  get paused(): boolean {
    return this.#paused
  }

  set(paused: boolean): void {
    this.#paused = paused
    if (paused) return
    const w = [...this.#waiters]
    this.#waiters.clear()
    for (const f of w) f()
  }

  /** Resolves at once when not paused, else when resumed; rejects when `signal` aborts. */
  async wait(signal: AbortSignal): Promise<void> {
    while (this.#paused) {
      if (signal.aborted) throw signal.reason
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener('abort', done)
          this.#waiters.delete(done)
          resolve()
        }
        this.#waiters.add(done)
        signal.addEventListener('abort', done, { once: true })
      })
    }
  }
}

/** What an operator paused in a channel, kept in the store so that it outlives a restart and reaches every engine of a cluster. */
export interface PauseState {
  channel: boolean
  destinations: string[]
}

/** The store's component-state name for the channel's pauses (not a valid component name, so it cannot collide). */
const COMPONENT = '#operator'

export async function readPauses(store: MessageStore, channel: string): Promise<PauseState> {
  const s = await store.getState<PauseState>(channel, COMPONENT, 'paused')
  return { channel: s?.channel === true, destinations: Array.isArray(s?.destinations) ? s.destinations : [] }
}

export function writePauses(store: MessageStore, channel: string, state: PauseState): Promise<void> {
  return store.setState(channel, COMPONENT, 'paused', state)
}

/**
 * A channel's operator pauses: read from the store at start (and, in a cluster, again every few
 * seconds), changed by `set`, and applied by `apply` to the claim loop and the destinations.
 *
 * Loads and changes take turns: each `set` reads what the one before it wrote, so two operators
 * pausing two destinations at once pause both, and the state applied last is the one written last.
 */
export class OperatorPauses {
  state: PauseState = { channel: false, destinations: [] }
  #turn: Promise<void> = Promise.resolve()

  constructor(private readonly store: MessageStore, private readonly channel: string, private readonly apply: (s: PauseState) => void) {}

  load(): Promise<void> {
    return this.#inTurn(async () => {
      this.#use(await readPauses(this.store, this.channel))
    })
  }

  set(destination: string | undefined, paused: boolean): Promise<void> {
    return this.#inTurn(async () => {
      const s = await readPauses(this.store, this.channel)
      if (destination === undefined) s.channel = paused
      else s.destinations = paused ? [...new Set([...s.destinations, destination])] : s.destinations.filter((d) => d !== destination)
      await writePauses(this.store, this.channel, s)
      this.#use(s)
    })
  }

  /** Runs `step` after the steps before it have settled; its failure is the caller's, not the next step's. */
  #inTurn(step: () => Promise<void>): Promise<void> {
    const done = this.#turn.then(step)
    this.#turn = done.catch(() => {})
    return done
  }

  #use(s: PauseState): void {
    this.state = s
    this.apply(s)
  }
}
