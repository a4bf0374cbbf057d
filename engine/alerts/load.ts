import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { builtinComponents } from '../../components/index.ts'
import { compileSchema, validateCollectingSecrets } from '../../shared/config/ajv.ts'
import { displayPath, loadChannelObject, parseJsonWithLocation } from '../../shared/config/load.ts'
import { ajvProblems, escapePointer, nearest } from '../../shared/config/problems.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { ConfigError, type ConfigProblem } from '../../shared/errors.ts'
import { FEED_TYPE, feedSourceDefinition } from './feed.ts'
import { alertsFileSchema, type Condition } from './schema.ts'

/** One validated alert of the file. */
export interface AlertRule {
  name: string
  condition: Condition
  channels: '*' | readonly string[]
  destination?: string
  credential?: string
  consecutiveFailures?: number
  maxAgeSeconds?: number
  webhook: string
  minIntervalMs: number
  clearAfterMs: number
}

export interface LoadedAlerts {
  file: string
  checkIntervalMs: number
  alerts: AlertRule[]
  /** The internal channel of each webhook (`weir-alerts.<name>`), by webhook name. */
  webhooks: Record<string, LoadedChannel>
  /** Non-fatal findings (literal secrets), as `file#pointer: message`. */
  warnings: string[]
}

/** Prefix of the internal channels that deliver notifications. */
export const ALERTS_CHANNEL_PREFIX = 'weir-alerts.'

interface RawFile {
  checkIntervalMs: number
  credentials: Record<string, unknown>
  webhooks: Record<string, Record<string, unknown>>
  alerts: AlertRule[]
}

/**
 * Reads and validates an alerts file (`weir run --alerts`): every problem at once as
 * `ERR_CONFIG_INVALID`, each with the file and the JSON pointer of the offending value.
 * @example
 * const alerts = await loadAlerts('alerts.json', { env: process.env })
 */
export async function loadAlerts(file: string, options: { env?: NodeJS.ProcessEnv } = {}): Promise<LoadedAlerts> {
  const abs = resolve(file)
  const name = displayPath(abs)
  const text = await readFile(abs, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new ConfigError([{ file: name, pointer: '', message: e.code === 'ENOENT' ? 'file not found' : `cannot read file (${e.code ?? 'error'})` }])
  })
  const data = parseJsonWithLocation(text, name) as RawFile
  const res = validateCollectingSecrets(compileSchema(alertsFileSchema), data)
  if (!res.valid) throw new ConfigError(ajvProblems(res.errors, name, '', data), res.errors)
  const problems = ruleProblems(data, name)
  const webhooks: Record<string, LoadedChannel> = {}
  const warnings: string[] = []
  for (const [hook, config] of Object.entries(data.webhooks)) {
    const channel = await webhookChannel(hook, config, data.credentials, { file: abs, name, env: options.env ?? process.env, problems })
    if (channel) {
      webhooks[hook] = channel
      warnings.push(...channel.warnings)
    }
  }
  if (problems.length) throw new ConfigError(problems)
  return { file: abs, checkIntervalMs: data.checkIntervalMs, alerts: data.alerts, webhooks, warnings }
}

/** What the schema cannot say: unique names, known webhooks, options that belong to the condition. */
function ruleProblems(data: RawFile, file: string): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const seen = new Map<string, number>()
  const hooks = Object.keys(data.webhooks)
  const only: Record<string, Condition> = { destination: 'destination-failing', consecutiveFailures: 'destination-failing', credential: 'credential-fail-fast', maxAgeSeconds: 'queue-age' }
  for (const [i, a] of data.alerts.entries()) {
    const at = (key: string, message: string) => problems.push({ file, pointer: `/alerts/${i}${key}`, message })
    if (seen.has(a.name)) at('/name', `duplicate alert name "${a.name}" (also /alerts/${seen.get(a.name)}/name)`)
    else seen.set(a.name, i)
    if (!hooks.includes(a.webhook)) {
      const guess = nearest(a.webhook, hooks)
      at('/webhook', `unknown webhook "${a.webhook}"` + (guess ? `; did you mean "${guess}"?` : '') + `; defined: ${hooks.join(', ')}`)
    }
    for (const [key, condition] of Object.entries(only)) {
      if (key in a && a.condition !== condition) at(`/${key}`, `applies only to the "${condition}" condition`)
    }
    if (a.condition === 'queue-age' && a.maxAgeSeconds === undefined) at('', 'must have required property "maxAgeSeconds" (condition "queue-age")')
  }
  return problems
}

interface WebhookContext { file: string; name: string; env: NodeJS.ProcessEnv; problems: ConfigProblem[] }

/**
 * The internal channel of one webhook: a feed source and the built-in `http` destination, loaded
 * like a channel file (so secrets, credentials and the destination's checks are the same), with
 * its problems reported at the webhook's own pointers.
 */
async function webhookChannel(hook: string, config: Record<string, unknown>, credentials: Record<string, unknown>, wc: WebhookContext): Promise<LoadedChannel | undefined> {
  const at = `/webhooks/${escapePointer(hook)}`
  const { retry, circuitBreaker, ...http } = config
  const credential = http.credential
  if (typeof credential === 'string' && !(credential in credentials)) {
    const guess = nearest(credential, Object.keys(credentials))
    wc.problems.push({ file: wc.name, pointer: `${at}/credential`, message: `unknown credential "${credential}"` + (guess ? `; did you mean "${guess}"?` : '') + `; defined: ${Object.keys(credentials).join(', ') || '(none)'}` })
    return undefined
  }
  const raw = {
    name: ALERTS_CHANNEL_PREFIX + hook,
    credentials: typeof credential === 'string' ? { [credential]: credentials[credential] } : {},
    source: { type: FEED_TYPE },
    destinations: [{ name: 'webhook', type: 'http', config: { ...http, method: 'POST', contentType: 'application/json' }, retry, circuitBreaker }],
    options: { concurrency: 1, onError: 'skip' },
  }
  const remap = (pointer: string) => pointer.replace(/^\/destinations\/0\/config(?=\/|$)/, at).replace(/^\/destinations\/0(?=\/|$)/, at)
  try {
    const channel = await loadChannelObject(raw, { registry: createRegistry([...builtinComponents, feedSourceDefinition]), env: wc.env, file: wc.file, displayName: wc.name })
    return { ...channel, warnings: channel.warnings.map((w) => w.replace(/#(\/destinations\/0[^:]*)/, (_, p: string) => '#' + remap(p))) }
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_CONFIG_INVALID') throw e
    wc.problems.push(...(e as ConfigError).problems.map((p) => ({ ...p, pointer: remap(p.pointer) })))
    return undefined
  }
}
