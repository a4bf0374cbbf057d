/**
 * Whether a failed HTTP status may succeed on a later attempt: 408 Request Timeout, 429 Too Many
 * Requests and every 5xx. The one rule of the HTTP client, the token endpoint, discovery and the
 * http destination (network-class failures are always retryable).
 *
 * @example
 * isRetryableStatus(503) // → true
 * isRetryableStatus(404) // → false
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-15.5.9
 */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500
}
