import type { DeliveryCall, Recording } from './instrument.ts'
import { containsSubset, short } from './match.ts'
import type { DeliveryExpectation } from './test-file.ts'

/** The body as a string: a text body as is, anything else as JSON. */
const bodyText = (body: unknown) => (typeof body === 'string' ? body : JSON.stringify(body) ?? '')

const matches = (c: DeliveryCall, e: DeliveryExpectation) =>
  (e.body === undefined || containsSubset(c.body, e.body)) &&
  (e.bodyMatches === undefined || new RegExp(e.bodyMatches).test(bodyText(c.body))) &&
  (e.contentType === undefined || new RegExp(e.contentType).test(c.contentType))

/** What a failing expectation looked for, e.g. `with {"a":1}, matching /x/`. */
function wanted(e: DeliveryExpectation): string {
  const parts = [e.body !== undefined && `with ${short(e.body)}`, e.bodyMatches !== undefined && `matching /${e.bodyMatches}/`, e.contentType !== undefined && `of type /${e.contentType}/`]
  return parts.filter(Boolean).join(', ')
}

/**
 * Checks `expect.deliveries` against what each destination's `deliver` was handed (recorded for
 * every destination, built-in or loaded by module path). A delivery is a call that returned.
 */
export function checkDeliveries(expected: Record<string, DeliveryExpectation | DeliveryExpectation[]>, recording: Recording): string[] {
  const f: string[] = []
  for (const [name, value] of Object.entries(expected)) {
    const calls = recording.deliveries.get(name)
    if (!calls) { f.push(`expect.deliveries.${name}: the channel has no destination "${name}" (it has ${[...recording.deliveries.keys()].map((n) => `"${n}"`).join(', ')})`); continue }
    const delivered = calls.filter((c) => c.outcome === 'delivered')
    for (const [i, e] of (Array.isArray(value) ? value : [value]).entries()) {
      const at = Array.isArray(value) ? `expect.deliveries.${name}[${i}]` : `expect.deliveries.${name}`
      const n = delivered.filter((c) => matches(c, e)).length
      if (e.count === undefined ? n > 0 : n === e.count) continue
      const seen = delivered.slice(0, 3).map((c) => `${c.contentType} ${short(c.body)}`).join('; ')
      const failedAttempts = calls.length - delivered.length
      f.push(`${at}: ${n} matching deliveries${e.count !== undefined ? `, expected ${e.count}` : ''}${wanted(e) ? ` (${wanted(e)})` : ''}; "${name}" delivered ${delivered.length}${seen ? `: ${seen}` : ''}${failedAttempts ? `; ${failedAttempts} attempt(s) failed: ${short(calls.find((c) => c.outcome === 'failed')!.error)}` : ''}`)
    }
  }
  return f
}
