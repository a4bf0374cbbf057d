import { setTimeout as sleep } from 'node:timers/promises'
import { reveal } from '../secret.ts'
import { grantParams } from './credential.ts'
import { ReauthRequiredError, type OAuthResponseError } from './errors.ts'
import { fetchUnderLease, fromEntry, storedFieldsOf, usableStored, type LeasedFetchContext } from './leased-fetch.ts'
import type { Lease, RefreshTokenStore, StoredTokens, StoredTokensInput } from './refresh-store.ts'
import type { ProcessedToken } from './token-endpoint.ts'
import { refreshSchedule, type Obtained } from './token-slot.ts'

export interface RefreshGrantContext extends LeasedFetchContext {
  /** The configured refresh token, which seeds an empty store. */
  seeded: string | undefined
  send: (grantParams: Array<[string, string]>, signal?: AbortSignal) => Promise<ProcessedToken>
  /** What the provider keeps between attempts: the grants in flight and a rotation not yet written. */
  rotations: RefreshRotations
  /** Whether `weir credentials authorize` can obtain a new refresh token (an authorizationUrl, or an issuer to discover it). */
  authorizable: boolean
}

/**
 * How a person gets a new refresh token for the credential: `weir credentials authorize` first when
 * it can, else `weir credentials import`. The messages that end with it name no credential in front:
 * one may be recorded in the store entry and read by another credential sharing the storeKey, whose
 * reader (weir token, a fail-fast error) puts its own name before it.
 */
function reauthHint(ctx: Pick<RefreshGrantContext, 'name' | 'authorizable'>): string {
  const importIt = `weir credentials import <channel.json> ${ctx.name} --refresh-token-file FILE`
  return ctx.authorizable ? `run weir credentials authorize <channel.json> ${ctx.name} (or ${importIt})` : `run ${importIt}`
}

/** A rotation the server made that the store has not taken yet, with the response it came in. */
interface UnwrittenRotation {
  /** The entry version the rotation replaces: the write is a compare-and-swap on it. */
  basedOn: number
  /** The refresh token the request spent: an entry still holding it is superseded by this rotation. */
  spent: string
  value: StoredTokensInput
  res: ProcessedToken
}

/**
 * Pauses between the writes of a rotated refresh token, inside the lease: a store that failed once
 * (a PostgreSQL connection reset) usually takes the next write, and until it does the server's only
 * valid refresh token lives in this process's memory.
 */
const WRITE_RETRY_DELAYS_MS = [100, 500, 1_500]

/**
 * A provider's refresh-token state between attempts. A rotated refresh token the store refused is
 * kept here and written before any further token request: the refresh token it replaced is spent,
 * and sending it again makes a strict server revoke the whole grant. close() waits for the grants
 * in flight, since a refresh request already sent has (for all we know) rotated the token.
 */
export class RefreshRotations {
  unwritten: UnwrittenRotation | undefined
  readonly #inFlight = new Set<Promise<unknown>>()

