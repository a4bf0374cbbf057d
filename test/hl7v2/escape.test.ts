import { describe, expect, it } from 'vitest'
import { decodeLeaf, encodeLeaf, readDelimiters } from '../../shared/hl7v2/encoding.ts'
import { parseEr7, serializeEr7 } from '../../shared/hl7v2/index.ts'

/**
 * Escape sequences (HL7 v2.5 section 2.7): the escape character, a one-character escape code, zero or
 * more data characters and the escape character again; no nesting. \F\ \S\ \T\ \R\ \E\ and \Xhh…\
 * decode; formatting and character-set escapes (\H\ \N\ \.br\ \Cxxyy\ …) are kept as written. An escape
 * character that opens no sequence (none follows, or the text up to the next one cannot be a sequence)
 * is kept as a literal character and must not take the escape sequences after it with it.
 */
const d = readDelimiters('MSH|^~\\&|')
const decode = (leaf: string) => decodeLeaf(leaf, d)

describe('HL7 v2 escape decoding', () => {
  it.each([
    // Well-formed: decoded, or kept as written.
    ['a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f', 'a|b^c&d~e\\f'],
    ['\\X41\\\\X0D0A\\', 'A\r\n'],
    ['\\XC3A9\\', 'é'],
    ['\\E\\F\\', '\\F\\'],
    ['\\E\\\\E\\', '\\\\'],
    ['line\\.br\\next \\H\\bold\\N\\', 'line\\.br\\next \\H\\bold\\N\\'],
    ['\\.sp+2\\\\C2842\\\\M248428\\', '\\.sp+2\\\\C2842\\\\M248428\\'],
    // An escape character at the end of the value opens nothing.
    ['abc\\', 'abc\\'],
    ['\\', '\\'],
    // Unterminated: kept as written.
    ['\\X4', '\\X4'],
    ['a\\.br', 'a\\.br'],
    // Unterminated, with a well-formed escape after it: that one is still decoded.
    ['\\X4 then \\S\\ after', '\\X4 then ^ after'],
    ['C:\\temp dir \\F\\ x', 'C:\\temp dir | x'],
    ['\\.br and \\T\\', '\\.br and &'],
    ['50% \\ 10 \\E\\', '50% \\ 10 \\'],
    // Two escape characters in a row: the first opens nothing.
    ['a\\\\F\\b', 'a\\|b'],
    // Unknown or malformed sequences are kept literally, their text not decoded.
    ['\\Zxx\\', '\\Zxx\\'],
    ['\\ZAB12\\', '\\ZAB12\\'],
    ['\\X4\\', '\\X4\\'],
    ['\\Xzz\\', '\\Xzz\\'],
    ['\\Q\\ ok', '\\Q\\ ok'],
  ])('%j → %j', (leaf, text) => {
    expect(decode(leaf)).toBe(text)
  })

  it('decodes the same through parseEr7, and the serializer writes the literal escape characters as \\E\\', () => {
    const m: any = parseEr7('MSH|^~\\&|A\rNTE|1||\\X4 then \\S\\ after\r')
    expect(m.NTE[0][3][0][1]).toBe('\\X4 then ^ after')
    expect(serializeEr7(m)).toBe('MSH|^~\\&|A\rNTE|1||\\E\\X4 then \\S\\ after\r')
  })

  it('decodes what encodeLeaf writes for text with stray escape characters', () => {
    for (const text of ['\\X4 then ^ after', 'abc\\', 'a\\\\|b', '50% \\ 10 \\', '\\.br and &']) expect(decode(encodeLeaf(text, d))).toBe(text)
  })

  it('uses the message\'s own escape character', () => {
    const hash = readDelimiters('MSH|^~#&|')
    expect(decodeLeaf('#X4 then #S# and \\F\\', hash)).toBe('#X4 then ^ and \\F\\')
  })
})
