import { reveal } from '../secret.ts'
import { grantParams } from './credential.ts'
import { ReauthRequiredError, type OAuthResponseError } from './errors.ts'
import { fetchUnderLease, storedFieldsOf, usableStored, type LeasedFetchContext } from './leased-fetch.ts'
import type { RefreshTokenStore, StoredTokens } from './refresh-store.ts'
import type { ProcessedToken } from './token-endpoint.ts'
import type { Obtained } from './token-slot.ts'

export interface RefreshGrantContext extends LeasedFetchContext {
  /** The configured refresh token, which seeds an empty store. */
  seeded: string | undefined
  send: (grantParams: Array<[string, string]>, signal?: AbortSignal) => Promise<ProcessedToken>
}

/**
 * The refresh_token grant under the store's lease: re-read after taking it (another holder may have
 * rotated already), persist the rotated token (awaited, compare-and-swap on the entry's version)
 * before the access token is used, and on invalid_grant re-read once more before declaring that
 * re-authorization is needed.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
 */
export function refreshTokenGrant(ctx: RefreshGrantContext, signal?: AbortSignal): Promise<Obtained> {
  return fetchUnderLease(ctx, async (s, found) => {
    let entry = found
    if (!entry?.refreshToken && ctx.seeded) entry = await s.write(ctx.key, { refreshToken: ctx.seeded }, entry?.version ?? 0)
    if (!entry?.refreshToken) throw new ReauthRequiredError(`credential "${ctx.name}" has no refresh token: run weir credentials import <channel> ${ctx.name} --refresh-token-file FILE`)
    try {
      return await rotate(ctx, s, entry, signal)
    } catch (e) {
      if ((e as OAuthResponseError).error !== 'invalid_grant') throw e
      const again = await s.read(ctx.key)
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
  await s.write(ctx.key, { refreshToken: res.refreshToken ? reveal(res.refreshToken)! : entry.refreshToken!, ...storedFieldsOf(res) }, entry.version)
  return res
}
