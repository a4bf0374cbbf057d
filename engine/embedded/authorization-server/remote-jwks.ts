import type { JWK } from 'jose'
import type { HttpClient } from '../../../shared/http/types.ts'

/** JWK members that only a private (or secret) key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

interface Cached { keys: JWK[]; fetchedAt: number }

/**
 * The JWK Sets of clients registered by `jwks_uri`, as a provider keeps them: fetched on first use,
 * cached, and fetched again only when an assertion names a kid the cached set lacks, at most once
 * per `cooldownMs` (a flood of unknown kids must not become a flood of fetches). One fetch in
 * flight per URL.
 */
export class RemoteKeySets {
  /** Every fetch made, for tests ("the provider fetched the JWK Set at most twice"). */
  fetches = 0
  readonly #cached = new Map<string, Cached>()
  readonly #pending = new Map<string, Promise<Cached>>()

  constructor(
    private readonly now: () => number,
    private readonly cooldownMs: number,
    private readonly http: () => HttpClient,
  ) {}

  /** The keys published at `uri`, refetched when `kid` is unknown and the cooldown has passed. Throws with a reason. */
  async keys(uri: string, kid: string | undefined): Promise<JWK[]> {
    let cached = this.#cached.get(uri)
    const unknownKid = cached && kid !== undefined && !cached.keys.some((k) => k.kid === kid)
    if (!cached || (unknownKid && this.now() - cached.fetchedAt >= this.cooldownMs)) cached = await this.#fetchOnce(uri)
    return cached.keys
  }

  #fetchOnce(uri: string): Promise<Cached> {
    let p = this.#pending.get(uri)
    if (!p) {
      p = this.#fetch(uri).finally(() => this.#pending.delete(uri))
      this.#pending.set(uri, p)
    }
    return p
  }

  async #fetch(uri: string): Promise<Cached> {
    this.fetches++
    const res = await this.http().request({ method: 'GET', url: uri, headers: { accept: 'application/jwk-set+json, application/json' }, timeoutMs: 5000 })
    let set: { keys?: unknown }
    try {
      set = JSON.parse(res.body) as { keys?: unknown }
    } catch {
      throw new Error(`${uri} answered ${res.status} with a body that is not JSON`)
    }
    if (!Array.isArray(set?.keys) || !set.keys.every((k) => k && typeof k === 'object')) throw new Error(`${uri} is not a JWK Set (no "keys" array of objects)`)
    const keys = set.keys as JWK[]
    if (keys.some((k) => PRIVATE_MEMBERS.some((m) => m in k))) throw new Error(`${uri} publishes private key material; refusing it`)
    const cached = { keys, fetchedAt: this.now() }
    this.#cached.set(uri, cached)
    return cached
  }
}
