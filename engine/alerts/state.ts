/** What the notifier remembers of one (alert, subject) pair; kept in the store so a restart or a new leader goes on from it. */
export interface AlertState {
  firing: boolean
  /** When the current (or last) firing started (epoch ms). */
  since?: number
  /** When the last "firing" notification was sent. */
  lastFiredAt?: number
  /** When the last "resolved" notification was sent. */
  resolvedAt?: number
  /** The current (or last) firing came less than `minIntervalMs` after a "resolved": its own "resolved" waits longer (see step). */
  flapping?: boolean
  /** While firing: since when the condition has been seen clear. */
  clearSince?: number
}

export interface Hysteresis {
  minIntervalMs: number
  clearAfterMs: number
}

export type Transition = 'firing' | 'resolved'

/**
 * One evaluation of a pair: ok → firing (one "firing") → ok (one "resolved").
 * - A firing is resolved only once the condition has stayed clear for `clearAfterMs`: a condition
 *   that comes back sooner (a breaker that closes and opens again) stays the same firing.
 * - A condition that holds while the pair is ok is always sent at once, however soon after a
 *   "resolved": the operator was told it cleared, so a new wave must not go unseen.
 * - Flapping is damped on the "resolved" side instead: a firing less than `minIntervalMs` after the
 *   last "resolved" is `flapping`, and is resolved only once the condition has stayed clear for
 *   `minIntervalMs` (if longer than `clearAfterMs`). Until then it is still firing, as the last
 *   notification said, so a wave meanwhile is not missed either.
 */
export function step(state: AlertState, active: boolean, now: number, h: Hysteresis): { state: AlertState; transition?: Transition } {
  if (state.firing) {
    if (active) return { state: state.clearSince === undefined ? state : { ...state, clearSince: undefined } }
    const clearSince = state.clearSince ?? now
    const holdMs = state.flapping ? Math.max(h.clearAfterMs, h.minIntervalMs) : h.clearAfterMs
    if (now - clearSince >= holdMs) {
      const { clearSince: _, ...rest } = state
      return { state: { ...rest, firing: false, resolvedAt: now }, transition: 'resolved' }
    }
    return { state: state.clearSince === undefined ? { ...state, clearSince } : state }
  }
  if (!active) return { state }
  const flapping = state.resolvedAt !== undefined && now - state.resolvedAt < h.minIntervalMs
  return { state: { firing: true, since: now, lastFiredAt: now, ...(flapping ? { flapping } : {}) }, transition: 'firing' }
}
