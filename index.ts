/**
 * Weir's public API: the component contract, errors, secrets, logging and channel loading.
 * `import { defineComponent } from 'weir'` in a component module of your own.
 */
export { defineComponent, withBody } from './shared/component.ts'
export type {
  ComponentDefinition, ComponentContext, ComponentKind, ComponentState, Message, MessageInput, Emit, EmitResult,
  Source, Filter, FilterResult, Destination, DeliveryResult, JsonSchema,
} from './shared/component.ts'
export * from './shared/errors.ts'
export { Secret } from './shared/secret.ts'
export { createLogger } from './shared/log/index.ts'
export { loadChannel, loadChannelObject } from './shared/config/load.ts'
export { createRegistry } from './shared/config/registry.ts'
export { secretSchema } from './shared/config/secret-schema.ts'
