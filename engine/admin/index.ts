import { resolve } from 'node:path'
import { errorCodes, formatProblem, isWeirError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import type { CommandIO } from '../cli-io.ts'
import { parseListenAddress } from '../jwks-server.ts'
import { OPEN_CONFIG, loadAdminConfig } from './config.ts'
import { startAdminServer, type AdminServer } from './server.ts'

export { startAdminServer, type AdminServer, type AdminServerOptions } from './server.ts'

/** The admin server's address when `--admin` is not given. */
export const DEFAULT_ADMIN = '127.0.0.1:8089'

/** The `weir run` flags of the admin server. */
export const adminOptions = {
  admin: { type: 'string' },
  'admin-config': { type: 'string' },
  standby: { type: 'boolean' },
} as const

export const adminUsage = `  --admin ADDR    the admin server (/healthz, /readyz, /metrics, API): HOST:PORT, PORT or off
                  (default ${DEFAULT_ADMIN}; when that port is taken, the engine runs without it)
  --admin-config F   admin tokens and/or OIDC bearer tokens with roles (viewer, operator), and
                  "tls" for HTTPS; required when the admin server listens on anything but loopback
  --standby       when another engine holds the data directory, wait for it (the admin server
                  answers /readyz 503 meanwhile) instead of exiting`

interface AdminChoice {
  admin?: string | undefined
  'admin-config'?: string | undefined
}

/**
 * Starts the admin server `weir run` asked for, or none with `--admin off`. A taken default port
 * only warns (several engines on one host, tests); a port given explicitly must be free.
 */
export async function startAdminFor(values: AdminChoice, io: Pick<CommandIO, 'cwd' | 'env' | 'err'>, o: { log: Logger }): Promise<AdminServer | undefined> {
  if (values.admin === 'off') return undefined
  let address: { host: string; port: number }
  try {
    address = parseListenAddress(values.admin ?? DEFAULT_ADMIN)
  } catch {
    throw new errorCodes.ERR_USAGE(`--admin must be HOST:PORT, PORT or off (e.g. ${DEFAULT_ADMIN}); got "${values.admin}"`)
  }
  let config = OPEN_CONFIG
  if (values['admin-config'] !== undefined) {
    const loaded = await loadAdminConfig(resolve(io.cwd, values['admin-config']), io.env)
    for (const w of loaded.warnings) io.err(`warning: ${formatProblem(w)}`)
    config = loaded.config
  }
  try {
    return await startAdminServer({ ...address, config, log: o.log })
  } catch (e) {
    if (values.admin !== undefined || !isWeirError(e) || e.code !== 'ERR_LISTEN') throw e
    o.log.warn({ address: DEFAULT_ADMIN, reason: e.message }, 'admin server not started: its default address is taken (give --admin HOST:PORT or --admin off)')
    return undefined
  }
}

/** The pid in the SQLite store's "data directory … is in use by process N" refusal, or undefined for other errors. */
function lockHolder(e: unknown): { pid?: number } | undefined {
  if (!isWeirError(e) || e.code !== 'ERR_STORE') return undefined
  const m = /is in use by (?:process (\d+)|another process)/.exec(e.message)
  return m ? (m[1] ? { pid: Number(m[1]) } : {}) : undefined
}

/**
 * `weir run --standby`: opens the store, and while another engine holds the data directory's lock
 * tries again every `intervalMs`, telling the admin server why the engine is not ready. Other
 * errors end the wait. Rejects with the signal's reason when `signal` aborts.
 */
export async function openStoreWhenFree(open: () => Promise<MessageStore>, o: { admin?: AdminServer; log: Logger; signal?: AbortSignal; intervalMs?: number }): Promise<MessageStore> {
  let logged = false
  for (;;) {
    try {
      const store = await open()
      o.admin?.setWaiting(undefined)
      return store
    } catch (e) {
      const holder = lockHolder(e)
      if (!holder) throw e
      const reason = `store locked by another engine${holder.pid ? ` (pid ${holder.pid})` : ''}`
      o.admin?.setWaiting(reason)
      if (!logged) o.log.warn({ reason }, 'standby: waiting for the data directory')
      logged = true
    }
    o.signal?.throwIfAborted()
    await new Promise<void>((ok) => {
      const t = setTimeout(ok, o.intervalMs ?? 1000)
      o.signal?.addEventListener('abort', () => { clearTimeout(t); ok() }, { once: true })
    })
    o.signal?.throwIfAborted()
  }
}
