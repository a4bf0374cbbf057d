import type { JsonSchema } from '../../shared/component.ts'
import { ALERT_CONDITIONS, alertSchema, NAME_PATTERN, webhookSchema } from '../../shared/config/channel-schema.ts'
import { credentialSchema } from '../../shared/oauth/index.ts'

export const CONDITIONS = ALERT_CONDITIONS
export type Condition = (typeof CONDITIONS)[number]

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
