import type { Logger } from './log/index.ts'
import type { TokenProvider } from './oauth/types.ts'
import type { HttpClient } from './http/types.ts'
import type { Secret } from './secret.ts'
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'

export { isJsonContentType } from './http/content-type.ts'

/** A message as it moves through a channel. */
export interface Message {
  /** Stable id, assigned at the durable write (or derived from the input, e.g. a file). */
  readonly id: string
  readonly channel: string
  /** Parsed JSON when the content type is JSON, otherwise the text. */
  readonly body: unknown
  readonly contentType: string
  /** Source-provided facts: file name, selected HTTP headers, page URL… */
  readonly attributes: Readonly<Record<string, string>>
  readonly receivedAt: number
}

/** What a source hands to `emit`. */
export interface MessageInput {
  body: unknown
  contentType?: string
  attributes?: Record<string, string>
  /** A stable key derived from the input (file path + size + mtime, an API resource id…); a re-emit with the same key is recognised as a duplicate. */
  dedupeKey?: string
  /**
   * How long the dedupe key holds (ms from the first message's receipt): a repeat after that is a
   * new message (the key moves to it; the earlier message stays in the log). Without it, as long as
   * the first message is in the message log.
   */
  dedupeWindowMs?: number
}

export interface EmitResult {
  id: string
  /** True when a message with the same dedupe key was already stored: nothing new was written. */
  duplicate: boolean
}

/** Resolves only after the message is durably stored; rejects with a retryable `ERR_BACKPRESSURE` when the queue is full. */
export type Emit = (input: MessageInput) => Promise<EmitResult>

export interface Source {
  /** Begin receiving; call `emit` for each message. Resolves once the source is listening/scheduled. */
  start(emit: Emit): Promise<void> | void
  /** Stop accepting new input and release every socket, timer and cron task. */
  stop(): Promise<void> | void
  /** Optional: the bound address of a listening source (useful with port 0). */
  address?(): { address: string; port: number } | undefined
  /** Optional: poll now (schedules), joining a poll in progress instead of overlapping it. */
  tick?(): Promise<void>
}

export type FilterResult = Message | Message[] | null

export interface Filter {
  /** Returns the message (possibly transformed), null to drop it (status `filtered`), or several messages. Throws to put it in error. */
  process(message: Message): Promise<FilterResult> | FilterResult
  close?(): Promise<void> | void
}

export interface DeliveryResult {
  /** Response status, when the destination is HTTP. */
  status?: number
  /** A short, redacted excerpt of the response, recorded in the message log. */
  excerpt?: string
  /** Something worth knowing about a delivery that went through, recorded with the attempt in the message's history (the built-in `http` destination: its access token was renewed after a 401). */
  note?: string
}

export interface Destination {
  /**
   * Delivers one message. Throws a retryable error (`retryable: true`, optional `retryAfterMs`) for
   * failures that may pass (network, timeout, 408, 429, 5xx) and a permanent one otherwise.
   * `idempotencyKey` is stable across redeliveries of the same message to the same destination.
   */
  deliver(message: Message, options: { signal: AbortSignal; idempotencyKey: string }): Promise<DeliveryResult>
  close?(): Promise<void> | void
}

/** Small persistent key/value state per component (cursors), kept in the store across restarts. */
export interface ComponentState {
  get<T = unknown>(key: string): Promise<T | undefined>
  set(key: string, value: unknown): Promise<void>
}

/**
 * Why a source rejected input before it became a message, as `ctx.rejected` takes it: a small fixed
 * set (the `reason` label of `weir_messages_rejected_total`). `malformed`: it does not parse (bad JSON,
 * not HL7, two messages in one frame, a frame cut short); `too_large`: above the size limit;
 * `unauthorized`: no valid credential, or one without the required scope; `unsupported_media_type`:
 * a content type or charset not accepted; `unsupported_version`: an HL7 version not accepted;
 * `other`: anything else.
 */
export const REJECT_REASONS = ['malformed', 'too_large', 'unauthorized', 'unsupported_media_type', 'unsupported_version', 'other'] as const
export type RejectReason = (typeof REJECT_REASONS)[number]

/** What a component receives besides its config. Dependencies come through here, never through globals. */
export interface ComponentContext {
  channel: string
  /** Directory of the channel file; relative paths in config resolve against it. */
  channelDir: string
  /** Where this component sits in the channel: `source`, `filters/0`, or the destination's name. */
  name: string
  log: Logger
  /** A named credential of the channel, as an OAuth token provider. */
  credential(name: string): TokenProvider
  http: HttpClient
  dataDir: string
  signal: AbortSignal
  state: ComponentState
  /**
   * Sources: tells the channel that input was rejected before it became a message (answered 4xx,
   * AE or AR), once per rejected request or frame. The channel counts it (`counters().rejected`,
   * `weir_messages_rejected_total{reason}`); a reason outside REJECT_REASONS counts as `other`.
   * Optional: a context built outside the runtime may lack it, so call it as `ctx.rejected?.(…)`.
   * @example
   * if (tooBig) { res.writeHead(413).end(); ctx.rejected?.('too_large') }
   */
  rejected?(reason: RejectReason): void
}

