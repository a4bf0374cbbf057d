/** The median of `xs`, NaN values left out (a variant missing from a round); the mean of the middle two for an even count; NaN when none is left. */
export function median(xs: readonly number[]): number {
  const a = xs.filter((x) => !Number.isNaN(x)).sort((p, q) => p - q)
  if (a.length === 0) return NaN
  return a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2
}
