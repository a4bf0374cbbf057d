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
  return pausesOf(await store.getState(channel, COMPONENT, 'paused'))
}

/** The pauses a stored value holds (none when absent). */
function pausesOf(value: unknown): PauseState {
  const s = value as Partial<PauseState> | undefined
  return { channel: s?.channel === true, destinations: Array.isArray(s?.destinations) ? s.destinations : [] }
}

/** Swaps lost in a row before a change gives up: each loss means another writer's change went through, so only a storm of them gets here. */
const MAX_SWAPS = 100

/**
 * Changes a channel's pauses with a compare-and-swap in the store, read again and changed again when
 * another engine of the cluster wrote them in between: a read and a write of their own would let
 * two operators pausing two destinations on two engines at once lose one of the pauses (or resumes).
 */
export async function changePauses(store: MessageStore, channel: string, change: (s: PauseState) => PauseState): Promise<PauseState> {
  for (let i = 0; i < MAX_SWAPS; i++) {
    const stored = await store.getState(channel, COMPONENT, 'paused')
    const next = change(pausesOf(stored))
    if (await store.swapState(channel, COMPONENT, 'paused', stored, next)) return next
  }
  throw new Error(`the pauses of channel "${channel}" kept changing: ${MAX_SWAPS} changes lost to other engines in a row`)
}

/**
 * A channel's operator pauses: read from the store at start (and, in a cluster, again every few
 * seconds), changed by `set`, and applied by `apply` to the claim loop and the destinations.
 *
 * Loads and changes take turns: each `set` reads what the one before it wrote, so two operators
 * pausing two destinations at once pause both, and the state applied last is the one written last.
 * Across engines, `changePauses` swaps in the store what it read for what it writes.
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
      this.#use(await changePauses(this.store, this.channel, (s) => {
        if (destination === undefined) return { ...s, channel: paused }
        return { ...s, destinations: paused ? [...new Set([...s.destinations, destination])] : s.destinations.filter((d) => d !== destination) }
      }))
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
