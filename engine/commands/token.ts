import { join, resolve } from 'node:path'
import { dataDirOf, expectArgs, parseFlags, type CommandIO } from '../cli-io.ts'
import { loadChannel } from '../load.ts'
import { errorCodes, isWeirError } from '../../shared/errors.ts'
import { applyPreset, createRefreshTokenStore, createTokenProvider, explainTokenRequest, resolveCredential } from '../../shared/oauth/index.ts'
import type { CredentialTokenProvider } from '../../shared/oauth/provider.ts'
import type { TokenRetry } from '../../shared/oauth/token-slot.ts'
import { credentialOf, parseTimeout } from './credentials.ts'
import { openPostgresTokenState } from '../../shared/store/postgres/oauth-state.ts'
import { storeOptions, storeUrlOf } from '../store.ts'
import { newStoreKeyGuard } from '../store-key-guard.ts'

export const summary = 'fetch a token for a channel credential and show its type, scope and expiry'
export const usage = `usage: weir token <channel.json> <credential> [--show] [--json] [--timeout 60s] [--data-dir DIR | --store URL]

Fetches a new access token from the token endpoint with the credential, as the engine would (never
a cached one, so a wrong client secret or key shows), and prints where it came from, its type,
scope, expiry and the redacted request that obtained it. The token itself is printed only with
--show. A refresh_token credential refreshes under the store's lease and keeps the rotated refresh
token in the store, as the engine does, so a running engine goes on with it. Retries (a 429 or 503
and its Retry-After) are announced on stderr. Of the channel's secrets ($env, $file) only this
credential's are read, and the components' files (TLS certificates, schemas) are not checked: they
may be missing here or unreadable to this user. The channel's credentialsFile, if any, and the
component modules it loads by path must still be readable.

  --show       also print the access token
  --json       print the summary as JSON
  --timeout    how long to try, retries included: 60s (default), 2m, 500ms; then exit 1 with the last error
  --data-dir   default $WEIR_DATA_DIR, else ./data (refresh-token store)
  --store URL  use the OAuth state of a cluster in its PostgreSQL store (postgres://…, also
               $WEIR_STORE; $WEIR_SECRET_KEY as the engines have it): the new token is published
               there for the engines, and a rotated refresh token stored there`

export interface TokenSummary {
  credential: string
  tokenType: string
  scope: string | null
  /** ISO time, or null for a non-expiring token. */
  expiresAt: string | null
  expiresInSec: number | null
  /** Where the token came from, for the reader. */
  source?: string
  /** Names of extra response fields (e.g. instance_url). */
  extra: Record<string, unknown>
  token?: string
}

/** Fetches a new token with the provider's operator check (`checkToken`) and summarises it; the token value only when `show`. */
export async function fetchTokenSummary(provider: Pick<CredentialTokenProvider, 'name' | 'checkToken'>, options: { show?: boolean; now?: number } = {}): Promise<TokenSummary> {
  const t = await provider.checkToken()
  const now = options.now ?? Date.now()
  const finite = Number.isFinite(t.expiresAt)
  return {
    credential: provider.name,
    tokenType: t.tokenType,
    scope: t.scope ?? null,
    expiresAt: finite ? new Date(t.expiresAt).toISOString() : null,
    expiresInSec: finite ? Math.round((t.expiresAt - now) / 1000) : null,
    extra: t.extra,
    ...(options.show ? { token: t.value.reveal() } : {}),
  }
}

export function formatSummary(s: TokenSummary, request: unknown): string {
  const lines = [
    `credential ${s.credential}: ${s.tokenType} token`,
    `  scope:   ${s.scope ?? '(not stated by the server)'}`,
    `  expires: ${s.expiresAt ? `${s.expiresAt} (in ${s.expiresInSec} s)` : 'never'}`,
  ]
  if (Object.keys(s.extra).length) lines.push(`  extra:   ${JSON.stringify(s.extra)}`)
  if (s.source) lines.push(`  source:  ${s.source}`)
  lines.push('  request (redacted):', ...JSON.stringify(request, null, 2).split('\n').map((l) => `    ${l}`))
  if (s.token !== undefined) lines.push(`  token:   ${s.token}`)
  return lines.join('\n')
}

