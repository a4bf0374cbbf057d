import type { JsonSchema } from '../component.ts'
import { MAX_SEARCH_KEYS, SEARCH_KEY_NAME } from '../key-expression.ts'

export const NAME_PATTERN = '^[a-z0-9][a-z0-9._-]*$'

const componentType: JsonSchema = {
  type: 'string', minLength: 1,
  description: 'A built-in component type (e.g. "http") or a module path relative to the channel file (e.g. "./components/my-filter.ts").',
}

const componentConfig: JsonSchema = {
  type: 'object', default: {},
  description: 'The component\'s configuration, validated against its own schema (see the component reference).',
}

export const retrySchema: JsonSchema = {
  type: 'object', additionalProperties: false, default: {},
  description: 'Retry budget for retryable failures (network, timeouts, 408, 429, 5xx): exponential backoff with full jitter, honouring Retry-After.',
  properties: {
    maxAttempts: { type: 'integer', minimum: 1, maximum: 1000, default: 10, description: "Attempts before the message goes to error state. Attempts while the destination's circuit breaker is open or probing (half-open) do not count: an outage pauses the destination instead of sending its messages to error, so a message may show more attempts than this." },
    initialDelayMs: { type: 'integer', minimum: 0, default: 500, description: 'Backoff ceiling of the first retry (ms); doubles each attempt.' },
    maxDelayMs: { type: 'integer', minimum: 0, default: 60_000, description: 'Largest backoff between two attempts (ms).' },
    maxElapsedMs: { type: 'integer', minimum: 0, default: 900_000, description: 'Give up this long after the first attempt (ms), whatever the attempt count.' },
  },
}

export const circuitBreakerSchema: JsonSchema = {
  type: 'object', additionalProperties: false, default: {},
  description: 'Pauses the destination after consecutive failures, keeping messages queued, and probes again later.',
  properties: {
    failureThreshold: { type: 'integer', minimum: 1, default: 5, description: 'Consecutive failed attempts that open the breaker.' },
    resetAfterMs: { type: 'integer', minimum: 1, default: 30_000, description: 'Pause before a probe attempt (ms).' },
  },
}

export const retentionSchema: JsonSchema = {
  type: 'object', additionalProperties: false, minProperties: 1,
  description: 'Deletes the channel\'s finished messages from the message log in the background, in small batches beside delivery, and gives the space back (no purged content stays readable in the data files). maxAgeDays and maxMessages delete delivered and filtered messages only; messages in error (never delivered, still to be resubmitted) are deleted only by keepErrorsDays, and kept for good without it. Queued and in-flight messages are never deleted. Without it messages are kept until `weir messages purge`.',
  properties: {
    maxAgeDays: { type: 'number', exclusiveMinimum: 0, description: 'Delete delivered and filtered messages finished more than this many days ago (fractions allowed). Messages in error are not deleted by it (see keepErrorsDays).' },
    maxMessages: { type: 'integer', minimum: 1, description: 'Keep only the newest this many finished messages of the channel: older delivered and filtered ones are deleted. Messages in error count among the newest but are not deleted by it (see keepErrorsDays).' },
    keepErrorsDays: { type: 'number', exclusiveMinimum: 0, description: 'Delete messages in error finished more than this many days ago (fractions allowed). No default: without it retention never deletes a message in error.' },
  },
}

