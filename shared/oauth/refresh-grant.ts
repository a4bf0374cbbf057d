import { Secret, reveal } from '../secret.ts'
import { grantParams } from './credential.ts'
import { ReauthRequiredError, type OAuthResponseError } from './errors.ts'
import type { RefreshTokenStore, StoredTokens } from './refresh-store.ts'
import type { ProcessedToken } from './token-endpoint.ts'
import { refreshSchedule, type Obtained, type Slot } from './token-slot.ts'
import type { AccessToken } from './types.ts'

export interface RefreshGrantContext {
  name: string
  storeKey: string
  store: () => RefreshTokenStore
  /** The configured refresh token, which seeds an empty store. */
  seeded: string | undefined
  slot: Slot
  clockSkewSec: number
  now: () => number
  send: (grantParams: Array<[string, string]>, signal?: AbortSignal) => Promise<ProcessedToken>
}

/**
 * The access token a store entry holds, if another holder (a process or provider sharing the store
 * key) fetched one that is neither ours, nor invalidated, nor due for refresh.
 */
function usableStored(ctx: RefreshGrantContext, entry: StoredTokens | undefined): Obtained | undefined {
  const { slot, now } = ctx
  if (!entry?.accessToken || entry.expiresAt === undefined || entry.accessToken === slot.invalidated) return undefined
  if (slot.token && reveal(slot.token.value) === entry.accessToken) return undefined
  const lifetimeMs = entry.expiresAt - (entry.issuedAt ?? now())
  if (now() >= refreshSchedule(entry.expiresAt, lifetimeMs, ctx.clockSkewSec, 0).refreshAt) return undefined
  const token: AccessToken = {
    value: new Secret(entry.accessToken, 'token-store'), tokenType: entry.tokenType ?? 'Bearer', expiresAt: entry.expiresAt, extra: { ...entry.extra },
    ...(entry.scope ? { scope: entry.scope } : {}),
  }
  return { token, lifetimeMs: token.expiresAt - (entry.issuedAt ?? now()) }
}

/**
 * The refresh_token grant under the store's lease: re-read after taking it (another holder may have
 * rotated already), persist the rotated token (awaited) before the access token is used, and on
 * invalid_grant re-read once more before declaring that re-authorization is needed.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
 */
export async function refreshTokenGrant(ctx: RefreshGrantContext, signal?: AbortSignal): Promise<Obtained> {
  const s = ctx.store()
  const early = usableStored(ctx, await s.read(ctx.storeKey))
  if (early) return early
  return s.withLease(ctx.storeKey, async () => {
    let entry = await s.read(ctx.storeKey)
    if (!entry && ctx.seeded) entry = await s.write(ctx.storeKey, { refreshToken: ctx.seeded }, 0)
    if (!entry) throw new ReauthRequiredError(`credential "${ctx.name}" has no refresh token: run weir credentials import <channel> ${ctx.name} --refresh-token-file FILE`)
    const shared = usableStored(ctx, entry)
    if (shared) return shared
    try {
      return await rotate(ctx, s, entry, signal)
    } catch (e) {
      if ((e as OAuthResponseError).error !== 'invalid_grant') throw e
      const again = await s.read(ctx.storeKey)
      const other = usableStored(ctx, again)
      if (again && again.version !== entry.version && other) return other
      const desc = (e as OAuthResponseError).error_description
      throw new ReauthRequiredError(`credential "${ctx.name}": the refresh token was rejected (invalid_grant${desc ? `: ${desc}` : ''}); re-authorize and run weir credentials import`, e as OAuthResponseError)
    }
  })
}

/** One refresh: the new access token and the rotated refresh token (or the same one) written before use. */
async function rotate(ctx: RefreshGrantContext, s: RefreshTokenStore, entry: StoredTokens, signal?: AbortSignal): Promise<ProcessedToken> {
  const res = await ctx.send(grantParams('refresh_token', entry.refreshToken), signal)
  const rotated = res.refreshToken ? reveal(res.refreshToken)! : entry.refreshToken
  await s.write(ctx.storeKey, {
    refreshToken: rotated, accessToken: reveal(res.token.value)!, tokenType: res.token.tokenType, expiresAt: res.token.expiresAt,
    issuedAt: res.token.expiresAt - res.lifetimeMs, extra: res.token.extra, ...(res.token.scope ? { scope: res.token.scope } : {}),
  }, entry.version)
  return res
}
