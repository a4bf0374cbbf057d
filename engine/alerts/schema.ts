import type { JsonSchema } from '../../shared/component.ts'
import { circuitBreakerSchema, NAME_PATTERN, retrySchema } from '../../shared/config/channel-schema.ts'
import { credentialSchema } from '../../shared/oauth/index.ts'

export const CONDITIONS = ['destination-failing', 'queue-age', 'credential-fail-fast', 'channel-stopped'] as const
export type Condition = (typeof CONDITIONS)[number]

const webhookSchema: JsonSchema = {
  type: 'object', required: ['url'],
  description: 'Where notifications go: a JSON POST, with the options of the `http` destination (`url`, `headers`, `secretHeaders`, `credential`, `timeoutMs`, `successStatuses`), plus its own `retry` and `circuitBreaker`. Notifications are queued in the store and retried like messages.',
  properties: {
    url: { type: 'string', description: 'Endpoint of the webhook (http or https).' },
    retry: retrySchema,
    circuitBreaker: circuitBreakerSchema,
  },
}

const alertSchema: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['name', 'condition', 'webhook'],
  properties: {
    name: { type: 'string', pattern: NAME_PATTERN, maxLength: 100, description: 'Alert name, unique in the file; sent as `alert`.' },
    condition: {
      enum: [...CONDITIONS],
      description: '`destination-failing`: a destination\'s circuit breaker is open or half-open (or `consecutiveFailures` attempts failed in a row), cleared when it delivers again; `queue-age`: the oldest unfinished message of a channel is older than `maxAgeSeconds`; `credential-fail-fast`: a credential fails fast after a terminal token error; `channel-stopped`: a channel is not running (stopped on error).',
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
    webhook: { type: 'string', pattern: NAME_PATTERN, description: 'Name of a webhook in `webhooks`.' },
    minIntervalMs: { type: 'integer', minimum: 0, default: 300_000, description: 'A new firing of the same alert and subject is not sent sooner than this after the last one (ms); it is sent then if the condition still holds.' },
    clearAfterMs: { type: 'integer', minimum: 0, default: 10_000, description: 'The condition must stay clear this long before "resolved" is sent (ms): a flapping condition stays one firing.' },
  },
}

/** The alerts file of `weir run --alerts`. */
export const alertsFileSchema: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['webhooks', 'alerts'],
  properties: {
    $schema: { type: 'string', description: 'Path or URL of an editor schema.' },
    checkIntervalMs: { type: 'integer', minimum: 10, default: 5000, description: 'How often conditions are evaluated (ms).' },
    credentials: {
      type: 'object', default: {}, propertyNames: { pattern: NAME_PATTERN }, additionalProperties: credentialSchema,
      description: 'Named OAuth 2.0 credentials a webhook may authenticate with (the same shape as a channel\'s `credentials`).',
    },
    webhooks: {
      type: 'object', minProperties: 1, propertyNames: { pattern: NAME_PATTERN, maxLength: 80 }, additionalProperties: webhookSchema,
      description: 'Named webhooks. Each runs as an internal channel `weir-alerts.<name>` on the same store.',
    },
    alerts: { type: 'array', items: alertSchema, description: 'The alerts.' },
  },
}