  /** `p`, counted as in flight until it settles. */
  track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p)
    const drop = () => this.#inFlight.delete(p)
    p.then(drop, drop)
    return p
  }

  /** Waits up to `ms` for the grants in flight; false when one is still running then. */
  async settled(ms: number): Promise<boolean> {
    if (this.#inFlight.size === 0) return true
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))
    try {
      return await Promise.race([Promise.allSettled([...this.#inFlight]).then(() => true), late])
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * The refresh_token grant under the store's lease: re-read after taking it (another holder may have
 * rotated already), persist the rotated token (awaited, compare-and-swap on the entry's version)
 * before the access token is used, and on invalid_grant re-read once more before declaring that
 * re-authorization is needed.
 *
 * `signal` (the provider's lifetime) only keeps a new refresh request from being sent: one already
 * sent runs to its end, bounded by the request timeout, so that the token the server rotated is
 * written even when the provider is closed meanwhile.
 *
 * `check` (an operator's check): a refresh whatever access token or refusal the entry holds, and a
 * refusal is not recorded in it; the rotated refresh token is written as always.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
 */
export function refreshTokenGrant(ctx: RefreshGrantContext, signal?: AbortSignal, check = false): Promise<Obtained> {
  // A rotation not yet written is written whatever the entry offers: a refusal another holder
  // recorded with the refresh token it spent is superseded by it (writeUnwritten).
  const pendingWrite = ctx.rotations.unwritten !== undefined
  return ctx.rotations.track(fetchUnderLease(ctx, async (s, found, lease) => {
    const pending = await writeUnwritten(ctx, s, found, lease)
    if (pending.obtained) return pending.obtained
    let entry = pending.entry
    if (pendingWrite && !check) {
      const shared = fromEntry(ctx, entry)
      if (shared) return shared
    }
    if (!entry?.refreshToken && ctx.seeded) {
      await lease?.confirm()
      entry = await s.write(ctx.key, { refreshToken: ctx.seeded }, entry?.version ?? 0)
    }
    if (!entry?.refreshToken) throw new ReauthRequiredError(`no refresh token is stored: ${reauthHint(ctx)}`)
    try {
      return await rotate(ctx, s, entry, lease, signal)
    } catch (e) {
      if ((e as OAuthResponseError).error !== 'invalid_grant') throw e
      const again = await s.read(ctx.key)
      if (again && again.version !== entry.version) {
        // Rotated meanwhile by another holder: its access token if it is for us, else (a credential
        // sharing the refresh token for another resource or scope) one refresh with the new token.
        const other = check ? undefined : usableStored(ctx, again)
        if (other) return other
        if (again.refreshToken && again.refreshToken !== entry.refreshToken) return await rotate(ctx, s, again, lease, signal)
      }
      const desc = (e as OAuthResponseError).error_description
      const hint = ctx.authorizable ? `re-authorize: ${reauthHint(ctx)}` : `re-authorize and ${reauthHint(ctx)}`
      throw new ReauthRequiredError(`the refresh token was rejected (invalid_grant${desc ? `: ${desc}` : ''}); ${hint}`, e as OAuthResponseError)
    }
  }, { fresh: pendingWrite || check, record: !check }))
}

/**
 * One refresh: the new access token and the rotated refresh token (or the same one) written before
 * use. The request is bounded by its timeout, never by `signal` nor by the lease: aborting it after
 * the server has rotated would lose the only refresh token the server still honours. The lease is
 * confirmed before the request is sent (a holder that lost it must not spend the token another
 * holder may be spending) and before each write.
 */
async function rotate(ctx: RefreshGrantContext, s: RefreshTokenStore, entry: StoredTokens, lease: Lease | undefined, signal?: AbortSignal): Promise<ProcessedToken> {
  if (signal?.aborted) throw signal.reason
  await lease?.confirm()
  const res = await ctx.send(grantParams('refresh_token', entry.refreshToken))
  const value = { refreshToken: res.refreshToken ? reveal(res.refreshToken)! : entry.refreshToken!, ...storedFieldsOf(ctx, res) }
  ctx.rotations.unwritten = { basedOn: entry.version, spent: entry.refreshToken!, value, res }
  await writeRotated(ctx, s, lease)
  return res
}

/**
 * Writes the unwritten rotation, retrying a failed write (still under the lease) a few times. A
 * lease lost meanwhile fails the attempt (retryably) without writing: the rotation stays in memory
 * and is written under the next lease (writeUnwritten).
 */
async function writeRotated(ctx: RefreshGrantContext, s: RefreshTokenStore, lease: Lease | undefined): Promise<StoredTokens> {
  for (let attempt = 0; ; attempt++) {
    const u = ctx.rotations.unwritten!
    await lease?.confirm()
    try {
      const written = await s.write(ctx.key, u.value, u.basedOn)
      ctx.rotations.unwritten = undefined
      return written
    } catch (e) {
      const landed = await landedEntry(ctx, s, u)
      if (landed) {
        ctx.rotations.unwritten = undefined
        return landed
      }
      if (attempt >= WRITE_RETRY_DELAYS_MS.length) throw e
      await sleep(WRITE_RETRY_DELAYS_MS[attempt]!)
    }
  }
}

/** The entry, when a write reported as failed went through after all (the connection dropped after the commit). */
async function landedEntry(ctx: RefreshGrantContext, s: RefreshTokenStore, u: UnwrittenRotation): Promise<StoredTokens | undefined> {
  const now = await s.read(ctx.key).catch(() => undefined)
  const ours = now?.version === u.basedOn + 1 && now.refreshToken === u.value.refreshToken && now.accessToken === u.value.accessToken
  return ours ? now : undefined
}

/**
 * Before any token request, the rotation an earlier attempt could not write: written now, and its
 * access token used while it is fresh. When the entry moved on meanwhile but still holds the
 * refresh token the rotation spent (a holder that took the lease while ours was lost recorded its
 * refusal, or an access token), the rotation is the truth and is written over it. Dropped when
 * the entry holds another refresh token (the write went through after all, a refresh token was
 * imported, another holder rotated): then the store's entry is the truth.
 */
async function writeUnwritten(ctx: RefreshGrantContext, s: RefreshTokenStore, found: StoredTokens | undefined, lease: Lease | undefined): Promise<{ entry: StoredTokens | undefined; obtained?: Obtained }> {
  const u = ctx.rotations.unwritten
  if (!u) return { entry: found }
  if ((found?.version ?? 0) !== u.basedOn) {
    const superseded = found?.refreshToken === u.spent && u.value.refreshToken !== u.spent
    if (!superseded) {
      ctx.rotations.unwritten = undefined
      return { entry: found }
    }
    u.basedOn = found.version
  }
  const entry = await writeRotated(ctx, s, lease)
  return isFresh(ctx, u.res) ? { entry, obtained: u.res } : { entry }
}

/** Whether a token obtained earlier is not yet due for refresh. */
function isFresh(ctx: RefreshGrantContext, t: Obtained): boolean {
  return ctx.now() < refreshSchedule(t.token.expiresAt, t.lifetimeMs, ctx.clockSkewSec, 0).refreshAt
}
