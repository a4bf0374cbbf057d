// Patterns that schemas share, each with what it means in words: a config problem says the words,
// since `must match pattern "^(https?://|/)"` makes a reader decode a regex.

/** An absolute http(s) URL, or a path (on a base URL a token gives, or the engine's own). */
export const URL_OR_PATH = '^(https?://|/)'
/** An absolute http(s) URL. */
export const HTTP_URL = '^https?://'
/** A path. */
export const PATH = '^/'

/** What a value refused by a pattern must be, by the pattern's source; a pattern not here is quoted as it is. */
export const PATTERN_MEANINGS: Readonly<Record<string, string>> = {
  [URL_OR_PATH]: 'must start with http://, https:// or /',
  [HTTP_URL]: 'must start with http:// or https://',
  [PATH]: 'must start with /',
}
