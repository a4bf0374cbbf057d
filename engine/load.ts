import { builtinComponents } from '../components/index.ts'
import { loadChannel as loadWith, loadChannelObject as loadObjectWith, type LoadOptions } from '../shared/config/load.ts'
import { createRegistry, type Registry } from '../shared/config/registry.ts'
import type { LoadedChannel } from '../shared/config/types.ts'
import { channelAlerts } from './alerts/load.ts'

/** Load options whose registry defaults to the built-in components (and whose `alerts` block is checked by engine/alerts). */
export type EngineLoadOptions = Omit<LoadOptions, 'registry'> & { registry?: Registry }

/** The registry of the built-in components (components/index.ts): a new one per call, nothing global. */
export function builtinRegistry(): Registry {
  return createRegistry(builtinComponents)
}

/**
 * Reads, validates and prepares a channel file against the built-in components (or `options.registry`).
 * Throws ERR_CONFIG_INVALID listing every problem at once.
 * @example
 * const channel = await loadChannel('channels/adt.json')
 */
export function loadChannel(file: string, options: EngineLoadOptions = {}): Promise<LoadedChannel> {
  return loadWith(file, { checkAlerts: channelAlerts, ...options, registry: options.registry ?? builtinRegistry() })
}

/** Validates a parsed channel object against the built-in components (or `options.registry`); `file` locates relative paths. */
export function loadChannelObject(raw: unknown, options: EngineLoadOptions & { file: string }): Promise<LoadedChannel> {
  return loadObjectWith(raw, { checkAlerts: channelAlerts, ...options, registry: options.registry ?? builtinRegistry() })
}
