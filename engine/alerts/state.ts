/** What the notifier remembers of one (alert, subject) pair; kept in the store so a restart or a new leader goes on from it. */
export interface AlertState {
  firing: boolean
  /** When the current (or last) firing started (epoch ms). */
  since?: number
  /** When the last "firing" notification was sent. */
  lastFiredAt?: number
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
 * - A new firing is not sent sooner than `minIntervalMs` after the last one; it is sent when that
 *   time has passed if the condition still holds.
 */
export function step(state: AlertState, active: boolean, now: number, h: Hysteresis): { state: AlertState; transition?: Transition } {
  if (state.firing) {
    if (active) return { state: state.clearSince === undefined ? state : { ...state, clearSince: undefined } }
    const clearSince = state.clearSince ?? now
    if (now - clearSince >= h.clearAfterMs) return { state: { firing: false, since: state.since, lastFiredAt: state.lastFiredAt }, transition: 'resolved' }
    return { state: state.clearSince === undefined ? { ...state, clearSince } : state }
  }
  if (!active) return { state }
  if (state.lastFiredAt !== undefined && now - state.lastFiredAt < h.minIntervalMs) return { state }
  return { state: { firing: true, since: now, lastFiredAt: now }, transition: 'firing' }
}
