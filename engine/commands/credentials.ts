import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { dataDirOf, expectArgs, parseSubcommandFlags, type CommandIO, type FlagOptions } from '../cli-io.ts'
import { ConfigError, errorCodes, isWeirError } from '../../shared/errors.ts'
import { loadChannel } from '../load.ts'
import { browserCommand, openBrowser } from '../open-browser.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { requireRefreshTokenGrant } from '../../shared/oauth/authorize.ts'
import { authorizeWithConsent, createRefreshTokenStore, explainTokenRequest, importRefreshToken, type CredentialConfig, type RefreshTokenStore } from '../../shared/oauth/index.ts'
import { missingClusterKey, openPostgresTokenState } from '../../shared/store/postgres/oauth-state.ts'
import { StoreError } from '../../shared/store/errors.ts'
import { storeOptions, storeUrlOf, type StoreChoice } from '../store.ts'
import { newStoreKeyGuard } from '../store-key-guard.ts'
import { registerSecretValue, reveal } from '../../shared/secret.ts'

export const summary = 'obtain a refresh token by consent, import one, or explain the token request a credential sends'
export const usage = `usage: weir credentials authorize <channel.json> <credential> [--timeout 300s] [--no-browser] [--data-dir DIR | --store URL]
       weir credentials import <channel.json> <credential> --refresh-token-file FILE [--data-dir DIR | --store URL]
       weir credentials explain <channel.json> <credential>

authorize obtains a refresh token with a person's consent: the authorization-code flow with PKCE
          and a loopback redirect (RFC 8252). Prints the URL to open (and opens a browser when
          there is a display), waits for the redirect, exchanges the code with the credential's
          client authentication and stores the refresh token as import does. Neither the code
          nor a token is printed.
import    stores a refresh token obtained outside the engine (consent in a browser, a vendor
          portal) in the encrypted token store (<data-dir>/oauth, key from $WEIR_SECRET_KEY or
          <data-dir>/oauth/secret.key). The token is never printed.
explain   prints the token request the credential would send (method, URL, headers, form
          fields, assertion header and claims) with every secret as [REDACTED]; sends nothing.

  --timeout     how long authorize waits for the consent: 300s (default), 10m, 500ms
  --no-browser  authorize only prints the URL (also without a display, or when $CI is set)
  --data-dir    default $WEIR_DATA_DIR, else ./data
  --store URL   store the refresh token where a cluster of engines reads it: the PostgreSQL store
                (postgres://…, also $WEIR_STORE), encrypted with $WEIR_SECRET_KEY (required, the
                same on every engine); --store-password-file F as for weir run`

/** The credential `name` of a loaded channel, or a user error listing the known ones. */
export function credentialOf(ch: LoadedChannel, name: string): CredentialConfig {
  const c = ch.credentials[name]
  if (!c) {
    const known = Object.keys(ch.credentials)
    throw new errorCodes.ERR_CREDENTIAL_UNKNOWN(`channel "${ch.name}" has no credential "${name}"${known.length ? ` (it has: ${known.join(', ')})` : ' (it has none)'}`)
  }
  return c as unknown as CredentialConfig
}

/** The data directory's refresh-token store (<data-dir>/oauth), keyed with `secretKey` or its secret.key. */
function localTokenStore(dataDir: string, secretKey: string | undefined): RefreshTokenStore {
  // No new store key over a lost one: messages sealed with it would all go to error at the engine's next start.
  return createRefreshTokenStore({ dir: join(dataDir, 'oauth'), ...(secretKey ? { key: secretKey } : {}), beforeNewKey: newStoreKeyGuard(dataDir, secretKey) })
}

/**
 * Stores `refreshToken` for credential `name` (under its `storeKey`, default the name) in the
 * store the engine's providers use. Returns the store key and the new version.
 */
export async function importCredential(options: { name: string; config: CredentialConfig; refreshToken: string; dataDir: string; secretKey?: string; store?: RefreshTokenStore }): Promise<{ key: string; version: number }> {
  const token = options.refreshToken.trim()
  if (!token) throw new errorCodes.ERR_FILE_ACCESS('the refresh token file is empty')
  registerSecretValue(token)
  const store = options.store ?? localTokenStore(options.dataDir, options.secretKey)
  const key = options.config.storeKey ?? options.name
  const entry = await importRefreshToken(store, key, token)
  return { key, version: entry.version }
}

/** The redacted token request of a credential, as printable text. */
export function explainCredential(name: string, config: CredentialConfig): string {
  return JSON.stringify(explainTokenRequest(config, name), null, 2)
}

/** `--timeout`: a duration like 300s, 10m, 500ms (a bare number is seconds). */
export function parseTimeout(value: string): number {
  const m = /^(\d+)\s*(ms|s|m|h)?$/.exec(value.trim())
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'] : NaN
  if (!(ms > 0)) throw new errorCodes.ERR_USAGE(`--timeout must be a duration like 300s, 10m or 500ms; not "${value}"`)
  return ms
}

type Flags = { 'refresh-token-file'?: string; 'data-dir'?: string; timeout?: string; 'no-browser'?: boolean } & StoreChoice

/** Where a refresh token goes: the data directory's token store, or with `--store` the cluster's PostgreSQL one. */
interface TokenTarget {
  store: RefreshTokenStore
  dataDir: string
  cluster: boolean
  close(): Promise<void>
}

