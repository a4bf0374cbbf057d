/** Minimal well-formedness check: one root, balanced tags, no raw `<` or `&` in text or attributes. */
export function wellFormed(xml: string): boolean {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '')
  const stack: string[] = []
  let roots = 0
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<&]*(?:&(?:amp|lt|gt|quot|apos);[^"<&]*)*")*)\s*(\/?)>|<|&(?!(?:amp|lt|gt|quot|apos);)/g)) {
    if (m[0] === '<' || m[0] === '&') return false
    const [, close, name, , selfClose] = m
    if (close) { if (stack.pop() !== name) return false } else if (!selfClose) { if (!stack.length) roots++; stack.push(name!) } else if (!stack.length) roots++
  }
  return stack.length === 0 && roots === 1
}
