import type { IncomingMessage, ServerResponse } from 'node:http'
import { Refusal } from '../../shared/inbound/refusal.ts'
import { allows, type Principal, type Session } from './auth.ts'
import type { Role } from './config.ts'

/** One request as a route sees it: the parsed URL, path parameters, who asked, and the form of a POST. */
export interface RouteContext {
  req: IncomingMessage
  res: ServerResponse
  url: URL
  params: Record<string, string>
  /** Set on every route but the public ones. */
  principal?: Principal
  session?: Session
  /** The URL-encoded (or JSON object) body of a POST; empty for GET. */
  form: URLSearchParams
}

/** A step of a route: guards throw a `Refusal`, the last step answers. */
export type Handler = (ctx: RouteContext) => void | Promise<void>

export type Method = 'GET' | 'POST'

interface Route {
  method: Method
  pattern: RegExp
  keys: string[]
  /** Public routes (health probes, the login form) skip authentication. */
  public: boolean
  handlers: Handler[]
}

/** A guard: refuses (403) a principal whose role is below `role`. */
export function requireRole(role: Role): Handler {
  return (ctx) => {
    if (!ctx.principal || !allows(ctx.principal, role)) throw new Refusal(403, `requires role "${role}"`)
  }
}

function compile(path: string): { pattern: RegExp; keys: string[] } {
  const keys: string[] = []
  const source = path.split('/').map((seg) => {
    if (!seg.startsWith(':')) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    keys.push(seg.slice(1))
    return '([^/]+)'
  }).join('/')
  return { pattern: new RegExp(`^${source}$`), keys }
}

/**
 * A small router: routes by method and path (`/api/channels/:name/pause`), each a list of handlers
 * (guards first). Every route but the public ones requires an authenticated principal with at
 * least the viewer role; every POST passes the CSRF check (the server runs both before the handlers).
 *
 * @example
 * router.post('/api/channels/:name/pause', requireRole('operator'), pause)
 */
export class Router {
  readonly #routes: Route[] = []

  get(path: string, ...handlers: Handler[]): this {
    return this.#add('GET', path, false, handlers)
  }

  post(path: string, ...handlers: Handler[]): this {
    return this.#add('POST', path, false, handlers)
  }

  /** A route anyone may call (health probes, the login form). A public POST still passes the CSRF origin check. */
  public(method: Method, path: string, ...handlers: Handler[]): this {
    return this.#add(method, path, true, handlers)
  }

  #add(method: Method, path: string, isPublic: boolean, handlers: Handler[]): this {
    this.#routes.push({ method, ...compile(path), public: isPublic, handlers })
    return this
  }

  /** The route for a request, or the methods the path allows (405), or undefined (404). */
  match(method: string, pathname: string): { route: Route; params: Record<string, string> } | { allow: Method[] } | undefined {
    const allow: Method[] = []
    for (const route of this.#routes) {
      const m = route.pattern.exec(pathname)
      if (!m) continue
      if (route.method !== method && !(method === 'HEAD' && route.method === 'GET')) {
        allow.push(route.method)
        continue
      }
      let params: Record<string, string>
      try {
        params = Object.fromEntries(route.keys.map((k, i) => [k, decodeURIComponent(m[i + 1]!)]))
      } catch {
        throw new Refusal(400, 'malformed percent-encoding in the path')
      }
      return { route, params }
    }
    return allow.length ? { allow } : undefined
  }
}