async function openTarget(values: Flags, io: CommandIO): Promise<TokenTarget> {
  const url = storeUrlOf(values, io)
  const dataDir = dataDirOf(values['data-dir'], io)
  if (!url) return { store: localTokenStore(dataDir, io.env.WEIR_SECRET_KEY || undefined), dataDir, cluster: false, close: async () => {} }
  const cluster = await openPostgresTokenState({ url, secretKey: io.env.WEIR_SECRET_KEY, ...(values['store-password-file'] ? { passwordFile: values['store-password-file'] } : {}) })
  return { store: cluster.state, dataDir, cluster: true, close: () => cluster.close() }
}

/** Stores `refreshToken` as import does and says so, without the token. */
async function store(name: string, config: CredentialConfig, refreshToken: string, target: TokenTarget, io: CommandIO): Promise<number> {
  const { key, version } = await importCredential({ name, config, refreshToken, dataDir: target.dataDir, store: target.store })
  io.out(`stored the refresh token of credential "${name}" (store key "${key}", version ${version}${target.cluster ? ', in the cluster\'s PostgreSQL store' : ''}); it was not printed`)
  return 0
}

/**
 * `authorize`: the consent flow; the URL goes to stderr (stdout only says what was stored), a failure is one line.
 * Whatever can refuse runs first: the credential's grant, and a read of its entry in the token store,
 * which loads the store key (the guard refuses a new one over a lost key) and opens an entry already
 * there (a wrong key). A person never consents to a token that could not be stored.
 */
async function authorize(name: string, config: CredentialConfig, values: Flags, io: CommandIO): Promise<number> {
  const timeoutMs = parseTimeout(values.timeout ?? '300s')
  const browser = values['no-browser'] ? undefined : browserCommand(io.env)
  requireRefreshTokenGrant(name, config, 'weir credentials authorize obtains')
  const target = await openTarget(values, io)
  try {
    await target.store.read(config.storeKey ?? name)
    let refreshToken: string
    try {
      const secret = await authorizeWithConsent(name, config, {
        timeoutMs,
        onAuthorizationUrl(url, redirectUri) {
          io.err(`Open this URL in a browser and consent for credential "${name}"; waiting for the redirect to ${redirectUri}:\n\n  ${url}\n`)
          if (browser) openBrowser(browser, url)
        },
      })
      refreshToken = reveal(secret)!
    } catch (e) {
      // Refusals, mismatches and token endpoint errors are the user's to act on: one clear line, no stack.
      // A configuration error names the credential itself.
      if (!isWeirError(e) || e.code === 'ERR_CONFIG_INVALID') throw e
      io.err(`weir credentials authorize: credential "${name}": ${e.message}`)
      return 1
    }
    return await store(name, config, refreshToken, target, io)
  } finally {
    await target.close()
  }
}

/**
 * The explanation of a credential loaded without its secrets: a client assertion's header needs
 * the signing key, so a key that is not set is reported as loading would report it.
 */
function explainWithKeys(ch: LoadedChannel, name: string, config: CredentialConfig): string {
  try {
    return explainCredential(name, config)
  } catch (e) {
    // Loaded with `onlyCredential`, the references that did not resolve are all this credential's.
    const own = ch.unsetSecrets ?? []
    if (isWeirError(e) && e.code === 'ERR_CONFIG_INVALID' && own.length > 0) throw new ConfigError(own)
    throw e
  }
}

/** Where a refresh token is stored: the data directory's token store, or the cluster's PostgreSQL one. */
const TARGET_FLAGS = { 'data-dir': { type: 'string' }, store: storeOptions.store, 'store-password-file': storeOptions['store-password-file'] } as const

/** The flags each subcommand takes (its usage line): any other (`--timeout` on import, a typo) is bad usage naming the subcommand's own. */
const SUBCOMMAND_FLAGS = {
  authorize: { timeout: { type: 'string' }, 'no-browser': { type: 'boolean' }, ...TARGET_FLAGS },
  import: { 'refresh-token-file': { type: 'string' }, ...TARGET_FLAGS },
  explain: {},
} as const satisfies Record<string, FlagOptions>

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { sub, values, positionals } = parseSubcommandFlags(args, SUBCOMMAND_FLAGS, 'credentials')
  if (!sub) {
    io.err(usage)
    return 2
  }
  const [, file, name] = expectArgs(positionals, [sub, '<channel.json>', '<credential>'], `weir credentials ${sub} <channel.json> <credential>`) as [string, string, string]
  // Before a consent is spent on a token that could not be stored.
  if (sub !== 'explain' && storeUrlOf(values, io) && !io.env.WEIR_SECRET_KEY) throw new StoreError(missingClusterKey)
  // Only this credential's secrets are read; explain and import never send the client's secret or
  // sign with its key: those need not be set here either.
  const ch = await loadChannel(resolve(io.cwd, file), { env: io.env, onlyCredential: name, allowUnsetSecrets: sub !== 'authorize' })
  const config = credentialOf(ch, name)
  if (sub === 'explain') {
    io.out(explainWithKeys(ch, name, config))
    return 0
  }
  if (sub === 'authorize') return authorize(name, config, values, io)
  requireRefreshTokenGrant(name, config, 'weir credentials import stores')
  const from = values['refresh-token-file']
  if (!from) throw new errorCodes.ERR_USAGE('import needs --refresh-token-file FILE')
  let text: string
  try {
    text = await readFile(resolve(io.cwd, from), 'utf8')
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`cannot read ${from}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  const target = await openTarget(values, io)
  try {
    return await store(name, config, text, target, io)
  } finally {
    await target.close()
  }
}
