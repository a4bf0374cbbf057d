import { isIPv6 } from 'node:net'

/** How failed admin-token attempts lock a client address out. */
export interface LoginLimitOptions {
  /** Failed attempts an address may make before it is locked out. Default 5. */
  freeFailures: number
  /** The first lockout (ms), doubled with each failure after it up to `maxLockMs`. Default 10 s. */
  firstLockMs: number
  /** The longest lockout (ms); also how long a quiet address is remembered after its lockout. Default 15 min. */
  maxLockMs: number
  /** Addresses remembered at most; beyond, the one that failed longest ago is forgotten. Default 10,000. */
  maxTracked: number
}

export const LOGIN_LIMIT_DEFAULTS: LoginLimitOptions = { freeFailures: 5, firstLockMs: 10_000, maxLockMs: 900_000, maxTracked: 10_000 }

interface Entry {
  failures: number
  /** Epoch ms; 0 while not locked. */
  lockedUntil: number
  lastFailure: number
}

/** The 16-bit groups of an IPv6 address, `::` expanded. */
function ipv6Groups(address: string): string[] {
  const [head, tail] = address.split('::') as [string, string | undefined]
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  return [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
}

/**
 * The key an address is counted under: an IPv4 address as is (an IPv4-mapped IPv6 one as IPv4),
 * an IPv6 address by its /64 network, which one client usually holds whole.
 */
export function clientKey(address: string | undefined): string {
  const a = (address ?? '').toLowerCase()
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a)
  if (mapped) return mapped[1]!
  if (!isIPv6(a)) return a
  return `${ipv6Groups(a.replace(/%.*$/, '')).slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}

/**
 * Failed admin-token attempts by client address: after `freeFailures` failures the address is
 * locked out for `firstLockMs`, and each failure after a lockout locks it for twice as long, up to
 * `maxLockMs`. A success forgets the address. At most `maxTracked` addresses are remembered (the
 * one that failed longest ago goes first), so a flood of addresses cannot grow memory.
 *
 * @example
 * const limit = createLoginLimit({}, Date.now)
 * if (limit.waitMs(key) > 0) refuse(429)
 * ok ? limit.succeeded(key) : limit.failed(key)
 */
export function createLoginLimit(options: Partial<LoginLimitOptions> = {}, now: () => number = Date.now) {
  const o = { ...LOGIN_LIMIT_DEFAULTS, ...options }
  const entries = new Map<string, Entry>()
  const stale = (e: Entry, t: number) => t >= Math.max(e.lockedUntil, e.lastFailure) + o.maxLockMs

  function live(key: string): Entry | undefined {
    const e = entries.get(key)
    if (e === undefined || !stale(e, now())) return e
    entries.delete(key)
    return undefined
  }

  /** Room for one more address: stale ones go first, then the one that failed longest ago. */
  function makeRoom(): void {
    if (entries.size < o.maxTracked) return
    const t = now()
    for (const [key, e] of entries) if (stale(e, t)) entries.delete(key)
    for (const key of entries.keys()) {
      if (entries.size < o.maxTracked) break
      entries.delete(key)
    }
  }

  return {
    /** Milliseconds `key` must still wait before it may try a token again (0: it may now). */
    waitMs(key: string): number {
      const e = live(key)
      return e ? Math.max(0, e.lockedUntil - now()) : 0
    },
    /** Records a failed attempt of `key`: its failures so far and the lockout it starts (0: none). */
    failed(key: string): { failures: number; lockedForMs: number } {
      const t = now()
      const e = live(key) ?? (makeRoom(), { failures: 0, lockedUntil: 0, lastFailure: t })
      e.failures++
      e.lastFailure = t
      const beyond = e.failures - o.freeFailures
      const lockedForMs = beyond < 0 ? 0 : Math.min(o.maxLockMs, o.firstLockMs * 2 ** Math.min(beyond, 30))
      e.lockedUntil = lockedForMs ? t + lockedForMs : 0
      // Re-inserted: the map's order is the order of last failure, oldest first.
      entries.delete(key)
      entries.set(key, e)
      return { failures: e.failures, lockedForMs }
    },
    succeeded(key: string): void {
      entries.delete(key)
    },
    /** How many addresses are remembered. */
    tracked: (): number => entries.size,
  }
}

export type LoginLimit = ReturnType<typeof createLoginLimit>
