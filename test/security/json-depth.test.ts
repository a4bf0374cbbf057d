import { expect, it } from 'vitest'
import { jsonDeeperThan } from '../../shared/inbound/json-depth.ts'

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth)
const bytes = (text: string) => new TextEncoder().encode(text)

// The byte scan runs only when the text holds more opening brackets than the limit; these cases
// sit on both sides of that shortcut, as Buffers and as plain Uint8Arrays (a view into a larger buffer too).
it.each([
  ['as deep as the limit', nested(8), false],
  ['one deeper', nested(9), true],
  ['many brackets, all inside a string', JSON.stringify({ a: '['.repeat(50), b: [[1]] }), false],
  ['many shallow siblings', JSON.stringify(Array.from({ length: 50 }, () => [{}])), false],
  ['objects and arrays mixed, one deeper', '{"a":'.repeat(5) + nested(4) + '}'.repeat(5), true],
])('%s', (_, text, deeper) => {
  expect(jsonDeeperThan(Buffer.from(text), 8)).toBe(deeper)
  expect(jsonDeeperThan(bytes(text), 8)).toBe(deeper)
  // Brackets outside the view: a check that read the whole buffer would count them.
  const padded = bytes(`${'['.repeat(20)}${text}${']'.repeat(20)}`)
  expect(jsonDeeperThan(padded.subarray(20, padded.length - 20), 8)).toBe(deeper)
})
