import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { dataDirOf, type CommandIO } from '../cli-io.ts'
import { errorCodes } from '../../shared/errors.ts'
import { loadChannel } from '../load.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { createRefreshTokenStore, explainTokenRequest, importRefreshToken, type CredentialConfig } from '../../shared/oauth/index.ts'
import { registerSecretValue } from '../../shared/secret.ts'

export const summary = 'import a refresh token, or explain the token request a credential sends'
export const usage = `usage: weir credentials import <channel.json> <credential> --refresh-token-file FILE [--data-dir DIR]
       weir credentials explain <channel.json> <credential>

import    stores a refresh token obtained outside the engine (consent in a browser, a vendor
          portal) in the encrypted token store (<data-dir>/oauth, key from $WEIR_SECRET_KEY or
          <data-dir>/oauth/secret.key). The token is never printed.
explain   prints the token request the credential would send (method, URL, headers, form
          fields, assertion header and claims) with every secret as [REDACTED]; sends nothing.

  --data-dir   default $WEIR_DATA_DIR, else ./data`

/** The credential `name` of a loaded channel, or a user error listing the known ones. */
export function credentialOf(ch: LoadedChannel, name: string): CredentialConfig {
  const c = ch.credentials[name]
  if (!c) {
    const known = Object.keys(ch.credentials)
    throw new errorCodes.ERR_CREDENTIAL_UNKNOWN(`channel "${ch.name}" has no credential "${name}"${known.length ? ` (it has: ${known.join(', ')})` : ' (it has none)'}`)
  }
  return c as unknown as CredentialConfig
}

/**
 * Stores `refreshToken` for credential `name` (under its `storeKey`, default the name) in the
 * store the engine's providers use. Returns the store key and the new version.
 */
export async function importCredential(options: { name: string; config: CredentialConfig; refreshToken: string; dataDir: string; secretKey?: string }): Promise<{ key: string; version: number }> {
  const token = options.refreshToken.trim()
  if (!token) throw new errorCodes.ERR_FILE_ACCESS('the refresh token file is empty')
  registerSecretValue(token)
  const store = createRefreshTokenStore({ dir: join(options.dataDir, 'oauth'), ...(options.secretKey ? { key: options.secretKey } : {}) })
  const key = options.config.storeKey ?? options.name
  const entry = await importRefreshToken(store, key, token)
  return { key, version: entry.version }
}

/** The redacted token request of a credential, as printable text. */
export function explainCredential(name: string, config: CredentialConfig): string {
  return JSON.stringify(explainTokenRequest(config, name), null, 2)
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { 'refresh-token-file': { type: 'string' }, 'data-dir': { type: 'string' } } })
  const [sub, file, name] = positionals
  if (!sub || !file || !name || positionals.length !== 3 || (sub !== 'import' && sub !== 'explain')) {
    io.err(usage)
    return 2
  }
  const ch = await loadChannel(resolve(io.cwd, file), { env: io.env })
  const config = credentialOf(ch, name)
  if (sub === 'explain') {
    io.out(explainCredential(name, config))
    return 0
  }
  const from = values['refresh-token-file']
  if (!from) throw new errorCodes.ERR_USAGE('import needs --refresh-token-file FILE')
  let text: string
  try {
    text = await readFile(resolve(io.cwd, from), 'utf8')
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`cannot read ${from}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  const { key, version } = await importCredential({ name, config, refreshToken: text, dataDir: dataDirOf(values['data-dir'], io), ...(io.env.WEIR_SECRET_KEY ? { secretKey: io.env.WEIR_SECRET_KEY } : {}) })
  io.out(`stored the refresh token of credential "${name}" (store key "${key}", version ${version}); it was not printed`)
  return 0
}
