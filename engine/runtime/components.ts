import type { ComponentContext, Destination, Filter, RejectReason, Source } from '../../shared/component.ts'
import type { LoadedChannel, LoadedComponent } from '../../shared/config/types.ts'
import { errorCodes } from '../../shared/errors.ts'
import type { HttpClient } from '../../shared/http/types.ts'
import type { Logger } from '../../shared/log/index.ts'
import type { TokenProvider } from '../../shared/oauth/types.ts'
import type { MessageStore } from '../../shared/store/types.ts'
import { CircuitBreaker } from './breaker.ts'
import { createInstance } from './contract.ts'
import type { DestinationSlot } from './delivery.ts'
import { underLeadership } from './leader.ts'
import { PauseGate } from './pause.ts'

export interface ComponentDeps {
  store: MessageStore
  log: Logger
  dataDir: string
  now: () => number
  signal: AbortSignal
  credential?: ((name: string, channel: LoadedChannel) => TokenProvider) | undefined
  http?: HttpClient | undefined
  /** Told of input a component rejected (`ctx.rejected`). */
  rejected?: ((reason: RejectReason) => void) | undefined
}

export interface ChannelComponents {
  source: Source
  filters: Filter[]
  destinations: DestinationSlot[]
  /** Token providers the components asked for, by credential name (closed with the channel). */
  providers: Map<string, TokenProvider>
}

/** Builds the channel's components in order (filters, destinations, then the source), each with its own context. */
export async function createComponents(channel: LoadedChannel, deps: ComponentDeps): Promise<ChannelComponents> {
  const providers = new Map<string, TokenProvider>()
  const log = deps.log
  // Held to the contract: a create() that throws, or an instance without its methods, refuses the start (contract.ts).
  const create = async <K extends 'source' | 'filter' | 'destination'>(c: LoadedComponent<K>, name: string) =>
    createInstance(channel, c, () => c.definition.create(c.config, componentContext(channel, deps, providers, name)), log)
  const filters: Filter[] = []
  for (const [i, f] of channel.filters.entries()) filters.push((await create(f, `filters/${i}`)) as Filter)
  const destinations: DestinationSlot[] = []
  for (const d of channel.destinations) {
    const breaker = new CircuitBreaker(d.circuitBreaker, deps.now, (s) => {
      if (s === 'open') log.warn({ destination: d.name, resetAfterMs: d.circuitBreaker.resetAfterMs }, 'destination paused: circuit breaker open')
      else if (s === 'closed') log.info({ destination: d.name }, 'destination resumed: circuit breaker closed')
    })
    destinations.push({ loaded: d, instance: (await create(d, d.name)) as Destination, breaker, hold: new PauseGate() })
  }
  let source = (await create(channel.source, 'source')) as Source
  if (channel.source.definition.cluster === 'one-engine' && deps.store.leadership) {
    source = underLeadership(source, { leadership: deps.store.leadership, name: `${channel.name}/source`, log: log.child({ component: 'source' }), now: deps.now })
  }
  return { source, filters, destinations, providers }
}

/** What one component sees of the engine: its log, credentials by name, the HTTP client, its data directory, state, and where a source reports rejected input. */
function componentContext(channel: LoadedChannel, deps: ComponentDeps, providers: Map<string, TokenProvider>, componentName: string): ComponentContext {
  const name = channel.name
  return {
    channel: name,
    channelDir: channel.dir,
    name: componentName,
    log: deps.log.child({ component: componentName }),
    credential(credName: string): TokenProvider {
      const existing = providers.get(credName)
      if (existing) return existing
      if (!(credName in channel.credentials)) throw new errorCodes.ERR_CREDENTIAL_UNKNOWN(`channel ${name} has no credential "${credName}"`)
      if (!deps.credential) throw new errorCodes.ERR_INTERNAL(`no credential support configured for channel ${name}`)
      const p = deps.credential(credName, channel)
      providers.set(credName, p)
      return p
    },
    get http(): HttpClient {
      if (!deps.http) throw new errorCodes.ERR_INTERNAL(`no HTTP client configured for channel ${name}`)
      return deps.http
    },
    dataDir: deps.dataDir,
    signal: deps.signal,
    state: {
      get: <T>(key: string) => deps.store.getState<T>(name, componentName, key),
      set: (key: string, value: unknown) => deps.store.setState(name, componentName, key, value),
    },
    rejected: (reason: RejectReason) => deps.rejected?.(reason),
  }
}
