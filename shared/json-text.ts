/**
 * The JSON text a body was parsed from, so that a store writes a received JSON body as it came
 * (one `JSON.stringify` of the body less per message) and the message log keeps what the sender
 * sent. Parsing the kept text gives the same value as the body, as long as nobody changes the body
 * between the parse and the store: only sources that hand the parsed value straight to `emit` use
 * `parseJsonText`.
 */
const texts = new WeakMap<object, string>()

/** `JSON.parse(text)`, remembering `text` as the JSON of the value (an object or array). */
export function parseJsonText(text: string): unknown {
  const value: unknown = JSON.parse(text)
  if (typeof value === 'object' && value !== null) texts.set(value, text)
  return value
}

/** The JSON text of a message body: the text it was parsed from when known, else `JSON.stringify` (null for undefined). */
export function jsonTextOf(body: unknown): string {
  if (typeof body === 'object' && body !== null) {
    const text = texts.get(body)
    if (text !== undefined) return text
  }
  return JSON.stringify(body ?? null)
}
