import type { Dispatcher } from 'undici'
import type { WeirError } from '../errors.ts'
import type { Logger } from '../log/index.ts'
import type { DpopSigner } from './dpop.ts'
import type { TokenCounters } from './types.ts'
import { discover, type ServerMetadata } from './discovery.ts'
import type { OAuthResponseError } from './errors.ts'
import {
  clockOffsetFrom, planTokenRequest, processTokenResponse, sendTokenRequest,
  type AssertionSigner, type ProcessedToken, type RawTokenResponse, type ResolvedCredential, type TokenRequestPlan,
} from './token-endpoint.ts'

export interface TokenExchangeOptions {
  log: Logger
  now: () => number
  dispatcher?: Dispatcher
  dpop?: DpopSigner
  signer?: AssertionSigner
}

/** Token requests of one credential: the endpoint (configured or discovered), the server's clock offset, counters. */
export interface TokenExchange {
  /** One token request, with the single DPoP nonce retry (RFC 9449 §8) and the single clock-corrected resend. */
  send(grantParams: Array<[string, string]>, signal?: AbortSignal): Promise<ProcessedToken>
  /** Local time corrected by the token endpoint's clock offset (epoch ms). */
  serverNow(): number
  readonly counters: TokenCounters
}

/** Whether a failed response is worth exactly one resend: a DPoP nonce challenge, or assertions dated by a wrong clock. */
type Resend = 'nonce' | 'clock'

/** Creates the token exchange of a resolved credential. */
export function createTokenExchange(r: ResolvedCredential, o: TokenExchangeOptions): TokenExchange {
  let clockOffsetMs = 0
  let metadata: Promise<ServerMetadata> | undefined
  const counters: TokenCounters = { tokenRequests: 0, tokensFetched: 0, tokenRequestsFailed: 0, tokenErrors: 0 }
  const serverNow = () => o.now() + clockOffsetMs

  async function tokenEndpoint(signal?: AbortSignal): Promise<string> {
    if (r.tokenUrl) return r.tokenUrl
    metadata ??= discover(r.issuer!, { ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}), timeoutMs: r.timeoutMs, ...(signal ? { signal } : {}) }).catch((e) => {
      metadata = undefined
      throw e
    })
    const m = await metadata
    return (r.method === 'tls_client_auth' && m.mtls_endpoint_aliases?.token_endpoint) || m.token_endpoint
  }

  async function post(plan: TokenRequestPlan, signal?: AbortSignal): Promise<RawTokenResponse> {
    counters.tokenRequests++
    o.log.debug({ url: plan.url, grant: r.grant, method: r.method }, 'token request')
    const raw = await sendTokenRequest(plan, {
      timeoutMs: r.timeoutMs, now: o.now, serverNow,
      ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}), ...(signal ? { signal } : {}), ...(o.dpop ? { dpop: o.dpop } : {}), ...(o.signer ? { signer: o.signer } : {}),
    }).catch((e: unknown) => {
      // No answer (network error, timeout, abort) or no request at all (the assertion could not be signed).
      counters.tokenRequestsFailed++
      throw e
    })
    const offset = clockOffsetFrom(raw)
    if (offset !== undefined) clockOffsetMs = offset
    return raw
  }

  function resendFor(e: unknown, raw: RawTokenResponse, plan: TokenRequestPlan, offsetUsed: number, done: Set<Resend>): Resend | undefined {
    if (!done.has('nonce') && o.dpop && (e as OAuthResponseError).error === 'use_dpop_nonce' && raw.headers['dpop-nonce']) return 'nonce'
    // The response revealed that our clock is off by more than the usual tolerance: assertions
    // were dated wrongly, so one resend with corrected iat/exp is worth it (the server's Date header gives the offset).
    if (!done.has('clock') && plan.toSign.length > 0 && Math.abs(clockOffsetMs - offsetUsed) > 30_000 && (e as WeirError).code === 'ERR_OAUTH_RESPONSE') return 'clock'
    return undefined
  }

  async function send(grantParams: Array<[string, string]>, signal?: AbortSignal): Promise<ProcessedToken> {
    const url = await tokenEndpoint(signal)
    const resent = new Set<Resend>()
    for (;;) {
      const offsetUsed = clockOffsetMs
      const plan = planTokenRequest(r, url, grantParams, serverNow())
      const raw = await post(plan, signal)
      try {
        const token = processTokenResponse(raw, { url, expectDpop: Boolean(o.dpop), defaultExpiresInSec: r.defaultExpiresInSec, clockOffsetMs })
        counters.tokensFetched++
        return token
      } catch (e) {
        // An error response or an unusable one: no token, whether or not a resend follows.
        counters.tokenRequestsFailed++
        const resend = resendFor(e, raw, plan, offsetUsed, resent)
        if (resend === undefined) throw e
        resent.add(resend)
        if (resend === 'clock') o.log.warn({ clockOffsetMs }, 'token endpoint clock differs from ours; resending with corrected assertion times')
      }
    }
  }

  return { send, serverNow, counters }
}
