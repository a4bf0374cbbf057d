import type { ChannelHandle } from '../runtime/index.ts'
import type { MessageStore } from '../../shared/store/types.ts'

export interface Check {
  name: string
  ok: boolean
  reason?: string
}

export interface Readiness {
  ready: boolean
  checks: Check[]
}

/** What `/readyz` looks at; `store` and `handles` are empty until the engine has opened the store and started its channels. */
export interface ReadinessSources {
  store(): MessageStore | undefined
  handles(): readonly ChannelHandle[] | undefined
  /** Why the store is not open yet (standby: locked by another engine), when it is not. */
  waiting(): string | undefined
}

/** How long the store may take to answer the readiness probe. */
export const STORE_PROBE_TIMEOUT_MS = 1000

/** A keyed read of one row: cheap on both stores, and it fails while the database is down. */
async function probeStore(store: MessageStore, timeoutMs: number): Promise<Check> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs) })
  try {
    await Promise.race([store.getState('#admin', '#readyz', 'probe'), timeout])
    return { name: 'store', ok: true }
  } catch (e) {
    return { name: 'store', ok: false, reason: `store unreachable: ${(e as Error).message}` }
  } finally {
    clearTimeout(timer)
  }
}

function channelChecks(handles: readonly ChannelHandle[] | undefined): Check[] {
  if (!handles) return [{ name: 'channels', ok: false, reason: 'channels not started yet' }]
  return handles.map((h) => {
    const status = h.status()
    return status === 'stopped' || status === 'stopping'
      ? { name: `channel ${h.name}`, ok: false, reason: `channel ${status}` }
      : { name: `channel ${h.name}`, ok: true }
  })
}

/**
 * Whether the engine should get traffic: the store answers a keyed read within a second and no
 * channel has stopped. For Kubernetes readiness probes and load balancers (`/readyz`, 503 when not).
 */
export async function readiness(src: ReadinessSources, timeoutMs = STORE_PROBE_TIMEOUT_MS): Promise<Readiness> {
  const store = src.store()
  const waiting = src.waiting()
  const storeCheck: Check = store
    ? await probeStore(store, timeoutMs)
    : { name: 'store', ok: false, reason: waiting ?? 'store not open yet' }
  const checks = [storeCheck, ...channelChecks(src.handles())]
  return { ready: checks.every((c) => c.ok), checks }
}
