import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseEr7, readHeader, serializeEr7 } from '../../shared/hl7v2/index.ts'

/** Separators: MSH-1 then MSH-2 (4 characters, sometimes 5 with the truncation character), default or not. */
const delimiters = fc.oneof(
  fc.constant('|^~\\&'),
  fc.shuffledSubarray([...'|^~\\&#$*!%@:;'], { minLength: 6, maxLength: 6 }).chain((c) => fc.boolean().map((five) => c.slice(0, five ? 6 : 5).join(''))),
)

const plain = fc.string({ unit: fc.constantFrom(...'AZaz09 .-/\'"\té中', 'Ω'), minLength: 1, maxLength: 6 })
/** Escape sequences written by the sender, named without the escape character. */
const escape = fc.constantFrom('F', 'S', 'T', 'R', 'E', 'X0D', 'X0A', 'X1C', 'H', 'N', '.br', '.sp2', '.in+4', 'P')

const KEPT = new Set(['H', 'N', '.br', '.sp2', '.in+4', 'P'])

/**
 * A leaf whose decoded text holds the escape character twice (two \E\, or \E\ and a formatting escape) may read
 * back as a formatting escape: "\E\ZA\.sp2\" decodes to "\ZA\.sp2\", which holds "\ZA\". The README says so.
 */
function unambiguous(e: string): (tokens: string[]) => boolean {
  return (tokens) => {
    const names = tokens.filter((t) => t.length > 1 && t.startsWith(e) && t.endsWith(e)).map((t) => t.slice(1, -1))
    const literal = names.filter((n) => n === 'E').length
    return literal === 0 || (literal === 1 && !names.some((n) => KEPT.has(n)))
  }
}

function er7(sep: string): fc.Arbitrary<string> {
  const [f, c, r, e, s] = [...sep]
  const leaf = fc.oneof(
    { weight: 1, arbitrary: fc.constant('""') },
    { weight: 6, arbitrary: fc.array(fc.oneof(plain, escape.map((x) => `${e}${x}${e}`)), { maxLength: 4 }).filter(unambiguous(e!)).map((t) => t.join('')) },
  )
  const join = <T extends string>(a: fc.Arbitrary<T>, by: string, max: number) => fc.array(a, { minLength: 1, maxLength: max }).map((x) => x.join(by))
  const field = join(join(join(leaf, s!, 3), c!, 4), r!, 3)
  const fields = fc.array(field, { maxLength: 8 }).map((x) => x.map((v) => f + v).join(''))
  const name = fc.constantFrom('PID', 'PV1', 'OBX', 'NTE', 'ZPD', 'Z01', 'IN1', 'EVN')
  const segment = fc.tuple(name, fields).map(([n, x]) => n + x)
  return fc.tuple(fields, fc.array(segment, { maxLength: 6 })).map(([msh, rest]) => ['MSH' + f + sep.slice(1) + msh, ...rest].map((x) => x + '\r').join(''))
}

const message = delimiters.chain(er7)

describe('parse then serialize', () => {
  it('is the identity on generated messages (escapes, repetitions, components, subcomponents, empty and null, any separators)', () => {
    fc.assert(fc.property(message, (text) => {
      const parsed = parseEr7(text)
      expect(serializeEr7(parsed)).toBe(text)
      expect(serializeEr7(JSON.parse(JSON.stringify(parsed)))).toBe(text)
      expect(readHeader(text).encodingCharacters).toBe((parsed as any).MSH[0][2])
    }), { numRuns: 500 })
  })

  // The escape character followed by a formatting escape (`\H\`, `\.br\`) is written as that escape, so the text part has no separators.
  it('keeps any text a map writes into a component, whatever the separators', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 12 }).filter((v) => ![...'|^~\\&#$*!%@:;'].some((c) => v.includes(c)))
    fc.assert(fc.property(delimiters, text, fc.string({ unit: fc.constantFrom('|', '^', '~', '\\', '&', '#', '\r', '\n', '\u000b', '\u001c', 'a'), maxLength: 8 }), (sep, a, b) => {
      const value = a + b
      const msh = { 1: sep[0]!, 2: sep.slice(1), 3: [{ 1: 'APP' }] }
      const out = serializeEr7({ segments: ['MSH', 'NTE'], MSH: [msh], NTE: [{ 3: [{ 1: 'x', 2: value }] }] })
      expect(out.split('\r')).toHaveLength(3)
      expect((parseEr7(out) as any).NTE[0][3][0][2]).toBe(value)
    }), { numRuns: 300 })
  })
})

describe('bad input', () => {
  it('is ERR_HL7_PARSE with a message or a parsed message, never another error', () => {
    const garbage = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b).toString('latin1')),
      fc.string({ maxLength: 40 }).map((s) => 'MSH' + s),
      fc.string({ maxLength: 40 }).map((s) => 'MSH|^~\\&|' + s),
    )
    fc.assert(fc.property(garbage, (text) => {
      for (const read of [parseEr7, readHeader]) {
        try {
          read(text)
        } catch (e) {
          expect((e as { code?: string }).code).toBe('ERR_HL7_PARSE')
          expect((e as Error).message).toMatch(/^invalid HL7 v2 message: \S/)
        }
      }
    }), { numRuns: 1000 })
  })
})
