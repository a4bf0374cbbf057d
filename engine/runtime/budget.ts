import type { RetryPolicy } from '../../shared/config/types.ts'

/**
 * The one "may I retry again" decision of filters and destinations, so both give up at the same
 * point under the same policy: another attempt `delayMs` from now is allowed unless `attempts`
 * counted attempts spent `maxAttempts`, or waiting would pass `maxElapsedMs` (`elapsedMs` is the
 * time charged to the budget so far). Returns undefined when it is allowed, otherwise why not
 * ("4 attempts", "80 ms") for the "gave up after …" reason.
 */
export function exhausted(policy: Pick<RetryPolicy, 'maxAttempts' | 'maxElapsedMs'>, attempts: number, elapsedMs: number, delayMs: number): string | undefined {
  if (attempts >= policy.maxAttempts) return `${attempts} attempts`
  if (elapsedMs + delayMs > policy.maxElapsedMs) return `${elapsedMs} ms`
  return undefined
}
