/**
 * Weir's public API: the component contract, errors, secrets, logging and channel loading.
 * `import { defineComponent } from 'weir'` in a component module of your own.
 */
export { defineComponent, withBody } from './shared/component.ts'
export type {
  CheckContext, ComponentDefinition, ComponentContext, ComponentKind, ComponentState, Message, MessageInput, Emit, EmitResult,
  Source, Filter, FilterResult, Destination, DeliveryResult, JsonSchema, ConfigSchema, ConfigOf,
} from './shared/component.ts'
export * from './shared/errors.ts'
export { Secret } from './shared/secret.ts'
export { createLogger } from './shared/log/index.ts'
export { loadChannel, loadChannelObject, builtinRegistry } from './engine/load.ts'
export { createRegistry } from './shared/config/registry.ts'
export { secretSchema } from './shared/config/secret-schema.ts'
export { createTokenProvider, createRefreshTokenStore, importRefreshToken, explainTokenRequest, credentialSchema, checkCredential } from './shared/oauth/index.ts'
export type { AccessToken, TokenProvider } from './shared/oauth/index.ts'
export { createHttpClient } from './shared/http/index.ts'
export { parseEr7, serializeEr7, readHeader, buildAck, readAck, HL7_ER7_CONTENT_TYPE } from './shared/hl7v2/index.ts'
export type { Ack, AckCode, AckOptions, Hl7Message, Hl7Segment, Hl7Field, MshHeader } from './shared/hl7v2/index.ts'
export { runChannelTest, type CaseResult, type TestFileResult } from './engine/harness/run.ts'
export { startAuthorizationServer } from './engine/embedded/authorization-server.ts'
export { startEmbeddedApi } from './engine/embedded/api.ts'
