import { errorCodes } from '../errors.ts'
import { redactedExcerpt, remoteText } from './excerpt.ts'

export interface Challenge {
  scheme: string
  parameters: Record<string, string>
}

/** A 401 whose only explanation is a `WWW-Authenticate` challenge (oauth4webapi `WWWAuthenticateChallengeError`). */
export class OAuthChallengeError extends errorCodes.ERR_OAUTH_CHALLENGE {
  status: number
  scheme: string
  error?: string
  error_description?: string
  parameters: Record<string, string>
  /**
   * Whether the 401 rejects the credential itself (a renewed token rejected too): an outage of the
   * destination, retried for every message. False for a 401 that rejects this request (a challenge
   * naming another error such as `insufficient_scope`, or another scheme), which fails alone.
   */
  credentialOutage: boolean
  constructor(message: string, status: number, challenge: Challenge, options: { retryable?: boolean; credentialOutage?: boolean } = {}) {
    super(message, { retryable: options.retryable ?? false })
    this.credentialOutage = options.credentialOutage ?? true
    this.status = status
    this.scheme = remoteText(challenge.scheme, 100)
    // The server's own words, which may echo what it received: scrubbed, one line, cut.
    this.parameters = Object.fromEntries(Object.entries(challenge.parameters).map(([k, v]) => [k, redactedExcerpt(v, 500)]))
    if (this.parameters.error) this.error = this.parameters.error
    if (this.parameters.error_description) this.error_description = this.parameters.error_description
  }
}

/** Parses `WWW-Authenticate` (RFC 9110 §11.6.1) into challenges with lower-cased parameter names. */
export function parseWwwAuthenticate(header: string | string[] | null | undefined): Challenge[] {
  if (!header) return []
  const text = Array.isArray(header) ? header.join(', ') : header
  const out: Challenge[] = []
  const token = /[A-Za-z0-9!#$%&'*+.^_`|~-]+/y
  let current: Challenge | undefined
  let i = 0
  while (i < text.length) {
    while (i < text.length && /[\s,]/.test(text[i]!)) i++
    token.lastIndex = i
    const t = token.exec(text)
    if (!t) { i++; continue }
    i = token.lastIndex
    let j = i
    while (j < text.length && text[j] === ' ') j++
    if (text[j] === '=' && current) {
      i = j + 1
      while (i < text.length && text[i] === ' ') i++
      let value = ''
      if (text[i] === '"') {
        i++
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\') i++
          value += text[i] ?? ''
          i++
        }
        i++
      } else {
        while (i < text.length && !/[\s,]/.test(text[i]!)) value += text[i++]
      }
      current.parameters[t[0].toLowerCase()] = value
    } else {
      current = { scheme: t[0], parameters: {} }
      out.push(current)
    }
  }
  return out
}
