import type { ComponentContext, ComponentDefinition, DeliveryResult, Destination, Filter, FilterResult, Message } from '../../shared/component.ts'
import type { LoadedChannel, LoadedComponent } from '../../shared/config/types.ts'
import { describeFailure } from '../../shared/failure.ts'
import { filterOutput } from '../runtime/contract.ts'

/** One call of a destination's `deliver`: what it was handed and how it ended. */
export interface DeliveryCall {
  messageId: string
  body: unknown
  contentType: string
  /** `delivered` when `deliver` returned, `failed` when it threw. */
  outcome: 'delivered' | 'failed'
  result?: DeliveryResult
  error?: string
}

/** One call of a filter's `process`. */
export interface FilterCall {
  /** `filters/0`, `filters/1`… */
  filter: string
  messageId: string
  outcome: 'passed' | 'filtered' | 'split' | 'error'
  /** Messages it returned (split). */
  parts?: number
  error?: string
}

/** What the components of one case did, across restarts. */
export interface Recording {
  /** Calls per destination name, in order. */
  deliveries: Map<string, DeliveryCall[]>
  filters: FilterCall[]
}


function recordedFilter(filter: Filter, name: string, rec: Recording): Filter {
  return {
    process: async (message: Message): Promise<FilterResult> => {
      let r: FilterResult
      try {
        r = await filter.process(message)
      } catch (e) {
        rec.filters.push({ filter: name, messageId: message.id, outcome: 'error', error: describeFailure(e) })
        throw e
      }
      // As the runtime reads it (engine/runtime/contract.ts): a wrong result puts the message in error.
      const out = filterOutput(r, message)
      if ('wrong' in out) rec.filters.push({ filter: name, messageId: message.id, outcome: 'error', error: out.wrong })
      else rec.filters.push({ filter: name, messageId: message.id, ...(out.length === 0 ? { outcome: 'filtered' } : Array.isArray(r) && out.length > 1 ? { outcome: 'split', parts: out.length } : { outcome: 'passed' }) })
      return r
    },
    ...(filter.close ? { close: () => filter.close!() } : {}),
  }
}

function recordedDestination(destination: Destination, name: string, rec: Recording): Destination {
  const calls = rec.deliveries.get(name) ?? []
  rec.deliveries.set(name, calls)
  return {
    deliver: async (message, options) => {
      const call: DeliveryCall = { messageId: message.id, body: message.body, contentType: message.contentType, outcome: 'failed' }
      calls.push(call)
      try {
        call.result = await destination.deliver(message, options)
        call.outcome = 'delivered'
        return call.result
      } catch (e) {
        call.error = describeFailure(e)
        throw e
      }
    },
    ...(destination.close ? { close: () => destination.close!() } : {}),
  }
}

/** The context with the case's directories in place of the engine's; getters (`http`) kept as getters. */
function sandboxedContext(ctx: ComponentContext, dirs: { channelDir: string; dataDir: string }): ComponentContext {
  const descriptors = Object.getOwnPropertyDescriptors(ctx)
  return Object.defineProperties({}, { ...descriptors, channelDir: { value: dirs.channelDir, enumerable: true }, dataDir: { value: dirs.dataDir, enumerable: true } }) as ComponentContext
}

/**
 * The channel as a case runs it: every component, built-in or loaded by module path, gets the
 * case's sandbox as `ctx.channelDir` and `ctx.dataDir`, and every filter and destination instance
 * is wrapped so that the case sees what it was handed. The definitions themselves are untouched
 * (they are shared by every case and channel of the process).
 */
export function instrumentChannel(channel: LoadedChannel, dirs: { channelDir: string; dataDir: string }): { channel: LoadedChannel; recording: Recording } {
  const recording: Recording = { deliveries: new Map(), filters: [] }
  const wrap = <C extends LoadedComponent>(c: C, onInstance?: (instance: any, ctx: ComponentContext) => unknown): C => {
    const def = c.definition as ComponentDefinition
    const definition: ComponentDefinition = {
      ...def,
      create: async (config, ctx) => {
        const sandboxed = sandboxedContext(ctx, dirs)
        const instance = await def.create(config, sandboxed)
        return (onInstance ? onInstance(instance, sandboxed) : instance) as never
      },
    }
    return { ...c, definition }
  }
  for (const d of channel.destinations) recording.deliveries.set(d.name, [])
  return {
    recording,
    channel: {
      ...channel,
      source: wrap(channel.source),
      filters: channel.filters.map((f) => wrap(f, (instance: Filter, ctx) => recordedFilter(instance, ctx.name, recording))),
      destinations: channel.destinations.map((d) => wrap(d, (instance: Destination, ctx) => recordedDestination(instance, ctx.name, recording))),
    },
  }
}
