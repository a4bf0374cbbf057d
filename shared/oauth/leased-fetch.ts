import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { errorCodes, type WeirError } from '../errors.ts'
import { Secret, reveal } from '../secret.ts'
import { OAuthResponseError, ReauthRequiredError } from './errors.ts'
import type { FailureRecorder, Lease, RefreshTokenStore, StoredFailure, StoredTokens, StoredTokensInput } from './refresh-store.ts'
import type { ProcessedToken } from './token-endpoint.ts'
import { refreshSchedule, tokenDigest, type ObtainMode, type Obtained, type Slot } from './token-slot.ts'
import type { AccessToken } from './types.ts'

/** One provider's view of a store entry: whose it is, and what the provider already holds. */
export interface LeasedFetchContext {
  name: string
  /** The entry's key in the store. */
  key: string
  store: () => RefreshTokenStore
  slot: Slot
  clockSkewSec: number
  failFastMs: number
  now: () => number
  /** False when tokens are bound to this process (DPoP keys): the entry's access token is not for us. */
  shareAccessToken: boolean
  /** What this credential's access tokens are for (credential.ts tokenPurposeOf): an entry's access token obtained for another purpose is not ours. */
  tokenFor: string
  /**
   * How this holder's client proves who it is (credential.ts clientProofOf: its secret and keys, as
   * a fingerprint): a refusal recorded by a holder with another proof (a wrong secret on one engine)
   * is not adopted, save a refresh token needing consent. None: every refusal is adopted.
   */
  clientProof?: string
}

/**
 * What an entry records of the client proof a refusal or an access token was got with: a digest of
 * its fingerprint, so the entry holds nothing the slot keys use. Unkeyed (SHA-256 of a SHA-256):
 * only the entry's sealing (the store key) keeps it from a reader testing guesses of a secret.
 */
const proofDigest = (proof: string) => createHash('sha256').update(`weir refusal proof\0${proof}`).digest('base64url')

/** Whether an entry's digest of a client proof (`recorded`) is of another proof than this holder's: absent on either side, it is not. */
const otherProof = (ctx: Pick<LeasedFetchContext, 'clientProof'>, recorded: string | undefined) =>
  recorded !== undefined && ctx.clientProof !== undefined && recorded !== proofDigest(ctx.clientProof)

/** The entry fields of a token response (the refresh token is the caller's to add). */
export function storedFieldsOf(ctx: Pick<LeasedFetchContext, 'tokenFor' | 'clientProof'>, res: ProcessedToken): Omit<StoredTokensInput, 'refreshToken'> {
  return {
    accessToken: reveal(res.token.value)!, accessTokenFor: ctx.tokenFor, ...(ctx.clientProof !== undefined ? { accessTokenProof: proofDigest(ctx.clientProof) } : {}), tokenType: res.token.tokenType, expiresAt: res.token.expiresAt,
    issuedAt: res.token.expiresAt - res.lifetimeMs, extra: res.token.extra, ...(res.token.scope ? { scope: res.token.scope } : {}),
  }
}

/**
 * The access token a store entry holds, if another holder (a process, an engine, a provider sharing
 * the key) fetched one for this same credential that is neither the one we hold, nor invalidated,
 * nor due for refresh. One obtained for another credential sharing the refresh token (another
 * resource or scope), or stored before entries said whose they are, is not used; nor one obtained
 * with another client proof (a wrong secret on this engine must show at once: it asks the server).
 */
export function usableStored(ctx: LeasedFetchContext, entry: StoredTokens | undefined): Obtained | undefined {
  const { slot, now } = ctx
  if (!ctx.shareAccessToken || !entry?.accessToken || entry.accessTokenFor !== ctx.tokenFor || entry.expiresAt === undefined || (slot.invalidated !== undefined && tokenDigest(entry.accessToken) === slot.invalidated)) return undefined
  if (slot.token && reveal(slot.token.value) === entry.accessToken) return undefined
  if (otherProof(ctx, entry.accessTokenProof)) return undefined
  const lifetimeMs = entry.expiresAt - (entry.issuedAt ?? now())
  if (now() >= refreshSchedule(entry.expiresAt, lifetimeMs, ctx.clockSkewSec, 0).refreshAt) return undefined
  const token: AccessToken = {
    value: new Secret(entry.accessToken, 'token-store'), tokenType: entry.tokenType ?? 'Bearer', expiresAt: entry.expiresAt, extra: { ...entry.extra },
    ...(entry.scope ? { scope: entry.scope } : {}),
  }
  return { token, lifetimeMs }
}

/**
 * The refusal another holder recorded, as the error it got, while it is in force: `brokenUntil`
 * tells the slot how long, `recordedBy` who was refused (null in an entry of an older weir).
 */
function recordedFailure(ctx: LeasedFetchContext, f: StoredFailure | undefined): WeirError | undefined {
  if (!f || ctx.now() >= f.until) return undefined
  // Refused with another secret or key: that holder's client is wrong, not necessarily ours; ask the server.
  if (otherProof(ctx, f.clientProof) && f.code !== 'ERR_OAUTH_REAUTH_REQUIRED') return undefined
  const fields = { ...(f.error_description ? { error_description: f.error_description } : {}), ...(f.error_uri ? { error_uri: f.error_uri } : {}) }
  // The error the holder that asked got: an OAuth error, or (a body that was not one) the status alone.
  const status = f.status ?? 400
  const answer = f.error ? new OAuthResponseError(f.message, { status, error: f.error, ...fields }) : Object.assign(new errorCodes.ERR_OAUTH_RESPONSE(f.message, { retryable: false }), { status })
  const e = f.code === 'ERR_OAUTH_REAUTH_REQUIRED' ? new ReauthRequiredError(f.message, f.error ? answer as OAuthResponseError : undefined) : answer
  Object.defineProperty(e, 'brokenUntil', { value: f.until, enumerable: false })
  Object.defineProperty(e, 'recordedBy', { value: f.recordedBy ?? null, enumerable: false })
  return e
}

