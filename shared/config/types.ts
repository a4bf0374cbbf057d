import type { ConfigProblem } from '../errors.ts'
import type { ComponentDefinition, ComponentKind } from '../component.ts'

/** Retry budget of one destination. */
export interface RetryPolicy {
  maxAttempts: number
  initialDelayMs: number
  maxDelayMs: number
  /** Give up after this long since the first attempt, whatever the attempt count. */
  maxElapsedMs: number
}

export interface CircuitBreakerPolicy {
  /** Consecutive failed attempts that open the breaker. */
  failureThreshold: number
  /** How long the destination pauses before a probe. */
  resetAfterMs: number
}

/** `options.retention`: which finished messages the background task deletes. */
export interface RetentionOptions {
  /** Delivered and filtered messages finished longer ago than this are deleted. */
  maxAgeDays?: number
  /** The newest this many finished messages are kept. */
  maxMessages?: number
  /** Messages in error finished longer ago than this are deleted; default `maxAgeDays`. */
  keepErrorsDays?: number
}

export interface ChannelOptions {
  /** Messages processed at once; 1 keeps order. */
  concurrency: number
  /** Queued messages above which `emit` rejects with ERR_BACKPRESSURE (HTTP 503). */
  queueLimit: number
  /** Store size on disk (bytes) at or above which `emit` rejects with ERR_BACKPRESSURE. */
  maxStoreBytes?: number
  /** After a message exhausts its retries: `skip` moves on, `stop` stops the channel. */
  onError: 'skip' | 'stop'
  /** On SIGINT/SIGTERM, how long in-flight work may take before it is released back to the queue. */
  shutdownTimeoutMs: number
  /** JSONata expression giving each message's order key: same key, arrival order; different keys, in parallel. */
  orderBy?: string
  /** Order key of a message whose `orderBy` expression fails; without it, such a message goes to error. */
  orderByDefault?: string
  /** Named key expressions (JSONata, or an HL7 terse path on ER7) whose values are indexed when a message is received: `weir messages list --key name=value`. */
  searchKeys?: Record<string, string>
  /** Store the channel's message content encrypted under the store key (bodies, attributes, errors, excerpts). */
  encryptContent?: boolean
  /** Background deletion of the channel's finished messages (none unless set). */
  retention?: RetentionOptions
}

export interface LoadedComponent<K extends ComponentKind = ComponentKind> {
  definition: ComponentDefinition<K>
  /** Validated, defaulted, deep-frozen; writeOnly values are `Secret` instances. */
  config: Readonly<Record<string, unknown>>
  /** JSON pointer of this component in the channel file, e.g. `/destinations/0`. */
  pointer: string
  /** The entry's `name`: a destination's always, a filter's when it has one. */
  name?: string
}

export interface LoadedDestination extends LoadedComponent<'destination'> {
  name: string
  retry: RetryPolicy
  circuitBreaker: CircuitBreakerPolicy
}

export interface LoadedChannel {
  name: string
  description?: string
  /** Absolute path of the channel file. */
  file: string
  /** Directory of the channel file. */
  dir: string
  /** Validated credential configs by name (writeOnly values are `Secret`s; with `onlyCredential`, the others' are empty); passed to shared/oauth. */
  credentials: Record<string, Readonly<Record<string, unknown>>>
  source: LoadedComponent<'source'>
  filters: LoadedComponent<'filter'>[]
  destinations: LoadedDestination[]
  options: ChannelOptions
  /** Non-fatal findings (literal secrets), as `file#pointer: message`. */
  warnings: string[]
  /** The `alerts` block, schema-checked and defaulted; engine/alerts checks the rest and runs it. */
  alerts?: ChannelAlertsBlock
  /** What `LoadOptions.checkAlerts` made of the block (engine/alerts: its rules and webhook channels), when it ran. */
  alertsChecked?: { problems: ConfigProblem[]; warnings: string[] }
  /** With `allowUnsetSecrets`: the secret references that did not resolve, as the problems they would otherwise be. */
  unsetSecrets?: ConfigProblem[]
}

/** A channel's `alerts` block as written (webhook configs are checked against the `http` destination by engine/alerts). */
export interface ChannelAlertsBlock {
  webhooks: Readonly<Record<string, Readonly<Record<string, unknown>>>>
  alerts: ReadonlyArray<Readonly<Record<string, unknown>>>
}

/** What a channel's `alerts` block needs to be checked beyond its schema (`LoadOptions.checkAlerts`). */
export interface ChannelAlertsContext {
  /** The channel's name, file (absolute) and name of the file in messages. */
  channel: string
  file: string
  displayName: string
  /** The channel's credentials, prepared (secrets resolved); false `credentialsKnown` when a credentials file could not be read. */
  credentials: Record<string, Readonly<Record<string, unknown>>>
  credentialsKnown: boolean
  /** The names of the channel's destinations (each entry's `name`, whether or not its config is valid). */
  destinations: readonly string[]
  env: NodeJS.ProcessEnv
}
