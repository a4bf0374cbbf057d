/**
 * True for JSON media types: `application/json` and any `+json` structured suffix
 * (`application/fhir+json`), case-insensitive, parameters allowed (`; charset=utf-8`).
 * Not for look-alikes such as `application/json-seq` or `text/json`.
 *
 * @example
 * isJsonContentType('application/fhir+json; charset=utf-8') // → true
 * isJsonContentType('application/json-seq')                 // → false
 * @see https://www.rfc-editor.org/rfc/rfc6839#section-3.1
 */
export function isJsonContentType(contentType: string): boolean {
  // The usual case first: a channel's messages mostly carry the same bare type.
  return contentType === 'application/json' || /^\s*application\/([\w.+-]*\+)?json\s*(;|$)/i.test(contentType)
}