/** What `weir token` prints as the token's source. */
function sourceOf(config: CredentialConfigOf, name: string): string {
  if (applyPreset(config).grant === 'static') return 'the static token of the configuration (no token endpoint)'
  const r = resolveCredential(name, config)
  const where = r.tokenUrl ?? `the token endpoint of ${r.issuer}`
  return `a new token from ${where} (${r.grant} grant${r.grant === 'refresh_token' ? '; the rotated refresh token is stored as the engine stores it' : ''})`
}
type CredentialConfigOf = ReturnType<typeof credentialOf>

/** A duration for messages: 1500 ms, 60 s. */
const durationText = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`)

/**
 * The provider's retries as the command shows them: each one a line on stderr saying what the
 * endpoint answered and how long the command waits; the last error is kept for the timeout message.
 */
function retryLines(io: CommandIO): { onRetry: (r: TokenRetry) => void; lastError: () => string | undefined } {
  let last: string | undefined
  return {
    onRetry(r) {
      last = r.error
      const asked = r.retryAfterMs !== undefined ? `; Retry-After ${Math.round(r.retryAfterMs / 1000)} s:` : ';'
      io.err(`weir token: ${r.error}${asked} waiting ${Math.round(r.delayMs / 1000)} s (attempt ${r.attempt + 1} of ${r.maxAttempts})`)
    },
    lastError: () => last,
  }
}

/** `p`, or a rejection after `ms` naming the last error the provider reported. */
async function within<T>(p: Promise<T>, ms: number, lastError: () => string | undefined): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new errorCodes.ERR_OAUTH_RESPONSE(`no token within ${durationText(ms)}; the last error: ${lastError() ?? 'none yet (no answer)'}`, { retryable: true })), ms)
  })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    show: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, timeout: { type: 'string' }, 'data-dir': { type: 'string' }, store: storeOptions.store, 'store-password-file': storeOptions['store-password-file'],
  }, 'token')
  if (positionals.length === 0) {
    io.err(usage)
    return 2
  }
  const [file, name] = expectArgs(positionals, ['<channel.json>', '<credential>'], 'weir token <channel.json> <credential>') as [string, string]
  const timeoutMs = parseTimeout(values.timeout ?? '60s')
  // Only this credential's secrets are read: another credential's, or a component's (a key kept on
  // another host, a file this user may not read) is no reason to refuse; one of this credential that
  // is not set is, as it is to the engine.
  const ch = await loadChannel(resolve(io.cwd, file), { env: io.env, onlyCredential: name })
  const config = credentialOf(ch, name)
  const request = explainTokenRequest(config, name)
  const source = sourceOf(config, name)
  const dataDir = dataDirOf(values['data-dir'], io)
  // The refresh-token store's key from this command's environment (as `weir credentials` reads it), not the process's.
  const key = io.env.WEIR_SECRET_KEY ? { key: io.env.WEIR_SECRET_KEY } : {}
  // No new store key over a lost one: messages sealed with it would all go to error at the engine's next start.
  const store = createRefreshTokenStore({ dir: join(dataDir, 'oauth'), ...key, beforeNewKey: newStoreKeyGuard(dataDir, io.env.WEIR_SECRET_KEY) })
  const url = storeUrlOf(values, io)
  const cluster = url ? await openPostgresTokenState({ url, secretKey: io.env.WEIR_SECRET_KEY, ...(values['store-password-file'] ? { passwordFile: values['store-password-file'] } : {}) }) : undefined
  const retries = retryLines(io)
  const provider = createTokenProvider(name, config, { dataDir, store, onRetry: retries.onRetry, ...(cluster ? { shared: cluster.state } : {}) })
  try {
    const summary = { ...(await within(fetchTokenSummary(provider, { show: values.show }), timeoutMs, retries.lastError)), source }
    io.out(values.json ? JSON.stringify({ ...summary, request }, null, 2) : formatSummary(summary, request))
    return 0
  } catch (e) {
    // Provider errors (invalid_client, network…) are the user's to act on: one clear line, no stack.
    if (!isWeirError(e)) throw e
    io.err(`weir token: credential "${name}": ${e.message}`)
    io.err(`request (redacted): ${JSON.stringify(request)}`)
    return 1
  } finally {
    await provider.close()
    await cluster?.close()
  }
}