/**
 * What the server answered when it refused, if it is worth sharing: an OAuth error or a refresh
 * token that needs a new consent. Local failures (a signer, the network, the store) stay local.
 */
function failureOf(ctx: LeasedFetchContext, e: unknown, recordedBy: FailureRecorder): StoredFailure | undefined {
  const err = e as Partial<OAuthResponseError> & WeirError & { brokenUntil?: number }
  // A refusal read from the entry (brokenUntil) is recorded already: recording it again would prolong it.
  if (err.retryable || err.brokenUntil !== undefined || (err.code !== 'ERR_OAUTH_RESPONSE' && err.code !== 'ERR_OAUTH_REAUTH_REQUIRED')) return undefined
  return {
    code: err.code, message: err.message, until: ctx.now() + ctx.failFastMs,
    ...(err.status !== undefined ? { status: err.status } : {}), ...(err.error ? { error: err.error } : {}),
    ...(err.error_description ? { error_description: err.error_description } : {}), ...(err.error_uri ? { error_uri: err.error_uri } : {}),
    recordedBy, ...(ctx.clientProof !== undefined ? { clientProof: proofDigest(ctx.clientProof) } : {}),
  }
}

/** This process as a refusal's recorder: the engine id the store speaks for, if any, and host and pid. */
function recorderOf(s: RefreshTokenStore): FailureRecorder {
  const engine = s.engineId?.()
  return { ...(engine ? { engine } : {}), host: hostname(), pid: process.pid }
}

/**
 * Records a refusal in the entry (best effort: a holder that changed the entry since keeps its
 * version). A holder that lost the lease records nothing: the entry may be another holder's now.
 * The error gets what was recorded (`recorded`, not enumerable): the slot, having told of it,
 * knows it again when it reads it back from the entry.
 */
async function recordFailure(ctx: LeasedFetchContext, s: RefreshTokenStore, e: unknown, lease: Lease | undefined): Promise<void> {
  const failure = failureOf(ctx, e, recorderOf(s))
  if (!failure || !(await stillHeld(lease))) return
  const entry = await s.read(ctx.key)
  const { version: _v, updatedAt: _u, ...rest } = entry ?? { version: 0, updatedAt: 0 }
  await s.write(ctx.key, { ...rest, failure }, entry?.version ?? 0)
  Object.defineProperty(e, 'recorded', { value: failure, enumerable: false })
}

/** The token or the refusal an entry offers; undefined when this provider has to fetch. */
export function fromEntry(ctx: LeasedFetchContext, entry: StoredTokens | undefined): Obtained | undefined {
  const failure = recordedFailure(ctx, entry?.failure)
  if (failure) throw failure
  return usableStored(ctx, entry)
}

/**
 * How a fetch uses the store's entry. `fresh`: ask the server even when the entry offers a token or
 * a refusal. `record`: record a refusal by the server in the entry (false for an operator's check,
 * whose refusal is its own).
 */
export interface EntryUse {
  fresh: boolean
  record: boolean
}

/**
 * One token fetch for every holder of a store key: the token another holder published, else
 * `fetch` under the store's lease (it publishes what it obtains before returning it). A refusal by
 * the server is recorded in the entry, so the other holders fail fast without asking again.
 */
export async function fetchUnderLease(ctx: LeasedFetchContext, fetch: (s: RefreshTokenStore, entry: StoredTokens | undefined, lease: Lease | undefined) => Promise<Obtained>, use: EntryUse = { fresh: false, record: true }): Promise<Obtained> {
  const s = ctx.store()
  const early = use.fresh ? undefined : fromEntry(ctx, await s.read(ctx.key))
  if (early) return early
  return s.withLease(ctx.key, async (lease) => {
    const entry = await s.read(ctx.key)
    const shared = use.fresh ? undefined : fromEntry(ctx, entry)
    if (shared) return shared
    try {
      return await fetch(s, entry, lease)
    } catch (e) {
      if (use.record) await recordFailure(ctx, s, e, lease).catch(() => undefined)
      throw e
    }
  })
}

/** Whether the lease is still held (confirmed now); a store without one always says yes. */
export async function stillHeld(lease: Lease | undefined): Promise<boolean> {
  return lease ? lease.confirm().then(() => true, () => false) : true
}

/**
 * A grant without a refresh token (client_credentials, jwt-bearer) through the store: one engine
 * of a cluster asks, the others use the token it published. `mode` (fetchNow, an operator's check)
 * asks the server even when the entry offers a token or a refusal; a check records no refusal.
 */
export function sharedGrant(ctx: LeasedFetchContext, send: (signal?: AbortSignal) => Promise<ProcessedToken>, signal?: AbortSignal, mode?: ObtainMode): Promise<Obtained> {
  return fetchUnderLease(ctx, async (s, entry, lease) => {
    await lease?.confirm()
    const res = await send(signal)
    // Lost the lease meanwhile: the token is good, but publishing it is the new holder's turn.
    if (await stillHeld(lease)) await s.write(ctx.key, storedFieldsOf(ctx, res), entry?.version ?? 0)
    return res
  }, { fresh: mode !== undefined, record: mode !== 'check' })
}