export const optionsSchema: JsonSchema = {
  type: 'object', additionalProperties: false, default: {},
  description: 'Runtime options of the channel.',
  properties: {
    concurrency: { type: 'integer', minimum: 1, maximum: 1024, default: 1, description: 'Messages processed at once; 1 keeps arrival order.' },
    queueLimit: { type: 'integer', minimum: 1, default: 10_000, description: 'Queued messages above which the source is refused (HTTP 503 with Retry-After).' },
    maxStoreBytes: { type: 'integer', minimum: 1_048_576, description: 'Size of the message store\'s data (bytes, at least 1 MiB; every channel\'s messages, finished ones included: on SQLite the database\'s pages in use, free pages and the WAL\'s working size of about 4 MiB not counted) at or above which this channel\'s source is refused (HTTP 503 with Retry-After, MLLP AE) until retention or a purge frees space. `weir run --max-store-bytes` sets it for channels that do not.' },
    onError: { enum: ['skip', 'stop'], default: 'skip', description: 'After a message exhausts its retries: "skip" moves on, "stop" stops the channel.' },
    shutdownTimeoutMs: { type: 'integer', minimum: 0, default: 10_000, description: 'On SIGINT/SIGTERM, how long in-flight work may finish before it is released back to the queue (ms).' },
    orderBy: {
      type: 'string', minLength: 1,
      description: 'Expression on the message as received giving its order key (a string or number): JSONata on a JSON body, e.g. "mrn", or on an HL7 v2 ER7 body an HL7 terse path, e.g. "PID.3.1" (see the README, "HL7 v2"). Messages with the same key are delivered strictly in arrival order, messages with different keys in parallel up to concurrency. A key whose head message is retrying holds only that key.',
      examples: ['mrn', 'patient.identifier', 'PID.3.1'],
    },
    searchKeys: {
      type: 'object', maxProperties: MAX_SEARCH_KEYS,
      propertyNames: { pattern: SEARCH_KEY_NAME },
      additionalProperties: { type: 'string', minLength: 1 },
      description: `Business keys to find messages by (weir messages list --key name=value): up to ${MAX_SEARCH_KEYS} names (lowercase letters, digits, "_"; at most 32 characters), each an expression on the message as received, like orderBy (JSONata, or an HL7 terse path such as "PID.3.1" on an ER7 body). A string or number gives one value, an array of them several; nothing gives none. Values are indexed with the message when it is stored (as keyed hashes when the content is encrypted); an expression that fails indexes nothing for that message (logged at debug) and never fails it.`,
      examples: [{ mrn: 'PID.3.1', accession: 'ORC.3' }, { mrn: 'patient.mrn', order: 'orders.id' }],
    },
    encryptContent: {
      type: 'boolean',
      description: 'Store the content of this channel\'s messages encrypted (AES-256-GCM under the store key: WEIR_SECRET_KEY or <data-dir>/oauth/secret.key): body, attributes, errors and response excerpts; dedupe and order keys as keyed hashes. `weir messages show` decrypts. `weir run --encrypt-content` does it for every channel.',
    },
    orderByDefault: { type: 'string', minLength: 1, description: 'Order key of a message whose orderBy expression fails or gives no string or number; without it, such a message is stored in error with the reason.' },
    retention: retentionSchema,
  },
}

export const ALERT_CONDITIONS = ['destination-failing', 'messages-failing', 'queue-age', 'credential-fail-fast', 'channel-stopped', 'channel-refusing'] as const

/** A webhook of an alerts file or of a channel's `alerts` block. */
export const webhookSchema: JsonSchema = {
  type: 'object', required: ['url'],
  description: 'Where notifications go: a JSON POST, with the options of the `http` destination (`url`, `headers`, `secretHeaders`, `credential`, `timeoutMs`, `successStatuses`), plus its own `retry` and `circuitBreaker`. Notifications are queued in the store and retried like messages.',
  properties: {
    url: { type: 'string', description: 'Endpoint of the webhook (http or https).' },
    retry: retrySchema,
    circuitBreaker: circuitBreakerSchema,
  },
}

/** An alert of an alerts file; a channel's `alerts` block narrows `channels` to the channel itself. */
export const alertSchema: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['name', 'condition', 'webhook'],
  properties: {
    name: { type: 'string', pattern: NAME_PATTERN, maxLength: 100, description: 'Alert name, unique in the file; sent as `alert`.' },
    condition: {
      enum: [...ALERT_CONDITIONS],
      description: '`destination-failing`: a destination\'s circuit breaker is open or half-open (or `consecutiveFailures` attempts failed in a row), cleared only by a delivered attempt (a breaker closed by permanent answers such as 400 is not enough); `messages-failing`: at least `count` messages of a channel went to error within the last `windowSeconds`; `queue-age`: the oldest unfinished message of a channel is older than `maxAgeSeconds`; `credential-fail-fast`: a credential fails fast after a terminal token error, cleared only when it obtains a token again; `channel-stopped`: a channel is not running (stopped on error); `channel-refusing`: a channel refuses its source\'s input (its queue at `queueLimit` or the store at `maxStoreBytes`), cleared when the limit would accept a message again.',
    },
    channels: {
      anyOf: [{ const: '*' }, { type: 'array', minItems: 1, items: { type: 'string', pattern: NAME_PATTERN } }],
      default: '*',
      description: 'Channels the alert watches: names, or "*" for every channel of the engine.',
    },
    destination: { type: 'string', pattern: NAME_PATTERN, description: '`destination-failing` only: watch this destination (default every destination).' },
    credential: { type: 'string', pattern: NAME_PATTERN, description: '`credential-fail-fast` only: watch this credential (default every credential in use).' },
    consecutiveFailures: { type: 'integer', minimum: 1, description: '`destination-failing` only: also fire after this many failed attempts in a row, before the breaker opens.' },
    maxAgeSeconds: { type: 'integer', minimum: 1, description: '`queue-age` (required there): the age of the oldest unfinished message that fires the alert.' },
    count: { type: 'integer', minimum: 1, description: '`messages-failing` only: how many messages of the channel in error within `windowSeconds` fire the alert (default 1).' },
    windowSeconds: { type: 'integer', minimum: 1, description: '`messages-failing` only: the window errors are counted in (s, default 300); the alert clears once it holds fewer than `count`.' },
    webhook: { type: 'string', pattern: NAME_PATTERN, description: 'Name of a webhook in `webhooks`.' },
    minIntervalMs: { type: 'integer', minimum: 0, default: 300_000, description: 'A firing less than this after the same alert and subject resolved is sent at once, marked "flapping", and its "resolved" is sent only once the condition has stayed clear this long (ms) instead of clearAfterMs.' },
    clearAfterMs: { type: 'integer', minimum: 0, default: 10_000, description: 'The condition must stay clear this long before "resolved" is sent (ms): a flapping condition stays one firing.' },
  },
}

