import { isWeirError } from '../../shared/errors.ts'
import { redactedExcerpt } from '../../shared/http/excerpt.ts'
import { scrubSecrets } from '../../shared/secret.ts'

export const EXCERPT_MAX = 500

export { classify, type Failure } from '../../shared/failure.ts'

/** The reason kept in the message log: the code (when the error has one) and message, scrubbed of secrets and bounded. */
export function describe(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e)
  const code = isWeirError(e) ? `${e.code}: ` : ''
  return scrubSecrets(`${code}${msg}`).slice(0, EXCERPT_MAX)
}

/**
 * `status` and `excerpt` a destination may attach to the error it throws, directly or on a
 * non-enumerable `response` (shared/http `statusError`).
 */
export function responseOf(e: unknown): { status?: number; excerpt?: string } {
  if (typeof e !== 'object' || e === null) return {}
  const o = e as { status?: unknown; excerpt?: unknown; response?: { status?: unknown; excerpt?: unknown } }
  const status = typeof o.status === 'number' ? o.status : o.response?.status
  const excerpt = typeof o.excerpt === 'string' ? o.excerpt : o.response?.excerpt
  return {
    ...(typeof status === 'number' ? { status } : {}),
    ...(typeof excerpt === 'string' ? { excerpt: redactedExcerpt(excerpt, EXCERPT_MAX) } : {}),
  }
}
