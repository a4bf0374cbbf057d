import { isDeepStrictEqual } from 'node:util'

/** True when `actual` contains every field of `expected` (arrays: same length, element-wise subset). */
export function containsSubset(actual: unknown, expected: unknown): boolean {
  if (expected === null || typeof expected !== 'object') return isDeepStrictEqual(actual, expected)
  if (Array.isArray(expected)) return Array.isArray(actual) && actual.length === expected.length && expected.every((e, i) => containsSubset(actual[i], e))
  if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false
  return Object.entries(expected).every(([k, v]) => containsSubset((actual as Record<string, unknown>)[k], v))
}

/** A value as JSON, cut to one readable line for a failure message. */
export const short = (v: unknown) => { const s = JSON.stringify(v) ?? String(v); return s.length > 160 ? s.slice(0, 157) + '...' : s }