const channelAlertSchema: JsonSchema = {
  ...alertSchema,
  properties: {
    ...(alertSchema.properties as Record<string, JsonSchema>),
    name: { type: 'string', pattern: NAME_PATTERN, maxLength: 100, description: 'Alert name, unique in the channel; sent as `alert`.' },
    channels: {
      type: 'array', minItems: 1, items: { type: 'string', pattern: NAME_PATTERN },
      description: 'Only this channel, the default: an alert in a channel file watches its own channel.',
    },
  },
}

/** A channel's own alerts; they run in the engine's one alerts notifier with those of `weir run --alerts`. */
export const channelAlertsSchema: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['webhooks', 'alerts'],
  description: 'Webhook notifications about this channel (see the README, "Alerts"): the `webhooks` and `alerts` of an alerts file, watching this channel only. Webhooks may use the channel\'s `credentials`; webhook `ops` of channel `orders` runs as the internal channel `weir-alerts.orders.ops`. They are checked every `checkIntervalMs` of the `--alerts` file (default 5000 ms).',
  properties: {
    webhooks: {
      type: 'object', minProperties: 1, propertyNames: { pattern: NAME_PATTERN, maxLength: 80 }, additionalProperties: webhookSchema,
      description: 'Named webhooks, unique in the channel.',
    },
    alerts: { type: 'array', minItems: 1, items: channelAlertSchema, description: 'The alerts on this channel.' },
  },
}

/**
 * The channel file, with each component's `config` left open: the loader validates it against the
 * component's own schema (so pointers land inside `config`). The editor schema (schema/channel.schema.json)
 * is generated from this plus every built-in component's schema.
 */
export function channelSchema(credentialSchema: JsonSchema): JsonSchema {
  return {
    type: 'object', additionalProperties: false, required: ['name', 'source', 'destinations'],
    properties: {
      $schema: { type: 'string', description: 'Path or URL of the editor schema.' },
      name: { type: 'string', pattern: NAME_PATTERN, maxLength: 100, description: 'Channel name: lowercase letters, digits, ".", "_" and "-".' },
      description: { type: 'string', description: 'What the channel does, for people.' },
      credentials: {
        type: 'object', default: {},
        description: 'Named OAuth 2.0 credentials that destinations and sources refer to by name.',
        propertyNames: { pattern: NAME_PATTERN },
        additionalProperties: credentialSchema,
      },
      credentialsFile: {
        type: 'string', minLength: 1,
        description: 'A shared credentials file (a JSON object of named credentials, the same shape as "credentials"), relative to the channel file; several channels can use one. A name may not be defined in both places.',
      },
      source: {
        type: 'object', additionalProperties: false, required: ['type'],
        description: 'Where messages come from.',
        properties: { type: componentType, config: componentConfig },
      },
      filters: {
        type: 'array', default: [],
        description: 'Filters applied in order: each keeps, transforms, splits or drops the message.',
        items: {
          type: 'object', additionalProperties: false, required: ['type'],
          properties: {
            name: { type: 'string', pattern: NAME_PATTERN, description: 'Optional name, shown in the message log.' },
            type: componentType, config: componentConfig,
          },
        },
      },
      destinations: {
        type: 'array', minItems: 1,
        description: 'Where each message is delivered; each destination has its own retries and status.',
        items: {
          type: 'object', additionalProperties: false, required: ['name', 'type'],
          properties: {
            name: { type: 'string', pattern: NAME_PATTERN, description: 'Destination name, unique in the channel; part of the Idempotency-Key.' },
            type: componentType, config: componentConfig,
            retry: retrySchema,
            circuitBreaker: circuitBreakerSchema,
          },
        },
      },
      options: optionsSchema,
      alerts: channelAlertsSchema,
    },
  }
}
