import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { dataDirOf, expectArgs, type CommandIO } from '../cli-io.ts'
import { loadChannel } from '../load.ts'
import { isWeirError } from '../../shared/errors.ts'
import { createRefreshTokenStore, createTokenProvider, explainTokenRequest, type TokenProvider } from '../../shared/oauth/index.ts'
import { credentialOf } from './credentials.ts'
import { openPostgresTokenState } from '../../shared/store/postgres/oauth-state.ts'
import { storeOptions, storeUrlOf } from '../store.ts'

export const summary = 'fetch a token for a channel credential and show its type, scope and expiry'
export const usage = `usage: weir token <channel.json> <credential> [--show] [--json] [--data-dir DIR | --store URL]

Fetches an access token with the credential, as the engine would, and prints its type, scope,
expiry and the redacted request that obtained it. The token itself is printed only with --show.

  --show       also print the access token
  --json       print the summary as JSON
  --data-dir   default $WEIR_DATA_DIR, else ./data (refresh-token store)
  --store URL  use the OAuth state of a cluster in its PostgreSQL store (postgres://…, also
               $WEIR_STORE; $WEIR_SECRET_KEY as the engines have it): the cluster's cached token
               while it is fresh, else a new one that the engines then use`

export interface TokenSummary {
  credential: string
  tokenType: string
  scope: string | null
  /** ISO time, or null for a non-expiring token. */
  expiresAt: string | null
  expiresInSec: number | null
  /** Names of extra response fields (e.g. instance_url). */
  extra: Record<string, unknown>
  token?: string
}

/** Fetches a token and summarises it; the token value only when `show`. */
export async function fetchTokenSummary(provider: TokenProvider, options: { show?: boolean; now?: number } = {}): Promise<TokenSummary> {
  const t = await provider.getToken()
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
  lines.push('  request (redacted):', ...JSON.stringify(request, null, 2).split('\n').map((l) => `    ${l}`))
  if (s.token !== undefined) lines.push(`  token:   ${s.token}`)
  return lines.join('\n')
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { show: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, 'data-dir': { type: 'string' }, store: storeOptions.store, 'store-password-file': storeOptions['store-password-file'] },
  })
  if (positionals.length === 0) {
    io.err(usage)
    return 2
  }
  const [file, name] = expectArgs(positionals, ['<channel.json>', '<credential>'], 'weir token <channel.json> <credential>') as [string, string]
  const ch = await loadChannel(resolve(io.cwd, file), { env: io.env })
  const config = credentialOf(ch, name)
  const request = explainTokenRequest(config, name)
  const dataDir = dataDirOf(values['data-dir'], io)
  // The refresh-token store's key from this command's environment (as `weir credentials` reads it), not the process's.
  const store = io.env.WEIR_SECRET_KEY ? createRefreshTokenStore({ dir: join(dataDir, 'oauth'), key: io.env.WEIR_SECRET_KEY }) : undefined
  const url = storeUrlOf(values, io)
  const cluster = url ? await openPostgresTokenState({ url, secretKey: io.env.WEIR_SECRET_KEY, ...(values['store-password-file'] ? { passwordFile: values['store-password-file'] } : {}) }) : undefined
  const provider = createTokenProvider(name, config, { dataDir, ...(store ? { store } : {}), ...(cluster ? { shared: cluster.state } : {}) })
  try {
    const summary = await fetchTokenSummary(provider, { show: values.show })
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
