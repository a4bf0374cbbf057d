import { redactedExcerpt } from '../../shared/http/excerpt.ts'

export const EXCERPT_MAX = 500

export { classify, type Failure } from '../../shared/failure.ts'

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
