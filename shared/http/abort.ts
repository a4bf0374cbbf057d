/**
 * Per-request abort signals without `AbortSignal.any` / `AbortSignal.timeout`. On Node 20 each
 * `AbortSignal.any([long-lived, …])` leaves an entry in the long-lived signal's dependant set, and
 * each `AbortSignal.timeout(ms)` keeps a timer (and its signal) for the full `ms` after the request
 * ended: per-request garbage, RSS growth and timer-list work on the hot path. Here a request gets
 * one AbortController and one timer, both released by `done()`.
 */

/** What `AbortSignal.timeout()` aborts with: a DOMException named TimeoutError. */
function timeoutReason(): DOMException {
  return new DOMException('The operation was aborted due to timeout', 'TimeoutError')
}

function abortTimedOut(target: Abortable): void {
  target.abort(timeoutReason())
}

/** Something a request can be aborted through: an AbortController, or the HTTP client's own request state. */
export interface Abortable {
  abort(reason?: unknown): void
}

/**
 * The requests each external signal bounds. One 'abort' listener per external signal however many
 * requests share it (every delivery of a channel shares the channel's long-lived signal: a listener
 * per request would trip MaxListenersExceededWarning at 11 in flight); a request's entry is removed
 * when it ends.
 */
const boundBy = new WeakMap<AbortSignal, Set<Abortable>>()

/** Aborts `target` with the reason of `external` when it aborts (at once when it already has); undo with `unlinkAbort`. */
export function linkAbort(external: AbortSignal, target: Abortable): void {
  if (external.aborted) {
    target.abort(external.reason)
    return
  }
  let set = boundBy.get(external)
  if (!set) {
    const targets = (set = new Set())
    boundBy.set(external, targets)
    external.addEventListener('abort', () => {
      boundBy.delete(external)
      for (const t of targets) t.abort(external.reason)
      targets.clear()
    }, { once: true })
  }
  set.add(target)
}

export function unlinkAbort(external: AbortSignal, target: Abortable): void {
  boundBy.get(external)?.delete(target)
}

/** Aborts `target` with a TimeoutError DOMException after `ms`; a timer that does not keep the process alive. */
export function abortAfter(ms: number, target: Abortable): NodeJS.Timeout {
  const timer = setTimeout(abortTimedOut, ms, target)
  timer.unref()
  return timer
}

export interface BoundedSignal {
  /** Aborts with the external signal's reason, or with a TimeoutError DOMException after `timeoutMs`. */
  readonly signal: AbortSignal
  /** Clears the timer and unlinks the external signal; call once the request (and its body) is done. */
  done(): void
}

/**
 * A signal that aborts when `external` does (same reason) or after `timeoutMs` (a DOMException named
 * TimeoutError, like `AbortSignal.timeout`), whichever comes first. Like `AbortSignal.timeout`, the
 * timer does not keep the process alive.
 *
 * @example
 * const b = boundedSignal(30_000, ctx.signal)
 * try { return await fetch(url, { signal: b.signal }) } finally { b.done() }
 */
export function boundedSignal(timeoutMs: number, external?: AbortSignal): BoundedSignal {
  const controller = new AbortController()
  if (external) linkAbort(external, controller)
  const timer = abortAfter(timeoutMs, controller)
  return {
    signal: controller.signal,
    done() {
      clearTimeout(timer)
      if (external) unlinkAbort(external, controller)
    },
  }
}