export type ComponentKind = 'source' | 'filter' | 'destination'

export interface ComponentInstanceByKind {
  source: Source
  filter: Filter
  destination: Destination
}

/** JSON Schema, as ajv accepts it. */
export type JsonSchema = Record<string, unknown>

/** A component's config schema: a JSON Schema object literal, declared `as const` so its type can be read. */
export type ConfigSchema = JSONSchema & object

/** A secret field's type as the schema reads: a literal or a reference (shared/config/secret-schema.ts). */
type SecretInput = string | { $env: string } | { $file: string }

// The loader resolves every secret field (a literal or a $env/$file reference) to a Secret. The
// `$env` member marks a secret field: only secret schemas admit it. (json-schema-to-ts's own
// `deserialize` option does the same at some fifty times the type-checking cost.)
type Resolved<T> = unknown extends T ? T
  : [Extract<T, { $env: string }>] extends [never] ? ResolvedMembers<T>
  : Secret | Exclude<T, SecretInput>
type ResolvedMembers<T> = T extends readonly (infer E)[] ? Resolved<E>[] : T extends object ? { [K in keyof T]: Resolved<T[K]> } : T

/** What `check` knows besides the config: where the channel file is (the base of relative paths). */
export interface CheckContext {
  channelDir: string
}

/**
 * The config a component receives, read from its schema (json-schema-to-ts `FromSchema`): validated,
 * fields with a `default` present (ajv fills them in), secret fields resolved to `Secret`s.
 * A schema typed only as `JsonSchema` gives `unknown`.
 */
export type ConfigOf<S> = JsonSchema extends S ? unknown : S extends JSONSchema ? Resolved<FromSchema<S>> : unknown

export interface ComponentDefinition<K extends ComponentKind = ComponentKind, S = JsonSchema> {
  /** Name used in channel files (`"type": "http"`); kebab-case. */
  type: string
  kind: K
  description: string
  /** JSON Schema of `config`; ajv validates (strict, allErrors, useDefaults) before `create()`. Its type gives `create()`'s config type. */
  configSchema: S
  /** Builds an instance from validated, defaulted, deep-frozen config. */
  create(config: Readonly<ConfigOf<S>>, ctx: ComponentContext): ComponentInstanceByKind[K] | Promise<ComponentInstanceByKind[K]>
  /**
   * Checks that a schema cannot express (a cron expression, a JSONata expression, a file the config
   * names: relative to `ctx.channelDir`). Returns problems as `[pointer-inside-config, message]`
   * pairs; an empty array when the config is fine. `weir validate` runs it, and so does every load.
   */
  check?(config: Readonly<ConfigOf<S>>, ctx: CheckContext): Array<[string, string]> | Promise<Array<[string, string]>>
  /**
   * Sources only: where the source runs when several engines share one store (a cluster).
   * `every-engine` (default): push sources (listeners) behind a load balancer. `one-engine`:
   * pollers, run by whichever engine holds the source's leadership, taken over when it dies.
   */
  cluster?: 'every-engine' | 'one-engine'
}

/**
 * Declares a component. Returns the definition unchanged; the shape is checked when it is
 * registered or loaded by module path. `create()` and `check()` receive the config type read from
 * `configSchema` (write the schema inline, or declare it `as const`).
 *
 * @example
 * export default defineComponent({
 *   type: 'upper', kind: 'filter', description: 'Upper-cases a text field.',
 *   configSchema: {
 *     type: 'object', additionalProperties: false, required: ['field'],
 *     properties: { field: { type: 'string', description: 'Body field to upper-case.' }, keep: { type: 'boolean', default: false, description: 'Keep the original.' } },
 *   },
 *   create: (config) => ({ process: (m) => withBody(m, upper(m.body, config.field, config.keep)) }), // config: { field: string; keep: boolean }
 * })
 */
export function defineComponent<K extends ComponentKind, const S extends ConfigSchema>(definition: ComponentDefinition<K, S>): ComponentDefinition<K, S> {
  return definition
}

/** A copy of `message` with a new body (and optionally content type). */
export function withBody(message: Message, body: unknown, contentType?: string): Message {
  return { ...message, body, contentType: contentType ?? message.contentType }
}
